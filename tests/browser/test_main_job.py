"""The README's main job as a user runs it: `clawfleet-server run` (managed Mosquitto, ingest,
dashboard, local agent) in a real process, looked at with a real headless Chromium, then Ctrl-C."""

from __future__ import annotations

import os
import signal
import stat
from pathlib import Path

import psutil
import pytest
from browser_helpers import create_admin, log_in
from e2e_helpers import ServerProcess, wait_for
from mqtt_helpers import free_port

pytestmark = pytest.mark.browser

SCREENSHOT_DIR = Path(os.environ.get("CLAWFLEET_SCREENSHOT_DIR", "")) if os.environ.get(
    "CLAWFLEET_SCREENSHOT_DIR") else None




@pytest.fixture
def running_server(tmp_path):
    data = tmp_path / "data"
    create_admin(data)
    server = ServerProcess(data, free_port(), free_port(), tmp_path / "server.log", "--local-agent-interval", "2")
    try:
        server.start()
        yield server.proc, server.port, server.log_path
    finally:
        server.stop()  # also stops its broker if the test failed before Ctrl-C


def test_dashboard_shows_this_machine_live_and_ctrl_c_stops_everything(running_server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    proc, port, log_path = running_server
    wait = WebDriverWait(browser, 30)
    log_in(browser, f"http://127.0.0.1:{port}/")
    wait.until(ec.text_to_be_present_in_element((By.TAG_NAME, "body"), "Fleet overview"))
    # the local agent's device comes online and shows live figures
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, '[data-testid="status-online"]'))
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "1 online" in body
    assert "admin (admin)" in body  # the first account created on the CLI is an admin
    assert "GiB" in body and "%" in body  # memory/disk figures rendered
    if SCREENSHOT_DIR:
        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(SCREENSHOT_DIR / "overview.png"))

    sessions = list((log_path.parent / "data" / "sessions").glob("storage-*.json"))
    assert sessions and all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in sessions)
    browser.find_element(By.CSS_SELECTOR, 'form[action="/logout"] button').click()  # "Log out" POSTs the form
    wait.until(ec.url_contains("/login"))
    browser.get(f"http://127.0.0.1:{port}/")
    wait.until(ec.url_contains("/login"))  # the session has ended

    children = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
    assert len(children) >= 2, "expected mosquitto and the local agent as children"
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in the terminal: the whole foreground group gets SIGINT
    assert proc.wait(30) in (0, 130, -signal.SIGINT), log_path.read_text()[-3000:]  # 130: "ended by Ctrl-C"
    wait_for(lambda: not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
                             for p in children), 10, what="mosquitto and the agent to exit")
    log = log_path.read_text()
    assert "is shutdown (agent stopped)" in log  # the agent said goodbye while the broker was still up
    assert "server stopped" in log
