"""What the browser tests share: an admin account, logging in through the real login page."""

from __future__ import annotations

from pathlib import Path

from e2e_helpers import server_cli

PASSWORD = "browser test password"


def create_admin(data_dir: Path) -> None:
    """Create the dashboard account ``admin`` with :data:`PASSWORD` in ``data_dir`` (the real CLI)."""
    res = server_cli("admin", "create", "admin", "--password-stdin", "--data-dir", str(data_dir),
                     stdin=PASSWORD + "\n")
    assert res.exit_code == 0, res.output


def log_in(browser: object, url: str, timeout: float = 30) -> None:
    """Open ``url`` (a page behind the login), log in as ``admin`` and wait until the browser has left
    ``/login``."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, timeout)
    browser.get(url)  # type: ignore[attr-defined]
    fields = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "input") if len(
        d.find_elements(By.CSS_SELECTOR, "input")) >= 2 else False)
    fields[0].send_keys("admin")
    fields[1].send_keys(PASSWORD + Keys.ENTER)
    wait.until(lambda d: "/login" not in d.current_url)
