"""The device page with 30 days of seeded history, in a real headless Chromium against a real
``clawfleet-server run``: every chart draws, the window switch changes tier, availability shows
the outage. Screenshot: ``$CLAWFLEET_SCREENSHOT_DIR/device-history-30d.png``."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from browser_helpers import create_admin, log_in
from e2e_helpers import ServerProcess
from history_helpers import add_device, add_samples
from mqtt_helpers import free_port

from fleet_server.store.db import open_database
from fleet_server.store.history.retention import DEFAULTS, apply_retention
from fleet_server.store.history.rollups import roll_up_all
from fleet_server.store.models import StatusEvent
from fleet_server.store.usage.ledger import insert_usage

pytestmark = pytest.mark.browser

SCREENSHOT_DIR = Path(os.environ["CLAWFLEET_SCREENSHOT_DIR"]) if os.environ.get("CLAWFLEET_SCREENSHOT_DIR") else None
DAY = 86_400_000
HOUR = 3_600_000
CHARTS = ("cpu", "mem", "disk", "swap", "net", "load", "tokens")




def _seed(data: Path) -> None:
    """30 days of 1-minute samples for "gpu-box" with a 6-hour outage 3 days ago, rolled up and
    trimmed by the default retention; hourly token usage; the matching status events."""
    database = open_database(data)
    now = int(time.time() * 1000)
    start = now - 30 * DAY
    out_lo, out_hi = now - 3 * DAY, now - 3 * DAY + 6 * HOUR
    with database.atomic():
        add_device("gpu-box", created_ms=start, status="offline")
        add_samples("gpu-box", start, out_lo, step_ms=60_000)
        add_samples("gpu-box", out_hi, now - 20 * 60_000, step_ms=60_000, seed=2)
        for ts, state, reason in ((start, "online", None), (out_lo, "offline", "last-will"), (out_hi, "online", None),
                                  (now - 20 * 60_000, "shutdown", "agent stopped")):
            StatusEvent.create(device="gpu-box", ts=ts, state=state, reason=reason)
        insert_usage([{"id": f"u{h}", "device": "gpu-box", "ts": start + h * HOUR + 5, "agent_id": "main",
                       "session_id": "s", "provider": "anthropic", "model": "claude",
                       "input_tokens": 900 + 37 * (h % 24),
                       "output_tokens": 100, "cache_read_tokens": 0, "cache_write_tokens": 0,
                       "total_tokens": 1000 + 37 * (h % 24), "cost_usd": None, "source": "transcript"}
                      for h in range(0, 30 * 24, 3)])
    roll_up_all(database)
    apply_retention(DEFAULTS, now, database)
    database.close()


@pytest.fixture
def server_with_history(tmp_path):
    data = tmp_path / "data"
    create_admin(data)
    _seed(data)
    server = ServerProcess(data, free_port(), free_port(), tmp_path / "server.log", "--no-local-agent")
    try:
        yield server.start().port
    finally:
        server.stop()


def test_device_page_draws_every_chart_and_switches_windows(server_with_history, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    port = server_with_history
    wait = WebDriverWait(browser, 30)
    log_in(browser, f"http://127.0.0.1:{port}/device/gpu-box")
    if "/device/gpu-box" not in browser.current_url:
        browser.get(f"http://127.0.0.1:{port}/device/gpu-box")

    def canvases(d):
        return all(d.find_elements(By.CSS_SELECTOR, f'[data-testid="chart-{k}"] canvas') for k in CHARTS)

    wait.until(canvases)
    body = lambda: browser.find_element(By.TAG_NAME, "body").text  # noqa: E731
    wait.until(lambda d: "5-minute averages" in body())  # the 24 h default reads the 5-minute tier
    # availability: the outage with its duration and reason, uptime over 7 and 30 days
    wait.until(lambda d: "offline" in body() and "6h 0m, last will" in body())
    assert "uptime 30 d" in body()

    def choose(label: str, note: str) -> None:
        button = next(b for b in browser.find_elements(By.CSS_SELECTOR, '[data-testid="history-window"] button')
                      if b.text.strip() == label)
        button.click()
        wait.until(lambda d: note in body())

    choose("1h", "raw samples")
    choose("7d", "1-hour averages")
    choose("30d", "1-hour averages")
    # the charts carry data: ask each ECharts instance (NiceGUI's getElement) what it drew
    script = ("const out = {}; for (const k of arguments[0]) {"
              " const el = document.querySelector(`[data-testid=\"chart-${k}\"]`);"
              " const s = getElement(el.id.replace(/^c/, '')).chart.getOption().series;"
              " out[k] = [s[0].data.length, s[0].data.filter(p => p[1] === null).length,"
              " (s[0].markArea && s[0].markArea.data || []).length]; } return out;")
    drawn = wait.until(lambda d: (lambda r: r if r["cpu"][0] > 690 else False)(d.execute_script(script, list(CHARTS))))
    for key in CHARTS:
        points, nulls, bands = drawn[key]
        # shaded: the outage, the shutdown, and "needs new key" (the seeded device has no broker account)
        assert bands == 3, (key, drawn[key])
        if key == "tokens":
            # one bar every 3 hours; the first, 30 days before seeding, may fall just outside the window
            # the page opens seconds later
            assert points in (239, 240), (key, drawn[key])
        else:
            assert 690 < points <= 30 * 24 + 2 and nulls >= 1, (key, drawn[key])  # hourly; the outage is a gap
    wait.until(canvases)
    if SCREENSHOT_DIR:
        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        height = browser.execute_script("return document.body.scrollHeight")
        browser.set_window_size(1500, max(900, height + 100))
        time.sleep(1.5)  # charts resize to the new width
        browser.save_screenshot(str(SCREENSHOT_DIR / "device-history-30d.png"))
