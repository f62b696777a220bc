"""Tokens and logs pages in a real headless Chromium against `clawfleet-server run`, with the OpenClaw
fixtures' usage and logs seeded into its database. Screenshots go to $CLAWFLEET_SCREENSHOT_DIR."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from browser_helpers import create_admin, log_in, seed_fixture_fleet
from e2e_helpers import ServerProcess
from mqtt_helpers import free_port

pytestmark = pytest.mark.browser

SCREENSHOT_DIR = Path(os.environ["CLAWFLEET_SCREENSHOT_DIR"]) if os.environ.get("CLAWFLEET_SCREENSHOT_DIR") else None


@pytest.fixture
def seeded_server(tmp_path):
    data = tmp_path / "data"
    create_admin(data)
    seed_fixture_fleet(data, tmp_path / "oc")
    server = ServerProcess(data, free_port(), free_port(), tmp_path / "server.log", "--no-local-agent")
    try:
        yield server.start().port
    finally:
        server.stop()


def _shot(browser, name: str) -> None:
    if SCREENSHOT_DIR:
        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(SCREENSHOT_DIR / name))


def test_tokens_and_logs_pages_with_seeded_data(seeded_server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    port = seeded_server
    wait = WebDriverWait(browser, 30)
    log_in(browser, f"http://127.0.0.1:{port}/tokens?start=2026-11-14&end=2026-11-21")
    wait.until(ec.text_to_be_present_in_element((By.TAG_NAME, "body"), "Tokens and cost"))
    # the browser's zone is read by JavaScript (Chromium here runs in the machine's zone)
    wait.until(lambda d: "Days in" in d.find_element(By.CSS_SELECTOR, '[data-testid="tz-label"]').text)
    wait.until(ec.text_to_be_present_in_element((By.TAG_NAME, "body"), "unpriced (127,044 tokens)"))
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, '[data-testid="tokens-chart"] canvas'))
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "oc-latest" in body and "oc-legacy" in body and "Failed turns" in body
    _shot(browser, "tokens.png")

    browser.get(f"http://127.0.0.1:{port}/logs?range=all&level=error")
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, '[data-testid="log-row"]')) == 50)
    first = browser.find_elements(By.CSS_SELECTOR, '[data-testid="log-row"]')[0].text
    browser.find_element(By.CSS_SELECTOR, '[data-testid="log-older"]').click()
    wait.until(ec.text_to_be_present_in_element((By.TAG_NAME, "body"), "page 2"))
    assert browser.find_elements(By.CSS_SELECTOR, '[data-testid="log-row"]')[0].text != first
    _shot(browser, "logs.png")

    browser.get(f"http://127.0.0.1:{port}/logs?range=all&view=groups")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, '[data-testid="fp-sample"]'))
    _shot(browser, "logs-grouped.png")
    browser.find_elements(By.CSS_SELECTOR, '[data-testid="fp-sample"]')[0].click()
    wait.until(ec.text_to_be_present_in_element((By.TAG_NAME, "body"), "occurrences of one fingerprint"))

    browser.set_window_size(390, 844)  # a phone
    browser.get(f"http://127.0.0.1:{port}/tokens?start=2026-11-14&end=2026-11-21")
    wait.until(ec.text_to_be_present_in_element((By.TAG_NAME, "body"), "unpriced (127,044 tokens)"))
    _shot(browser, "tokens-phone.png")
