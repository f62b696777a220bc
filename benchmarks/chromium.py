"""A headless Chromium logged in to a running server, for the benchmarks that time pages.

Needs Debian's ``chromium`` and ``chromedriver`` (``scripts/ensure-system-packages.sh test``).
"""

from __future__ import annotations

import shutil
from pathlib import Path


def logged_in_chromium(base: str, profile: Path, password: str, user: str = "admin", width: int = 1400,
                       height: int = 900):
    """A headless Chromium (profile dir ``profile``) that has logged in at ``base`` as ``user``; the caller
    quits it. Raises selenium's TimeoutException when the login page does not let it in within 60 s."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or "chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              f"--window-size={width},{height}", f"--user-data-dir={profile}"):
        opts.add_argument(a)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
    try:
        wait = WebDriverWait(driver, 60)
        driver.get(base + "/login")
        fields = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "input") if len(
            d.find_elements(By.CSS_SELECTOR, "input")) >= 2 else False)
        fields[0].send_keys(user)
        fields[1].send_keys(password + Keys.ENTER)
        wait.until(lambda d: "/login" not in d.current_url)
    except BaseException:
        driver.quit()
        raise
    return driver
