"""/metrics: parses with prometheus_client's own parser and carries the expected series; needs a token or
a session; absent unless enabled (real SQLite with the fixtures' usage)."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace

from nicegui import app
from nicegui.testing.user_simulation import user_simulation
from prometheus_client.parser import text_string_to_metric_families
from usage_seed import seed_fixture_usage

from broker.overload import DropCounter
from fleet_server.api.metrics import install_metrics
from fleet_server.auth import api_tokens
from fleet_server.dashboard import register_pages
from fleet_server.state import FleetState
from shared import schemas


class FakeIngest:
    """Stands in for the MQTT ingest (its counters only): no broker is needed to test the exposition."""

    counters = Counter({"received": 12, "batches": 3, "stored_telemetry": 9, "rejected_invalid": 2,
                        "receipts_published": 7})
    batch_seconds = 0.042
    subscriber = SimpleNamespace(drops=DropCounter())
    subscriber.drops.update(b"16483")  # what $SYS/broker/publish/messages/dropped says


def families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


async def test_metrics_parse_and_carry_the_expected_series(db, tmp_path):
    seed_fixture_usage(tmp_path)
    state = FleetState()
    state.load_from_db()
    state.upsert("oc-latest", status="online", telemetry=schemas.Telemetry(
        device_id="oc-latest", ts=1_795_234_253_457, cpu_pct=25.0, mem_used_bytes=2 << 30, mem_total_bytes=8 << 30,
        mem_pct=25.0, disk_used_bytes=10 << 30, disk_total_bytes=100 << 30, disk_pct=10.0, swap_pct=0.0,
        net_rx_bps=1000.0, net_tx_bps=500.0, uptime_s=3600.0, openclaw=schemas.OpenClawState(installed=True, up=True)))
    state.upsert("oc-legacy", status="offline")
    _, token = api_tokens.create_token("prometheus", "test")
    async with user_simulation() as user:
        register_pages(state)
        assert (await user.http_client.get("/metrics", headers={"Authorization": f"Bearer {token}"})).status_code \
            == 404  # off unless `run --metrics`
        install_metrics(app, state, lambda: FakeIngest())
        assert (await user.http_client.get("/metrics")).status_code == 401
        r = await user.http_client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    fams = families(r.text)
    up = {s.labels["device"]: s.value for s in fams["clawfleet_device_up"].samples}
    assert up == {"oc-latest": 1.0, "oc-legacy": 0.0}
    cpu = fams["clawfleet_device_cpu_usage_ratio"].samples
    assert [(s.labels, s.value) for s in cpu] == [({"device": "oc-latest"}, 0.25)]
    assert fams["clawfleet_device_memory_total_bytes"].samples[0].value == 8 << 30
    assert fams["clawfleet_device_openclaw_up"].samples[0].value == 1.0
    tokens = fams["clawfleet_tokens"]
    assert tokens.type == "counter" and all(s.name == "clawfleet_tokens_total" for s in tokens.samples)
    by_agent: Counter[str] = Counter()
    for s in tokens.samples:
        by_agent[(s.labels["agent"], s.labels["type"])] += s.value
    assert by_agent[("main", "input")] == 86153 and by_agent[("research", "cache_read")] == 512
    failed = {s.labels["agent"]: s.value for s in fams["clawfleet_failed_turns"].samples}
    assert failed == {"main": 3, "research": 3}  # turns, counted once (2026.7's retried 429 is one)
    errors = {s.labels["agent"]: s.value for s in fams["clawfleet_error_messages"].samples}
    assert errors == {"main": 3, "research": 6}
    assert sum(s.value for s in fams["clawfleet_unpriced_tokens"].samples) == 127044
    assert fams["clawfleet_ingest_messages_received"].samples[0].value == 12
    assert {s.labels["reason"]: s.value for s in fams["clawfleet_ingest_messages_rejected"].samples} == {"invalid": 2}
    batch = {s.name: s.value for s in fams["clawfleet_ingest_batch_duration_seconds"].samples}
    assert batch == {"clawfleet_ingest_batch_duration_seconds_count": 3,
                     "clawfleet_ingest_batch_duration_seconds_sum": 0.042}
    assert fams["clawfleet_ingest_receipts_published"].samples[0].value == 7
    dropped = fams["clawfleet_broker_dropped_messages"]
    assert dropped.type == "counter" and dropped.samples[0].value == 16483


def hostile_usage(records: int = 20_000, models: int = 10_000) -> None:
    """``records`` usage records of one device with ``models`` distinct model names (stored directly, as
    data from before the ingest bounds or from many devices would be)."""
    from usage_seed import add_device

    from fleet_server.store.models import db
    from fleet_server.store.usage.ledger import insert_usage

    add_device("namer")
    rows = [{"device": "namer", "id": f"record-{i:06d}", "ts": 1_795_000_000_000 + i, "agent_id": "main",
             "session_id": "s", "provider": "evil", "model": f"model-{i % models}", "input_tokens": 10 + i % 7,
             "output_tokens": 1, "cache_read_tokens": 0, "cache_write_tokens": 0, "total_tokens": 11 + i % 7,
             "cost_usd": None, "source": "transcript"} for i in range(records)]
    with db.atomic():
        for k in range(0, len(rows), 2000):
            insert_usage(rows[k:k + 2000])


async def test_metrics_under_hostile_cardinality_are_bounded_and_cached(db, monkeypatch):
    from fleet_server.api import metrics as metrics_module

    hostile_usage()
    state = FleetState()
    state.load_from_db()
    _, token = api_tokens.create_token("prometheus", "test")
    calls = []
    real = metrics_module.sums.usage
    monkeypatch.setattr(metrics_module.sums, "usage", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    async with user_simulation() as user:
        register_pages(state)
        install_metrics(app, state, lambda: FakeIngest())
        auth = {"Authorization": f"Bearer {token}"}
        first = await user.http_client.get("/metrics", headers=auth)
        second = await user.http_client.get("/metrics", headers=auth)
    assert first.status_code == second.status_code == 200
    assert len(calls) == 1, "a second scrape within a few seconds is served from the cache"
    fams = families(first.text)
    for fam in fams.values():  # every usage family: at most the cap of label sets, plus (other)
        label_sets = {(s.labels.get("device"), s.labels.get("agent"), s.labels.get("model")) for s in fam.samples}
        assert len(label_sets) <= metrics_module.MAX_USAGE_SERIES + 1, fam.name
    assert sum(len(f.samples) for f in fams.values()) < 20_000  # it was 80,006
    tokens = fams["clawfleet_tokens"].samples
    assert {s.labels["model"] for s in tokens} >= {"(other)"}
    assert sum(s.value for s in tokens) == sum(11 + i % 7 for i in range(20_000))  # nothing lost in the fold
    assert fams["clawfleet_usage_label_sets_folded"].samples[0].value == 10_000 - metrics_module.MAX_USAGE_SERIES


def test_tokens_chart_draws_the_top_series_and_others():
    from fleet_server.dashboard.pages.tokens import CHART_SERIES, chart_options
    from fleet_server.store.usage.sums import UsageSums

    rows = [UsageSums(key={"day": "2026-12-01", "model": f"model-{i}"}, total_tokens=i + 1) for i in range(10_000)]
    opts = chart_options(rows, "model", ["2026-12-01"], {})
    names = [s["name"] for s in opts["series"]]
    assert len(names) == CHART_SERIES + 1 and names[0] == "model-9999" and names[-1] == "others (9,990)"
    assert sum(s["data"][0] for s in opts["series"]) == sum(range(1, 10_001))
