"""Clients that lie, against the real server process and a real headless Chromium:

- a socket from another origin, or with no cookie, that knows an admin page's client id cannot
  act on that page (it used to create an API token audited as the admin);
- ``X-Forwarded-For`` names the client only behind ``--behind-proxy`` and only from the trusted
  proxy (else every login guess could come from a new address).
"""

from __future__ import annotations

import json

import pytest
import socketio
from browser_helpers import PASSWORD, create_admin, log_in
from e2e_helpers import ServerProcess, wait_for
from mqtt_helpers import free_port

from fleet_server.store.db import open_database
from fleet_server.store.models import ApiToken, AuditEvent

pytestmark = pytest.mark.browser

LOGIN_ERROR = '[data-testid="login-error"]'
PAGE_IDS_JS = """
const out = {client: window.clientId};
for (const [id, e] of Object.entries(mounted_app.elements)) {
  const label = e.props && e.props.label;
  const ev = (type) => (e.events || []).find((v) => v.type === type);
  if (label === 'Create token' && ev('click')) out.button = [parseInt(id), ev('click').listener_id];
  if (label === 'Name (e.g. grafana)' && ev('update:value'))
    out.input = [parseInt(id), ev('update:value').listener_id];
}
return out;
"""


def server(tmp_path, *extra: str) -> ServerProcess:
    data = tmp_path / "data"
    create_admin(data)
    return ServerProcess(data, free_port(), free_port(), tmp_path / "server.log", "--no-local-agent", *extra)


def attack(port: int, ids: dict, origin: str | None) -> str:
    """Connect a raw Socket.IO client (no cookie) and send the page's events; returns what happened."""
    sio = socketio.Client(reconnection=False)
    headers = {"Origin": origin} if origin else {}
    try:
        sio.connect(f"http://127.0.0.1:{port}", headers=headers, transports=["websocket"],
                    socketio_path="/_nicegui_ws/socket.io", wait_timeout=10)
    except socketio.exceptions.ConnectionError as exc:
        return f"refused: {exc}"
    try:
        (input_id, input_listener), (button_id, button_listener) = ids["input"], ids["button"]
        sio.emit("event", {"id": input_id, "client_id": ids["client"], "listener_id": input_listener,
                           "args": [json.dumps("stolen")]})
        sio.emit("event", {"id": button_id, "client_id": ids["client"], "listener_id": button_listener, "args": []})
        sio.sleep(2)
        return "sent"
    finally:
        sio.disconnect()


def test_a_foreign_socket_cannot_act_on_an_admin_page(tmp_path, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    srv = server(tmp_path)
    try:
        srv.start()
        log_in(browser, f"http://127.0.0.1:{srv.port}/settings/api")
        wait = WebDriverWait(browser, 30)
        wait.until(lambda d: "API tokens" in d.find_element(By.TAG_NAME, "body").text)
        ids = wait.until(lambda d: (lambda o: o if "button" in o and "input" in o else False)(
            d.execute_script(PAGE_IDS_JS)))
        assert attack(srv.port, ids, "http://evil.example").startswith("refused")
        assert attack(srv.port, ids, None) == "sent"  # a script: no Origin, no cookie
        open_database(srv.data_dir)
        assert ApiToken.select().count() == 0
        assert not AuditEvent.select().where(AuditEvent.action == "api_token.create").exists()
        # the admin's own page still works
        field = browser.find_element(By.CSS_SELECTOR, 'input[data-testid="token-name"], '
                                                      '[data-testid="token-name"] input')
        field.send_keys("grafana")
        browser.find_element(By.XPATH, "//button[contains(., 'Create token')]").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, '[data-testid="new-token"]'))
        wait_for(lambda: ApiToken.select().count() == 1, 10, what="the admin's token")
        [row] = AuditEvent.select().where(AuditEvent.action == "api_token.create")
        assert (row.actor, row.target) == ("admin", "grafana")
    finally:
        srv.stop()


