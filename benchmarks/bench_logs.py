"""Logs page and REST API response times on a large log table (default 1 million rows).

Run: ``.venv/bin/python benchmarks/bench_logs.py [--rows N] [--devices N] [--no-browser]``

Seeds a fresh SQLite database (WAL, as the server opens it) with N warn/error records spread over
the devices and 30 days, then starts a real ``clawfleet-server run`` on it (loopback ports, no
local agent) and measures, each the median of 5 requests:

- REST API over HTTP with an API token: newest page, page 200 (cursor walk), device / level / text
  filters, fingerprint groups (24 h and all time);
- the logs page in headless Chromium (Debian's ``chromium`` + ``chromedriver``): from navigation
  until the 50 rows are rendered, newest first, grouped view, and "Older →" paging.

Prints one table; the server is stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.local import start_dashboard, stop_dashboard  # noqa: E402
from fleet_server.store.db import open_database  # noqa: E402
from fleet_server.store.models import Device, LogRecord, db  # noqa: E402

MESSAGES = ("lane task error: lane=session:agent:main:r{n} durationMs={d} error=\"HTTP 500\"",
            "[model-fetch] error provider=stubllm causeCode=ECONNREFUSED attempt {n}",
            "transient same-model retry {n}/8 for stubllm/stub-model reason=rate_limit: delayMs={d}",
            "embedded run agent end isError=true error=\"API rate limit reached\" run {d}",
            "gateway slow event loop lag {d}ms")
PASSWORD = "benchmark password 1"  # noqa: S105 - a throw-away account in a temp data dir


def seed(data: Path, rows: int, devices: int, now_ms: int) -> float:
    """Insert ``rows`` records; returns seconds taken."""
    t0 = time.perf_counter()
    open_database(data)
    for d in range(devices):
        Device.insert(id=f"dev-{d:04d}", name=f"dev-{d:04d}", key_hash="0" * 64, key_hint="abcd", created_ms=1,
                      status="offline").on_conflict_ignore().execute()
    rnd = random.Random(7)
    span = 30 * 86_400_000
    batch: list[tuple] = []
    fields = [LogRecord.id, LogRecord.device, LogRecord.ts, LogRecord.level, LogRecord.subsystem, LogRecord.message,
              LogRecord.fingerprint, LogRecord.source, LogRecord.agent_id, LogRecord.session_id]
    with db.atomic():
        for i in range(rows):
            k = rnd.randrange(len(MESSAGES))
            batch.append((f"r{i:015d}", f"dev-{rnd.randrange(devices):04d}", now_ms - span + i * span // rows,
                          "error" if k < 2 or k == 3 else "warn", ("agent/embedded", "model-fetch", "model-fallback",
                                                                   "agent/embedded", "gateway")[k],
                          MESSAGES[k].format(n=rnd.randrange(1, 9), d=rnd.randrange(100, 90000)), f"fp{k}",
                          "gateway-log", "main" if k in (0, 3) else None, None))
            if len(batch) == 5000:
                LogRecord.insert_many(batch, fields=fields).execute()
                batch = []
        if batch:
            LogRecord.insert_many(batch, fields=fields).execute()
    # no ANALYZE: a server's database never gets one, so the plans measured are the ones users get
    db.close()
    return time.perf_counter() - t0


def _median_ms(fn, n: int = 5) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument("--no-browser", action="store_true", help="skip the Chromium page timings")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="clawfleet-bench-logs-"))
    data = work / "data"
    now = int(time.time() * 1000)
    seed_s = seed(data, args.rows, args.devices, now)
    proc, base, token = start_dashboard(data, PASSWORD)
    rows: list[tuple[str, float, str]] = []
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=1)  # noqa: S310 - loopback
                break
            except OSError:
                time.sleep(0.2)

        def get(path: str) -> dict:
            req = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {token}"})  # noqa: S310
            with urllib.request.urlopen(req, timeout=60) as r:  # noqa: S310 - loopback
                return json.loads(r.read())

        first = get("/api/v1/logs?limit=100")
        cursor = first["next_cursor"]
        for _ in range(199):
            cursor = get(f"/api/v1/logs?limit=100&cursor={cursor}")["next_cursor"]
        day_ago = now - 86_400_000
        for label, path in (
                ("API logs, newest 100", "/api/v1/logs?limit=100"),
                ("API logs, page 200 (cursor)", f"/api/v1/logs?limit=100&cursor={cursor}"),
                ("API logs, one device", "/api/v1/logs?limit=100&device=dev-0042"),
                ("API logs, level error", "/api/v1/logs?limit=100&level=error"),
                ("API logs, text 'ECONNREFUSED'", "/api/v1/logs?limit=100&q=ECONNREFUSED"),
                ("API logs, text that never matches", "/api/v1/logs?limit=100&q=no-such-text-xyz"),
                ("API logs, device + error + 24 h", f"/api/v1/logs?limit=100&device=dev-0042&level=error"
                                                   f"&since={day_ago}"),
                ("API fingerprints, last 24 h", f"/api/v1/fingerprints?since={day_ago}"),
                ("API fingerprints, all time", "/api/v1/fingerprints"),
        ):
            n = len(get(path)) if "fingerprints" in path else len(get(path)["rows"])
            rows.append((label, _median_ms(lambda p=path: get(p)), f"{n} rows"))
        if not args.no_browser and shutil.which("chromium") and shutil.which("chromedriver"):
            rows += browser_timings(base, work)
    finally:
        stop_dashboard(proc)
    print(f"\nlog rows: {args.rows:,} over {args.devices} devices and 30 days; seeding took {seed_s:.1f} s; "
          f"database {sum(f.stat().st_size for f in data.glob('clawfleet.sqlite*')) / 2**20:.0f} MiB\n")
    print(f"| {'what':<38} | {'median ms':>9} | {'result':<12} |")
    print(f"|{'-' * 40}|{'-' * 11}|{'-' * 14}|")
    for label, ms, note in rows:
        print(f"| {label:<38} | {ms:>9.1f} | {note:<12} |")
    shutil.rmtree(work, ignore_errors=True)


def browser_timings(base: str, work: Path) -> list[tuple[str, float, str]]:
    """Logs page timings in headless Chromium: navigation until the rows are on screen."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from benchmarks.chromium import logged_in_chromium

    driver = logged_in_chromium(base, work / "chromium", PASSWORD)
    out = []
    try:
        wait = WebDriverWait(driver, 60)
        row = '[data-testid="log-row"]'

        def page(path: str, css: str, count: int | None = None) -> None:
            driver.get(base + path)
            wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, css)) >= (count or 1))

        for label, path, css, count in (("page /logs, newest 50 rendered", "/logs?range=all", row, 50),
                                        ("page /logs, device + error", "/logs?range=all&device=dev-0042&level=error",
                                         row, 50),
                                        ("page /logs?view=groups (7 days)", "/logs?view=groups",
                                         '[data-testid="fp-sample"]', 1)):
            out.append((label, _median_ms(lambda p=path, c=css, n=count: page(p, c, n), 3), "rendered"))
        page("/logs?range=all", row, 50)

        def older() -> None:
            before = driver.find_elements(By.CSS_SELECTOR, row)[0].text
            driver.find_element(By.CSS_SELECTOR, '[data-testid="log-older"]').click()
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, row) and
                       d.find_elements(By.CSS_SELECTOR, row)[0].text != before)

        out.append(("page /logs, click 'Older →'", _median_ms(older, 5), "rendered"))
    finally:
        driver.quit()
    return out


if __name__ == "__main__":
    main()
