"""``/api/docs`` renders in a real headless Chromium that has no internet (as on an air-gapped server):
Swagger UI, its stylesheet and favicon come from the server itself, not from a CDN."""

from __future__ import annotations

import pytest
from browser_helpers import create_admin, log_in
from e2e_helpers import ServerProcess
from mqtt_helpers import free_port

pytestmark = pytest.mark.browser


def test_api_docs_render_without_internet(tmp_path, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    data = tmp_path / "data"
    create_admin(data)
    server = ServerProcess(data, free_port(), free_port(), tmp_path / "server.log", "--no-local-agent").start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        log_in(browser, f"{base}/")
        browser.get(f"{base}/api/docs")
        wait = WebDriverWait(browser, 30)
        title = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".swagger-ui .info .title"))
        assert "ClawFleet API" in title[0].text
        ops = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".opblock-summary-path"))
        assert "/api/v1/usage" in {o.text.replace("\u200b", "") for o in ops}
        resources = browser.execute_script("return performance.getEntriesByType('resource').map(r => r.name)")
        assert resources and all(r.startswith(base) for r in resources), resources
    finally:
        server.stop()