def failed_logins_from(browser, port: int, addresses: list[str]) -> list[str]:
    """Try a wrong password once per address, each time claiming it in ``X-Forwarded-For``; returns
    the messages the login page showed."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 30)
    browser.execute_cdp_cmd("Network.enable", {})
    messages = []
    for address in addresses:
        browser.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"X-Forwarded-For": address}})
        browser.get(f"http://127.0.0.1:{port}/login")
        fields = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "input") if len(
            d.find_elements(By.CSS_SELECTOR, "input")) >= 2 else False)
        fields[0].send_keys("admin")
        fields[1].send_keys("not the password" + Keys.ENTER)
        messages.append(wait.until(lambda d: d.find_element(By.CSS_SELECTOR, LOGIN_ERROR).text or False))
    browser.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {}})
    return messages


def login_sources(data_dir) -> list[str]:
    open_database(data_dir)
    return [e.detail for e in AuditEvent.select().where(AuditEvent.action == "login_failed").order_by(AuditEvent.id)]


def test_forwarded_for_is_ignored_without_a_trusted_proxy(tmp_path, browser):
    srv = server(tmp_path)
    try:
        srv.start()
        messages = failed_logins_from(browser, srv.port, [f"203.0.113.{i}" for i in range(1, 8)])
        assert messages[0] == "wrong username or password"
        assert messages[-1].startswith("too many failed attempts"), messages
        assert set(login_sources(srv.data_dir)) == {"from 127.0.0.1"}
    finally:
        srv.stop()


def test_forwarded_for_is_believed_from_the_configured_proxy_only(tmp_path, browser):
    srv = server(tmp_path, "--behind-proxy", "--trusted-proxy", "127.0.0.1")
    try:
        srv.start()
        failed_logins_from(browser, srv.port, ["203.0.113.1", "203.0.113.2"])
        assert login_sources(srv.data_dir) == ["from 203.0.113.1", "from 203.0.113.2"]
        log_in(browser, f"http://127.0.0.1:{srv.port}/")  # a real login through the proxy set-up still works
    finally:
        srv.stop()
    other = server(tmp_path / "other", "--behind-proxy", "--trusted-proxy", "192.0.2.1")
    try:
        other.start()
        failed_logins_from(browser, other.port, ["203.0.113.3"])
        assert login_sources(other.data_dir) == ["from 127.0.0.1"]
    finally:
        other.stop()
    assert PASSWORD


CSP_WATCH_JS = ("window.__csp = []; document.addEventListener('securitypolicyviolation', "
                "(e) => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));")


def test_pages_work_under_the_csp_and_long_names_do_not_widen_the_device_page(tmp_path, browser):
    """Every page renders with the Content-Security-Policy on (no violation reported by Chromium), and a
    199-character agent name wraps instead of widening the device page (it used to be 2,597 px wide)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from fleet_server.store.models import Device

    srv = server(tmp_path)
    open_database(srv.data_dir)
    long_name = "a" * 199
    meta = {"v": 1, "device_id": "wide", "ts": 1_795_000_000_000, "hostname": "h" * 150, "os": "Linux",
            "agent_version": "1", "cpu_count": 1, "mem_total_bytes": 1, "disk_total_bytes": 1,
            "boot_time_ms": 1_795_000_000_000, "agents": [long_name, "b" * 199]}
    Device.create(id="wide", name="Wide box", key_hash="x", key_hint="abcd", created_ms=1_795_000_000_000,
                  meta_json=json.dumps(meta))
    browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": CSP_WATCH_JS})
    try:
        srv.start()
        log_in(browser, f"http://127.0.0.1:{srv.port}/")
        wait = WebDriverWait(browser, 30)
        violations = {}
        for path in ("/", "/devices", "/device/wide", "/tokens", "/logs", "/settings/api", "/audit"):
            browser.get(f"http://127.0.0.1:{srv.port}{path}")
            wait.until(lambda d: d.execute_script("return window.did_handshake === true"))
            browser.implicitly_wait(0)
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "header"))
            if path == "/device/wide":
                wait.until(lambda d: long_name in d.find_element(By.TAG_NAME, "body").text.replace("\n", ""))
                width = browser.execute_script("return document.documentElement.scrollWidth")
                viewport = browser.execute_script("return window.innerWidth")
                assert width <= viewport, f"the device page is {width} px wide in a {viewport} px window"
            violations[path] = browser.execute_script("return window.__csp")
        assert all(v == [] for v in violations.values()), violations
    finally:
        srv.stop()
