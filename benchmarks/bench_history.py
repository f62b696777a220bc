"""Sample history at fleet scale: chart query times and database bytes per device.

Run: ``.venv/bin/python benchmarks/bench_history.py [--devices 50] [--days 30] [--interval 30]``

Seeds a fresh SQLite database (the server's pragmas, WAL) with ``devices × days`` of samples at
``interval`` seconds, runs the rollups (:func:`roll_up_all`) and the default retention (raw 48 h,
5-minute 14 d, 1-hour 400 d), VACUUMs, then times :func:`samples_for_window` for the 24 h, 7 d
and 30 d windows ending now, for every device (several rounds; p50 / p95). Reports the bytes of
each table per device (SQLite's ``dbstat``) and projects a year at steady state: 48 h of raw
rows, 14 d of 5-minute rows and 365 d of 1-hour rows per device.

Targets (issue 8): 30-day chart query < 50 ms; <= 10 MB per device per year at a 30 s interval.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from history_helpers import sample_row

from fleet_server.store.db import open_database
from fleet_server.store.history.retention import DEFAULTS, apply_retention
from fleet_server.store.history.rollups import roll_up_all
from fleet_server.store.history.samples import samples_for_window
from fleet_server.store.models import Device, Sample

DAY_MS = 86_400_000
TABLES = ("sample", "sample_rollup5m", "sample_rollup1h")


def _seed(devices: int, days: int, interval_s: int, now: int, database) -> int:
    """Insert the samples with the DB-API's executemany (peewee's insert_many is ~50x slower here)."""
    start = now - days * DAY_MS
    cols = [f.column_name for f in Sample._meta.sorted_fields]
    sql = f'INSERT INTO "sample" ({", ".join(cols)}) VALUES ({", ".join("?" * len(cols))})'  # noqa: S608
    rows = 0
    for d in range(devices):
        device_id = f"bench-{d:03d}"
        Device.create(id=device_id, name=device_id, key_hash="0" * 64, key_hint="bnch", created_ms=start,
                      status="online")
        rng = random.Random(d)
        values = [tuple(r[c] for c in cols) for r in (sample_row(device_id, ts, rng)
                                                       for ts in range(start, now, interval_s * 1000))]
        with database.atomic():
            database.connection().executemany(sql, values)
        rows += len(values)
        print(f"\r  seeded {d + 1}/{devices} devices ({rows:,} samples)", end="", flush=True)
    print()
    return rows


def _table_bytes(database) -> dict[str, int]:
    """Bytes of each table including its indexes (SQLite dbstat)."""
    out = dict.fromkeys(TABLES, 0)
    q = ("SELECT m.tbl_name, SUM(s.pgsize) FROM dbstat s JOIN sqlite_master m ON s.name = m.name "
         "GROUP BY m.tbl_name")
    for name, size in database.execute_sql(q).fetchall():
        if name in out:
            out[name] = int(size)
    return out


def _rows(database, table: str) -> int:
    return database.execute_sql(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0]  # noqa: S608 - fixed names


def _pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", type=int, default=50)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--interval", type=int, default=30, help="sample interval, seconds")
    ap.add_argument("--rounds", type=int, default=5, help="query rounds over all devices")
    ap.add_argument("--keep", action="store_true", help="keep the database (default: deleted at the end)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="clawfleet-bench-history-"))
    database = open_database(tmp)
    now = int(time.time() * 1000)
    print(f"database: {tmp / 'clawfleet.sqlite'}")
    t = time.perf_counter()
    raw = _seed(args.devices, args.days, args.interval, now, database)
    seed_s = time.perf_counter() - t
    t = time.perf_counter()
    rolled = roll_up_all(database)
    rollup_s = time.perf_counter() - t
    t = time.perf_counter()
    deleted = apply_retention(DEFAULTS, now, database)
    retention_s = time.perf_counter() - t
    t = time.perf_counter()
    incremental = roll_up_all(database)  # the steady state: nothing new
    steady_s = time.perf_counter() - t
    database.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    database.execute_sql("VACUUM")
    file_bytes = (tmp / "clawfleet.sqlite").stat().st_size
    sizes = _table_bytes(database)
    counts = {name: _rows(database, name) for name in TABLES}

    times: dict[str, list[float]] = {"24h": [], "7d": [], "30d": []}
    tiers: dict[str, str] = {}
    spans = {"24h": DAY_MS, "7d": 7 * DAY_MS, "30d": 30 * DAY_MS}
    for _ in range(args.rounds):
        for d in range(args.devices):
            for label, span in spans.items():
                t = time.perf_counter()
                tier, rows = samples_for_window(f"bench-{d:03d}", now - span, now)
                times[label].append((time.perf_counter() - t) * 1000)
                tiers[label] = f"{tier} ({len(rows)} rows)"

    print(f"\nseed {raw:,} samples: {seed_s:.1f} s · rollups of all of them: {rollup_s:.1f} s "
          f"({rolled / rollup_s:,.0f} samples/s) · retention: {retention_s:.1f} s, deleted "
          f"{deleted['raw']:,} raw / {deleted['rollup_5m']:,} 5-minute rows · next rollup run (nothing new, "
          f"{incremental} samples): {steady_s * 1000:.0f} ms\n")
    print(f"{'chart window':<14}{'tier read':<22}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}")
    for label, values in times.items():
        print(f"{label:<14}{tiers[label]:<22}{_pct(values, 50):>9.2f}{_pct(values, 95):>9.2f}{max(values):>9.2f}")
    n = args.devices
    print(f"\n{'table':<18}{'rows/device':>12}{'bytes/device':>14}{'bytes/row':>11}")
    per_row = {}
    for name in TABLES:
        per_row[name] = sizes[name] / counts[name] if counts[name] else 0.0
        print(f"{name:<18}{counts[name] / n:>12,.0f}{sizes[name] / n:>14,.0f}{per_row[name]:>11.1f}")
    per_day = file_bytes / n / args.days
    samples_per_day = 86400 / args.interval
    year = (2 * samples_per_day * per_row["sample"] + 14 * 288 * per_row["sample_rollup5m"]
            + 365 * 24 * per_row["sample_rollup1h"])
    print(f"\ndatabase file after rollups + retention + VACUUM: {file_bytes:,} bytes = {per_day:,.0f} bytes per "
          f"device per day over the {args.days} seeded days")
    print(f"steady state per device (48 h raw + 14 d of 5-min + 365 d of 1-h rows): {year / 1e6:.2f} MB per year "
          f"(target <= 10 MB)")
    print(f"30-day chart query p95: {_pct(times['30d'], 95):.2f} ms (target < 50 ms)")
    database.close()
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
