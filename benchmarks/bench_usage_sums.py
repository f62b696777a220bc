"""Token sums at fleet scale: the questions the overview, device page, tokens page and API ask.

Run: ``.venv/bin/python benchmarks/bench_usage_sums.py [--devices 1000] [--days 7] [--every-min 30]
[--zone Asia/Kolkata] [--rounds 5] [--json PATH]``

Seeds a fresh SQLite database (the server's pragmas, WAL) with one usage record per device every
``every-min`` minutes over ``days`` days through the server's own insert path (records, hourly and
all-time rollups in one transaction), then times each question of
:func:`fleet_server.store.usage.sums.usage` (median and max of ``rounds``) in ``zone`` — a
half-hour zone, so every local midnight is read from the records.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fleet_server.store.db import open_database
from fleet_server.store.models import Device
from fleet_server.store.usage import sums
from fleet_server.store.usage.ledger import insert_usage
from shared.clock import now_ms

MINUTE_MS = 60_000


def _seed(devices: int, days: int, every_min: int, now: int, database: object) -> int:
    """Store the records in time order, an hour of the whole fleet per transaction, as ingest does (so the
    rollup rows lie in the order a server writes them)."""
    start = now - days * 1440 * MINUTE_MS
    ids = [f"bench-{d:05d}" for d in range(devices)]
    for device_id in ids:
        Device.create(id=device_id, name=device_id, key_hash="0" * 64, key_hint="bnch", created_ms=start)
    rows = 0
    step = every_min * MINUTE_MS
    for hour in range(start, now, 60 * MINUTE_MS):
        batch = [{"device": device_id, "id": f"r{ts}", "ts": ts + d, "agent_id": ("main", "research")[(ts // step) % 2],
                  "session_id": "s", "provider": "anthropic", "model": "claude", "input_tokens": 1000,
                  "output_tokens": 50, "cache_read_tokens": 200, "cache_write_tokens": 0, "total_tokens": 1250,
                  "cost_usd": None, "source": "transcript"}
                 for ts in range(hour, min(hour + 60 * MINUTE_MS, now), step) for d, device_id in enumerate(ids)]
        with database.atomic():  # type: ignore[attr-defined]
            insert_usage(batch)
        rows += len(batch)
        print(f"\r  seeded {rows:,} records", end="", flush=True)
    print()
    return rows


def main() -> None:
    """Seed, time every question, print a table (and write ``--json``)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--every-min", type=int, default=30)
    ap.add_argument("--zone", default="Asia/Kolkata")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    tz = ZoneInfo(args.zone)
    tmp = Path(tempfile.mkdtemp(prefix="bench-usage-"))
    try:
        database = open_database(tmp)
        now = now_ms()
        records = _seed(args.devices, args.days, args.every_min, now, database)
        page = [f"bench-{d:05d}" for d in range(min(50, args.devices))]
        today, yesterday = sums.day_bounds_ms(tz, 0, now), sums.day_bounds_ms(tz, -1, now)
        week = (sums.day_bounds_ms(tz, -6, now)[0], today[1])
        questions = {
            "overview tile: fleet today": lambda: sums.total_usage(*today, tz=tz),
            "overview tile: fleet yesterday": lambda: sums.total_usage(*yesterday, tz=tz),
            "overview tile: fleet this month": lambda: sums.total_usage(sums.month_bounds_ms(tz, now)[0], today[1]),
            "overview tile: fleet all time": lambda: sums.total_usage(),
            "overview rows: 50 devices today": lambda: sums.by_device(*today, devices=page),
            "overview rows: 50 devices all time": lambda: sums.by_device(devices=page),
            "tokens page: 7 days by day": lambda: sums.usage(["day"], *week, tz),
            "tokens page: 7 days by device": lambda: sums.usage(["device"], *week, tz),
            "tokens page: 7 days by agent": lambda: sums.usage(["agent"], *week, tz),
            "tokens page: 7 days by day and model": lambda: sums.usage(["day", "model"], *week, tz),
        }
        results = {}
        for name, ask in questions.items():
            times = []
            for _ in range(args.rounds):
                t0 = time.perf_counter()
                ask()
                times.append((time.perf_counter() - t0) * 1000)
            results[name] = {"p50_ms": round(statistics.median(times), 2), "max_ms": round(max(times), 2)}
        database.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n{args.devices:,} devices, {records:,} usage records over {args.days} d, zone {args.zone} "
          f"(SQLite, {args.rounds} rounds)\n")
    print(f"{'question':<40} {'p50 ms':>9} {'max ms':>9}")
    for name, r in results.items():
        print(f"{name:<40} {r['p50_ms']:>9.2f} {r['max_ms']:>9.2f}")
    if args.json:
        args.json.write_text(json.dumps({"devices": args.devices, "records": records, "days": args.days,
                                         "zone": args.zone, "results": results}, indent=1))


if __name__ == "__main__":
    main()
