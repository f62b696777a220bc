"""The Alerts page in a real headless Chromium against `clawfleet-server run`: a firing incident is
snoozed from its card, a new rule shows its 7-day preview (which follows the duration typed) and is
saved; the page at 1280 px and on a 390 px phone (screenshots in $CLAWFLEET_SHOTS or tmp)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from alert_helpers import Clock, WebhookReceiver, put
from browser_helpers import create_admin, log_in
from e2e_helpers import ServerProcess
from fleet_seed import seed
from mqtt_helpers import free_port

from fleet_server.alerts.channels import add_channel
from fleet_server.alerts.dispatch import Dispatcher, wait_idle
from fleet_server.alerts.engine import AlertEngine
from fleet_server.alerts.rules import ensure_default_rules
from fleet_server.state import FleetState
from fleet_server.store.alert_models import AlertRule, AlertSilence
from fleet_server.store.db import open_database
from fleet_server.store.models import StatusEvent
from shared.clock import now_ms

pytestmark = pytest.mark.browser
MIN = 60_000


def _history(data: Path) -> None:
    """Default rules, a webhook channel, status history for the preview, and incidents made by the
    real engine and dispatcher over the last 20 minutes (one firing, one resolved, both notified)."""
    database = open_database(data)
    ensure_default_rules()
    now = now_ms()
    StatusEvent.insert_many([
        {"device": "seed-00003", "ts": now - 30 * 3600_000, "state": "offline", "reason": "last-will"},
        {"device": "seed-00003", "ts": now - 30 * 3600_000 + 20 * MIN, "state": "online"},
        {"device": "seed-00004", "ts": now - 50 * 3600_000, "state": "offline", "reason": "no data for 3 intervals"},
        {"device": "seed-00004", "ts": now - 47 * 3600_000, "state": "online"},
    ]).execute()
    with WebhookReceiver() as hook:
        add_channel(data, "ops webhook", hook.url, "admin")
        clock = Clock(now - 20 * MIN)
        state = FleetState()
        for d in ("seed-00001", "seed-00002", "seed-00003", "seed-00004"):
            put(state, d, clock(), "online")
        eng = AlertEngine(state, clock=clock, settle_s=0)
        eng.load()
        disp = Dispatcher(data, clock=clock, quiet_s=0)
        for minute in range(20):
            if minute == 2:
                put(state, "seed-00002", clock(), "offline", status_reason="last-will")
            if minute == 5:
                put(state, "seed-00001", clock(), "offline", status_reason="no data for 3 intervals")
            if minute == 10:
                put(state, "seed-00002", clock(), "online")
            for _ in range(2):
                eng.tick()
                clock.advance(30)
            assert wait_idle(disp)
        assert len(hook.posts) == 2, [p["title"] for p in hook.posts]  # the firing and the recovery at 10 min: one
    database.close()


@pytest.fixture
def server(tmp_path):
    data = tmp_path / "data"
    create_admin(data)
    seed(data, 6, 0, free_port(), quiet=True)
    _history(data)
    proc = ServerProcess(data, free_port(), free_port(), tmp_path / "server.log", "--no-local-agent")
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def _wait(browser, predicate, timeout: float = 30):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout, poll_frequency=0.05).until(predicate)


def _body(browser) -> str:
    from selenium.webdriver.common.by import By

    return browser.find_element(By.TAG_NAME, "body").text


def _click(browser, xpath: str) -> None:
    from selenium.webdriver.common.by import By

    el = _wait(browser, lambda d: d.find_element(By.XPATH, xpath))
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'}); arguments[0].click();", el)


def _shot(browser, name: str) -> None:
    folder = Path(os.environ.get("CLAWFLEET_SHOTS") or "/tmp/clawfleet-shots")
    folder.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(folder / name))


def test_snooze_a_device_and_write_a_rule_with_its_seven_day_preview(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    base = f"http://127.0.0.1:{server.port}"
    browser.set_window_size(1280, 900)
    log_in(browser, f"{base}/alerts")
    _wait(browser, lambda d: "seed-00001" in _body(d) and "History" in _body(d))
    body = _body(browser)
    assert "Device offline > 5 min" in body and "notification(s) sent" in body
    assert "seed-00002" in body  # in the history: resolved, with its duration
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "a[aria-label='alerts'] .q-badge"))
    _shot(browser, "alerts-1280.png")

    _click(browser, "//button[contains(., 'Snooze 1 h')]")
    _wait(browser, lambda d: "snoozed for 1 hour" in _body(d))
    database = open_database(server.data_dir)
    assert [s.scope for s in AlertSilence.select()] == ["device:seed-00001"]

    browser.get(f"{base}/alerts?tab=rules")
    _click(browser, "//button[contains(., 'New rule')]")
    _wait(browser, lambda d: "would have fired 2 times for 2 subject(s)" in _body(d), 60)
    _shot(browser, "rule-editor-1280.png")
    for_input = browser.find_element(By.XPATH, "//div[contains(@class, 'q-dialog')]//label[contains(., 'For (e.g. "
                                               "5m)')]//input")
    for_input.send_keys(Keys.CONTROL, "a")
    for_input.send_keys("30m")
    _wait(browser, lambda d: "would have fired once for 1 subject(s)" in _body(d), 60)
    name = browser.find_element(By.XPATH, "//div[contains(@class, 'q-dialog')]//label[contains(., 'Name')]//input")
    name.send_keys("Offline half an hour")
    _click(browser, "//div[contains(@class, 'q-dialog')]//button[contains(., 'Save')]")
    _wait(browser, lambda d: "Offline half an hour" in _body(d) and not d.find_elements(By.CSS_SELECTOR, ".q-dialog"))
    assert AlertRule.get(AlertRule.name == "Offline half an hour").params_json.count('"for_s":1800') == 1
    database.close()

    browser.set_window_size(390, 844)  # a phone
    browser.get(f"{base}/alerts")
    _wait(browser, lambda d: "seed-00001" in _body(d))
    _shot(browser, "alerts-390.png")
    width = browser.execute_script("return document.documentElement.scrollWidth")
    assert width <= 400, f"the page is {width} px wide on a 390 px phone"
    browser.get(f"{base}/alerts?tab=rules")
    _click(browser, "//button[contains(., 'New rule')]")
    _wait(browser, lambda d: "would have fired" in _body(d), 60)
    preview = browser.find_element(By.XPATH, "//div[contains(@class, 'q-dialog')]//*[contains(text(), 'would have "
                                             "fired')]")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", preview)
    _shot(browser, "rule-editor-390.png")
