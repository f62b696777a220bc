"""The dashboard's finish in a real headless Chromium against `clawfleet-server run` with the OpenClaw
fixtures' usage, logs and a price rule: times in the browser's zone (Chromium set to Asia/Kolkata),
the tokens page within a 390 px phone, the overview's "Last seen" on a 1280 px screen, readable cost
tiles in dark mode, log filters in the address, grouped-log links with addresses and no console
errors when switching views. Screenshots go to $CLAWFLEET_SCREENSHOT_DIR."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from browser_helpers import create_admin, log_in, seed_fixture_fleet
from e2e_helpers import ServerProcess
from mqtt_helpers import free_port

pytestmark = pytest.mark.browser

SCREENSHOT_DIR = Path(os.environ["CLAWFLEET_SCREENSHOT_DIR"]) if os.environ.get("CLAWFLEET_SCREENSHOT_DIR") else None
PRICE_RULE = 'prices.add_rule(prices.RuleInput("anthropic/claude-sonnet-*", 3.0, 15.0, 0.3, 3.75, note="list price"))'
KOLKATA = ("Asia/Kolkata", "Asia/Calcutta")  # Chromium names the zone by its older alias
CATCH_ERRORS = "window.__errors = []; const e = console.error.bind(console); " \
               "console.error = (...a) => { window.__errors.push(a.map(String).join(' ')); e(...a); };"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("polish")
    data = tmp / "data"
    create_admin(data)
    seed_fixture_fleet(data, tmp / "oc", logs=300, extra=PRICE_RULE)
    srv = ServerProcess(data, free_port(), free_port(), tmp / "server.log", "--no-local-agent").start()
    try:
        yield f"http://127.0.0.1:{srv.port}"
    finally:
        srv.stop()


def _wait(browser, predicate, timeout: float = 30):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout, poll_frequency=0.1).until(predicate)


def _shot(browser, name: str) -> None:
    if SCREENSHOT_DIR:
        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(SCREENSHOT_DIR / name))


def _text(browser) -> str:
    return browser.execute_script("return document.body.innerText")


def test_times_follow_the_browser_zone_and_logs_keep_their_address(server, browser):
    from selenium.webdriver.common.by import By

    browser.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": "Asia/Kolkata"})
    browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": CATCH_ERRORS})
    log_in(browser, f"{server}/logs?range=all&level=error")
    _wait(browser, lambda d: any(f"Times in {z} (your browser's zone)." in _text(d) for z in KOLKATA))
    rows = _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, '[data-testid="log-row"]'))
    assert rows and rows[0].text[:10].startswith("2026-")
    browser.find_element(By.XPATH, "//button[contains(., 'Grouped')]").click()
    _wait(browser, lambda d: "view=groups" in d.current_url and "level=error" in d.current_url)
    links = _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, '[data-testid="fp-count"]'))
    assert all("fingerprint=" in (a.get_attribute("href") or "") for a in links)
    browser.find_element(By.XPATH, "//button[contains(., 'Newest first')]").click()
    _wait(browser, lambda d: "view=groups" not in d.current_url)
    assert browser.execute_script("return window.__errors") == []
    _shot(browser, "logs-kolkata.png")
    browser.get(f"{server}/device/oc-latest")
    _wait(browser, lambda d: any(f"Times in {z} (your browser's zone)." in _text(d) for z in KOLKATA))
    _wait(browser, lambda d: any(f"availability ({z.lower()})" in _text(d).lower() for z in KOLKATA))


def test_tokens_page_fits_a_phone_with_a_price_rule(server, browser):
    browser.set_window_size(390, 844)
    log_in(browser, f"{server}/tokens?start=2026-11-14&end=2026-11-21")
    _wait(browser, lambda d: "unpriced (127,044 tokens)" in _text(d))
    _wait(browser, lambda d: "anthropic/claude-sonnet-*" in _text(d))
    _shot(browser, "tokens-phone-price.png")
    width = browser.execute_script("return document.documentElement.scrollWidth")
    assert width <= 390, width


def test_overview_shows_last_seen_at_1280_and_readable_cost_tiles_in_dark_mode(server, browser):
    from selenium.webdriver.common.by import By

    browser.set_window_size(1280, 900)
    log_in(browser, f"{server}/")
    header = _wait(browser, lambda d: d.find_elements(By.XPATH, "//th[contains(., 'Last seen')]"))[0]
    right = browser.execute_script("return arguments[0].getBoundingClientRect().right", header)
    assert right <= browser.execute_script("return document.documentElement.clientWidth"), right
    _shot(browser, "overview-1280.png")
    browser.find_element(By.CSS_SELECTOR, "[aria-label='toggle dark mode']").click()
    _wait(browser, lambda d: d.execute_script("return document.body.classList.contains('body--dark')"))
    colour = browser.execute_script(
        "return getComputedStyle(document.querySelector('[data-testid=\"cost-today\"]')).color")
    r, g, b = (int(x) for x in colour[colour.index("(") + 1:colour.index(")")].split(",")[:3])
    assert (0.2126 * r + 0.7152 * g + 0.0722 * b) > 150, colour  # light text on the dark card
    _shot(browser, "overview-dark.png")
