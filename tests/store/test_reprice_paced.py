"""A price change re-prices history without freezing ingest: 100,000 usage records with 10,000
distinct models in a real SQLite file, a real FleetServer and Mosquitto; a canary device publishes a
sample every half second while the server's job re-prices in paced chunks. The canary's
publish→stored latency stays under 2 s, ``/healthz`` stays ok, and afterwards records, hourly
rollup and the in-memory totals agree (updated chunk by chunk, no reload)."""

from __future__ import annotations

import time

from payload_helpers import CanaryWatch, DeviceConn, now_ms
from peewee import fn
from usage_seed import add_device

from fleet_server.server import FleetServer
from fleet_server.store.models import UsageHourly, UsageRecord, db
from fleet_server.store.usage import prices, sums
from fleet_server.store.usage.ledger import insert_usage

RECORDS, MODELS = 100_000, 10_000
MAX_LATENCY_S = 2.0


def seed(device: str) -> None:
    add_device(device)
    base = now_ms() - 30 * 86_400_000
    rows = [{"device": device, "id": f"record-{i:07d}", "ts": base + i * 20_000, "agent_id": "main",
             "session_id": "s", "provider": "acme", "model": f"model-{i % MODELS}", "input_tokens": 1000,
             "output_tokens": 100, "cache_read_tokens": 0, "cache_write_tokens": 0, "total_tokens": 1100,
             "cost_usd": None, "source": "transcript"} for i in range(RECORDS)]
    with db.atomic():
        for k in range(0, len(rows), 5000):
            insert_usage(rows[k:k + 5000])


def test_repricing_100k_records_keeps_ingest_fast(fleet: FleetServer):
    assert fleet.jobs is not None
    seed("history")
    fleet.state.load_from_db()
    with DeviceConn(fleet, "canary") as canary:
        watch = CanaryWatch(fleet, canary)
        time.sleep(1.0)
        started = time.monotonic()
        prices.save_rule(prices.RuleInput("acme/model-1*", input_usd_per_mtok=3.0, output_usd_per_mtok=15.0))
        fleet.jobs.reprice.request()
        assert fleet.jobs.reprice.wait_idle(600), "the pass did not finish"
        took = time.monotonic() - started
        time.sleep(1.0)
        watch.stop()
    latencies, health = watch.latencies, watch.health
    progress = fleet.jobs.reprice.progress
    print(f"re-priced {progress.changed:,} of {progress.checked:,} records in {took:.1f} s; {watch.summary()}")
    assert progress.state == "done" and progress.checked == RECORDS
    matching = sum(1 for i in range(RECORDS) if str(i % MODELS).startswith("1"))
    assert progress.changed == matching
    assert max(latencies) < MAX_LATENCY_S, latencies
    assert all(health), "/healthz said not ok during the re-pricing"
    # records, hourly rollup and the cache agree
    priced = UsageRecord.select(fn.SUM(UsageRecord.priced_usd)).scalar()
    assert abs(priced - matching * (1000 * 3.0 + 100 * 15.0) / 1e6) < 1e-6
    hourly = UsageHourly.select(fn.SUM(UsageHourly.cost_usd), fn.SUM(UsageHourly.priced_records),
                                fn.SUM(UsageHourly.unpriced_tokens)).tuples()[0]
    assert abs(hourly[0] - priced) < 1e-6 and hourly[1] == matching and hourly[2] == (RECORDS - matching) * 1100
    all_time = sums.total_usage(devices=["history"])  # the all-time rollup (what every view reads)
    assert abs(all_time.cost_usd - priced) < 1e-6 and all_time.priced_messages == matching
    assert not prices.reprice_due()
