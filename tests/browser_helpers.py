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


SEED = """
import sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from fleet_server.store.db import open_database
from fleet_server.store.usage import prices
from usage_seed import seed_bulk_logs, seed_fixture_usage
open_database(Path({data!r}))
seed_fixture_usage(Path({tmp!r}))
seed_bulk_logs({logs}, devices=3, start_ms=1_795_200_000_000, step_ms=15_000)
{extra}
"""


def seed_fixture_fleet(data_dir: Path, work: Path, logs: int = 2000, extra: str = "") -> None:
    """Seed ``data_dir``'s database in a child process (as a user's earlier server would have): the OpenClaw
    fixtures' usage and logs, ``logs`` bulk log records, then the Python statements ``extra``."""
    import subprocess
    import sys

    from e2e_helpers import user_env

    tests = Path(__file__).resolve().parent
    subprocess.run([sys.executable, "-c", SEED.format(tests=str(tests), data=str(data_dir), tmp=str(work),
                                                      logs=logs, extra=extra)],
                   text=True, capture_output=True, timeout=120, check=True, env=user_env())
