"""The sessions page, a session's run timeline and the versions page in a real headless Chromium against a
real ``clawfleet-server run``, at 1280 px and on a 390 px phone: the rows and the timeline are on screen
and the page itself never scrolls sideways (wide tables scroll inside their own box).

Set ``CLAWFLEET_SCREENSHOTS=<dir>`` to keep a screenshot of each page at each width."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from browser_helpers import create_admin, log_in
from e2e_helpers import ServerProcess
from mqtt_helpers import free_port
from payload_helpers import meta
from usage_seed import seed_fixture_usage

from fleet_server.store.db import open_database
from fleet_server.store.locks import write_transaction
from fleet_server.store.models import Device, db
from fleet_server.store.sessions.ingest import record_versions
from fleet_server.store.usage.prices import RuleInput, add_rule

PAGES = (("sessions", "/sessions?range=all&sort=cost", '[data-testid="session-row"]', 6),
         ("run-timeline", "/session/oc-legacy/research/f5d14729-9948-421b-b9ae-5bc26911ed41",
          '[data-testid="run-row"]', 3),
         ("versions", "/versions?days=1", '[data-testid="changes-table"]', 1))


@pytest.fixture
def server(tmp_path: Path):
    data = tmp_path / "data"
    open_database(data)
    seed_fixture_usage(tmp_path / "seed")
    add_rule(RuleInput("stubllm/*", input_usd_per_mtok=3.0, output_usd_per_mtok=15.0, cache_read_usd_per_mtok=0.3))
    with write_transaction(db.obj):  # oc-latest moved to 2026.9.6 in the middle of the fixtures' turns
        record_versions([("oc-latest", 1_795_234_000_000, "openclaw", None, "2026.7.35"),
                         ("oc-latest", 1_795_234_340_000, "openclaw", "2026.7.35", "2026.9.6"),
                         ("oc-legacy", 1_795_234_000_000, "openclaw", None, "2026.7.35")])
    for device, version in (("oc-latest", "2026.9.6"), ("oc-legacy", "2026.7.35")):  # what the devices run now
        Device.update(meta_json=json.dumps(meta(device, openclaw_version=version))).where(Device.id == device).execute()
    db.close()
    create_admin(data)
    proc = ServerProcess(data, free_port(), free_port(), tmp_path / "server.log", "--no-local-agent").start()
    yield f"http://127.0.0.1:{proc.port}"
    proc.stop()


def test_sessions_timeline_and_versions_pages_at_desktop_and_phone_width(server: str, browser) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    shots = Path(os.environ["CLAWFLEET_SCREENSHOTS"]) if os.environ.get("CLAWFLEET_SCREENSHOTS") else None
    log_in(browser, server + "/sessions")
    wait = WebDriverWait(browser, 30)
    for width, height in ((1280, 900), (390, 844)):
        browser.set_window_size(width, height)
        for name, path, css, count in PAGES:
            browser.get(server + path)
            wait.until(lambda d, css=css, count=count: len(d.find_elements(By.CSS_SELECTOR, css)) >= count)
            if name == "sessions":
                wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, '[data-testid="top-sessions"]'))
                assert "agent:main:legacy-a" in browser.page_source
            if name == "run-timeline":
                wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, '[data-testid="run-timeline"] canvas'))
            if name == "versions":
                text = browser.find_element(By.TAG_NAME, "body").text
                assert "2026.7.35 → 2026.9.6" in text and "2026.9.6: 1 device" in text
            overflow = browser.execute_script(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert overflow <= 1, (name, width, overflow)
            if shots is not None:
                shots.mkdir(parents=True, exist_ok=True)
                full = browser.execute_script("return document.body.scrollHeight")
                browser.set_window_size(width, min(max(height, full + 120), 2400))
                browser.save_screenshot(str(shots / f"{name}-{width}.png"))
                browser.set_window_size(width, height)
