"""The overview and its neighbours in a real headless Chromium against `clawfleet-server run`: a
120-device fleet (paging, search, filters, sort, live row updates that leave other rows alone,
plain status words) and a one-device fleet ("1 device", a 390 px phone, dark mode, the Add-device
dialog, the 404 page)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from browser_helpers import create_admin, log_in
from e2e_helpers import ServerProcess
from fleet_seed import seed, telemetry
from mqtt_helpers import free_port
from paho.mqtt.enums import CallbackAPIVersion

from fleet_server.store.db import open_database
from fleet_server.store.models import Device
from shared import schemas
from shared.topics import Channel, device_topic

pytestmark = pytest.mark.browser

FLEET = 120
SCREENSHOT_DIR = Path(os.environ["CLAWFLEET_SCREENSHOT_DIR"]) if os.environ.get("CLAWFLEET_SCREENSHOT_DIR") else None


def _start(tmp, devices: int, live: int, statuses: dict[str, tuple[str, str | None]]):
    data = tmp / "data"
    create_admin(data)
    mqtt_port = free_port()
    keys = seed(data, devices, live, mqtt_port, quiet=True)
    database = open_database(data)
    for device_id, (status, reason) in statuses.items():
        Device.update(status=status, status_reason=reason).where(Device.id == device_id).execute()
    database.close()
    server = ServerProcess(data, free_port(), mqtt_port, tmp / "server.log", "--no-local-agent")
    server.start()
    return server, keys


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """120 devices: live-00000..02 enrolled (00001 lost its connection, 00002 stopped), the rest
    store-only (the server marks them offline, "needs a new key")."""
    server, keys = _start(tmp_path_factory.mktemp("fleet"), FLEET, 3,
                          {"live-00001": ("offline", "last-will"), "live-00002": ("shutdown", "agent stopped")})
    try:
        yield server, keys
    finally:
        server.stop()


@pytest.fixture(scope="module")
def one_device(tmp_path_factory):
    server, keys = _start(tmp_path_factory.mktemp("one"), 1, 1, {})
    try:
        yield server, keys
    finally:
        server.stop()


def _wait(browser, predicate, timeout: float = 30):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout, poll_frequency=0.05).until(predicate)


def _rows(browser) -> list[str]:
    """Device ids of the table's rows, in order (read in one script: rows are replaced while we look)."""
    return browser.execute_script("return [...document.querySelectorAll('td[data-device]')].map(e => e.dataset.device)")


def _publish(port: int, device_id: str, key: str, payload: bytes, channel: Channel = Channel.TELEMETRY) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device_id, protocol=mqtt.MQTTv5)
    client.username_pw_set(device_id, key)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        client.publish(device_topic(device_id, channel), payload, qos=1).wait_for_publish(10)
    finally:
        client.loop_stop()
        client.disconnect()


def _click(browser, element) -> None:
    """Click ``element`` after scrolling it to the middle of the screen (not under the fixed header)."""
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    element.click()


def _body(browser) -> str:
    return browser.execute_script("return document.body.innerText")


