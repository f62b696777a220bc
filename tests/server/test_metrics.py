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
