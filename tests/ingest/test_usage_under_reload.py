"""The fleet cache reloaded (and prices changed) while a burst of usage is being stored: every view's
figures still equal what was published, each message once (real Mosquitto, FleetServer, SQLite).

Before the cache was split, a reload under running ingest could count a batch twice (stored, then
loaded, then added again) or not at all (added to the old cache, then replaced by an older load).
"""

from __future__ import annotations

import threading
from zoneinfo import ZoneInfo

from e2e_helpers import wait_for
from payload_helpers import DeviceConn, batch, usage_record

from fleet_server.dashboard.parts.usage_view import devices_today_and_total, fleet_figures
from fleet_server.server import FleetServer
from fleet_server.state.registry import sync_registry
from fleet_server.store.models import UsageRecord
from fleet_server.store.usage import prices, sums
from shared.clock import now_ms
from shared.topics import Channel

BATCHES, PER_BATCH = 40, 25


def test_reloads_and_a_price_change_during_a_usage_burst_never_miscount(fleet: FleetServer):
    state = fleet.state
    stop = threading.Event()
    reloads = {"n": 0}

    def reload_again_and_again() -> None:
        with fleet.database.connection_context():
            while not stop.is_set():
                state.load_from_db()  # what the tokens page used to do after every price change
                sync_registry(state)
                state.note_usage(None)
                devices_today_and_total(state, ZoneInfo("UTC"), [d.device_id for d in state.views()])
                reloads["n"] += 1

    with DeviceConn(fleet, "burst") as dev:
        d = dev.device_id
        t = threading.Thread(target=reload_again_and_again, daemon=True)
        t.start()
        ts = now_ms()
        published = []
        for b in range(BATCHES):
            records = [usage_record(f"burst-{b:03d}-{i:03d}", ts=ts - i, input_tokens=1000 + b, output_tokens=i,
                                    cost_usd=None) for i in range(PER_BATCH)]
            published += records
            dev.publish(Channel.USAGE, batch(d, records))
            if b == BATCHES // 2:
                prices.add_rule(prices.RuleInput("anthropic/*", 3.0, 15.0))  # re-prices history meanwhile
                state.note_usage(None)  # as the tokens page does after a price change
        wait_for(lambda: UsageRecord.select().where(UsageRecord.device == d).count() == len(published), 30,
                 what="every usage record stored")
        stop.set()
        t.join(10)
    assert reloads["n"] > 3
    want = sum(r["total_tokens"] for r in published)
    today, total = devices_today_and_total(state, ZoneInfo("UTC"), [d])
    assert total[d].total_tokens == want and total[d].messages == len(published)
    assert today[d].total_tokens == want and today[d].unpriced_tokens == 0  # every record is rule-priced now
    figures = fleet_figures(state, ZoneInfo("UTC"))
    assert figures.all_time.total_tokens == figures.today.total_tokens == want
    cost = sum(r["input_tokens"] * 3.0 + r["output_tokens"] * 15.0 for r in published) / 1e6
    assert abs(total[d].cost_usd - cost) < 1e-9 and abs(sums.total_usage(devices=[d]).cost_usd - cost) < 1e-9


def test_a_reload_between_a_commit_and_its_cache_change_counts_the_batch_once(tmp_path):
    """The exact interleaving that doubled a batch: ingest commits, the cache reloads, ingest applies."""
    from history_helpers import add_device

    from fleet_server.state import FleetState
    from fleet_server.store.db import open_database
    from fleet_server.store.usage.ledger import insert_usage

    database = open_database(tmp_path)
    add_device("dev")
    state = FleetState()
    state.load_from_db()
    devices_today_and_total(state, ZoneInfo("UTC"), ["dev"])  # a page has the old figures cached
    with database.atomic():
        added = insert_usage([{"id": "r1", "device": "dev", "ts": now_ms(), "agent_id": "main", "session_id": "s",
                               "provider": "p", "model": "m", "input_tokens": 10, "output_tokens": 0,
                               "cache_read_tokens": 0, "cache_write_tokens": 0, "total_tokens": 10, "cost_usd": None,
                               "source": "transcript"}])  # ingest's batch commits
    state.load_from_db()  # a reload runs now
    state.note_usage(added)  # ingest applies its committed batch
    today, total = devices_today_and_total(state, ZoneInfo("UTC"), ["dev"])
    assert today["dev"].total_tokens == total["dev"].total_tokens == 10
    database.close()