def test_overview_pages_searches_filters_and_sorts_on_the_server(fleet, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    server, _ = fleet
    log_in(browser, f"http://127.0.0.1:{server.port}/")
    _wait(browser, lambda d: len(_rows(d)) == 50)  # one page of 50, not 120 rows
    assert "1-50 of 120" in _body(browser).replace("–", "-")
    assert _rows(browser)[0] == "live-00000"
    browser.find_element(By.CSS_SELECTOR, "button[aria-label='Next page']").click()
    _wait(browser, lambda d: _rows(d)[:1] == ["seed-00047"])  # names sort "live …" before "seed …"
    assert len(_rows(browser)) == 50

    _click(browser, browser.find_element(By.XPATH, "//th[contains(., 'Device')]"))  # sorted by name: now descending
    _wait(browser, lambda d: _rows(d)[:1] == ["seed-00116"])

    search = browser.find_element(By.CSS_SELECTOR, "input[type=search]")
    search.send_keys("host-00005")  # host name: the sixth seeded device
    _wait(browser, lambda d: _rows(d) == ["seed-00002"])
    search.send_keys(Keys.CONTROL, "a")
    search.send_keys(Keys.BACKSPACE)  # clear() bypasses Vue's input events
    search.send_keys("live-0000")  # device id
    _wait(browser, lambda d: sorted(_rows(d)) == ["live-00000", "live-00001", "live-00002"])

    _click(browser, browser.find_element(By.XPATH, "//label[contains(., 'Status')]"))  # status filter: lost connection
    browser.find_element(By.XPATH, "//div[contains(@class, 'q-item') and normalize-space(.)='offline']").click()
    _wait(browser, lambda d: _rows(d) == ["live-00001"])

    _click(browser, browser.find_element(By.XPATH, "//label[contains(., 'Status')]"))
    browser.find_element(By.XPATH, "//div[contains(@class, 'q-item') and normalize-space(.)='any status']").click()
    _wait(browser, lambda d: len(_rows(d)) == 3)
    tag = browser.find_element(By.CSS_SELECTOR, "td[data-device='live-00000'] ~ td [data-testid^='tag-']")
    name = tag.get_attribute("data-testid")[4:]
    _click(browser, tag)  # a tag chip filters by that tag
    _wait(browser, lambda d: "live-00000" in _rows(d) and all(
        d.find_elements(By.CSS_SELECTOR, f"td[data-device='{i}'] ~ td [data-testid='tag-{name}']") for i in _rows(d)))


def test_a_report_redraws_its_row_only_and_statuses_read_as_plain_words(fleet, browser):
    from selenium.webdriver.common.by import By

    server, keys = fleet
    log_in(browser, f"http://127.0.0.1:{server.port}/")
    _wait(browser, lambda d: len(_rows(d)) == 50)
    body = _body(browser)
    assert "lost connection" in body and "last-will" not in body  # live-00001's last will
    assert "shut down" in body and "stopped" in body and "agent stopped" not in body
    assert "needs a new key" in body
    assert "120 devices" in body
    # a marker on another row's element must survive the update of live-00000's row (a redraw of the
    # whole table, as the overview did before, makes new elements)
    other = "tr:has(td[data-device='live-00002'])"
    browser.execute_script(f"document.querySelector(\"{other}\").__keep = 42;")
    _publish(server.mqtt_port, "live-00000", keys["live-00000"],
             schemas.encode(telemetry("live-00000", 87.0)))
    _wait(browser, lambda d: d.execute_script(
        "return document.querySelector(\"td[data-device='live-00000'] ~ td:nth-child(5)\").innerText") == "87%")
    assert browser.execute_script(f"return document.querySelector(\"{other}\").__keep") == 42
    assert browser.find_elements(By.CSS_SELECTOR, "td[data-device='live-00000'] ~ td [data-testid='openclaw-up']")


def test_one_device_on_a_phone_with_dark_mode_dialog_and_404(one_device, browser):
    from selenium.webdriver.common.by import By

    server, _ = one_device
    base = f"http://127.0.0.1:{server.port}"
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True})
    log_in(browser, base + "/")
    _wait(browser, lambda d: len(_rows(d)) == 1)
    assert "1 device" in _body(browser) and "1 devices" not in _body(browser)
    for path in ("/", "/devices", "/device/live-00000"):
        browser.get(base + path)
        _wait(browser, lambda d: "live 00000" in _body(d))
        time.sleep(0.5)  # layout settled
        width = browser.execute_script("return document.documentElement.scrollWidth")
        assert width <= 390, f"{path} is {width} px wide on a 390 px phone"
        logout = browser.find_element(By.CSS_SELECTOR, 'form[action="/logout"] button')
        right = browser.execute_script("return arguments[0].getBoundingClientRect().right", logout)
        assert logout.is_displayed() and right <= 390, f"Log out is off-screen on {path} ({right} px)"

    browser.get(base + "/devices")
    _wait(browser, lambda d: "1 device" in _body(d))
    browser.find_element(By.XPATH, "//button[contains(., 'Add device')]").click()
    name = _wait(browser, lambda d: d.find_element(By.XPATH, "//label[contains(., 'Name')]//input"))
    tags = browser.find_element(By.XPATH, "//label[contains(., 'Tags')]//input")
    name.send_keys("!!!")  # no usable device id in it
    tags.send_keys("rack-7")
    browser.find_element(By.XPATH, "//button[normalize-space(.)='Add']").click()
    error = _wait(browser, lambda d: [e for e in d.find_elements(By.CSS_SELECTOR, ".q-dialog .text-red-700") if e.text])
    assert "device" in error[0].text
    assert name.get_attribute("value") == "!!!" and tags.get_attribute("value") == "rack-7"  # kept
    browser.find_element(By.XPATH, "//button[normalize-space(.)='Cancel']").click()

    assert not browser.execute_script("return document.body.classList.contains('body--dark')")
    browser.find_element(By.CSS_SELECTOR, "button[aria-label='toggle dark mode']").click()
    _wait(browser, lambda d: d.execute_script("return document.body.classList.contains('body--dark')"))
    time.sleep(0.5)  # the choice is stored on the server
    browser.get(base + "/")
    _wait(browser, lambda d: len(_rows(d)) == 1)
    assert browser.execute_script("return document.body.classList.contains('body--dark')")  # remembered

    browser.get(base + "/no/such/page")
    _wait(browser, lambda d: "This page doesn't exist." in _body(d))
    browser.find_element(By.XPATH, "//button[contains(., 'Fleet overview')]").click()
    _wait(browser, lambda d: d.current_url.rstrip("/") == base and len(_rows(d)) == 1)


def test_last_seen_is_on_screen_at_1280(fleet, browser):
    from selenium.webdriver.common.by import By

    server, _ = fleet
    browser.set_window_size(1280, 900)
    log_in(browser, f"http://127.0.0.1:{server.port}/")
    _wait(browser, lambda d: len(_rows(d)) == 50)
    header = browser.find_element(By.XPATH, "//th[contains(., 'Last seen')]")
    right = browser.execute_script("return arguments[0].getBoundingClientRect().right", header)
    assert right <= browser.execute_script("return document.documentElement.clientWidth"), right
    if SCREENSHOT_DIR:
        browser.save_screenshot(str(SCREENSHOT_DIR / "overview-1280-fleet.png"))
