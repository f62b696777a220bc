"""The change notifications between server processes: every payload under PostgreSQL's limit, a
large meta sent by name and read from the devices table, a process's own changes not applied
twice (real SQLite for the devices table; the LISTEN/NOTIFY path runs in tests/ingest/test_workers.py)."""

from __future__ import annotations

import json

from fleet_server.ingest.change_feed import MAX_PAYLOAD, apply, encode
from fleet_server.ingest.messages import CacheChange
from fleet_server.state import FleetState, LatestError
from fleet_server.store.db import open_database
from fleet_server.store.models import Device
from fleet_server.store.rows import meta_json
from shared import schemas

T0 = 1_767_225_600_000


def _telemetry(device_id: str) -> schemas.Telemetry:
    return schemas.Telemetry(device_id=device_id, ts=T0, cpu_pct=12.5, mem_used_bytes=1, mem_total_bytes=2, mem_pct=50,
                             disk_used_bytes=1, disk_total_bytes=2, disk_pct=50, swap_pct=0, net_rx_bps=1,
                             net_tx_bps=1, load_avg=None, uptime_s=5)


def test_a_large_change_goes_as_several_notifications_and_arrives_whole(tmp_path):
    open_database(tmp_path)
    change = CacheChange()
    for i in range(300):
        change.set(f"dev-{i:03d}", telemetry=_telemetry(f"dev-{i:03d}"), last_seen_ms=T0 + i,
                   latest_error=LatestError(T0, "error", "gw", "x" * 5000))  # each device alone nearly fills one
    change.usage = {"dev-000"}
    change.reject("dev-001", "invalid_payload", "bad")
    payloads = encode(change, "worker-1")
    assert len(payloads) > 1 and all(len(p.encode()) < MAX_PAYLOAD for p in payloads)
    state = FleetState()
    usage_version = state.usage_version
    for p in payloads:
        assert apply(p, state, "dashboard")
        assert not apply(p, state, "worker-1")  # its own: not applied again
    assert len(state.views()) == 300
    view = state.get("dev-299")
    assert view.telemetry == _telemetry("dev-299") and view.last_seen_ms == T0 + 299 and view.heard_ms is not None
    assert view.latest_error.message == "x" * 1000  # shortened to fit
    assert state.usage_version > usage_version and state.get("dev-000").usage_ms is not None  # sums read again
    assert state.get("dev-001").rejects == {"invalid_payload": 1}


def test_a_meta_too_large_for_a_notification_is_read_from_the_devices_table(tmp_path):
    open_database(tmp_path)
    meta = schemas.Meta(device_id="big", ts=T0, hostname="h" * 200, os="Linux", agent_version="t", cpu_count=1,
                        mem_total_bytes=1, disk_total_bytes=1, boot_time_ms=T0,
                        agents=[f"agent-{i}-" + "a" * 150 for i in range(40)])
    Device.create(id="big", name="big", key_hash="0" * 64, key_hint="test", created_ms=T0, meta_json=meta_json(meta))
    change = CacheChange()
    change.set("big", meta=meta, last_seen_ms=T0)
    payloads = encode(change, "worker-1")
    assert all(len(p.encode()) < MAX_PAYLOAD for p in payloads)
    assert json.loads(payloads[0])["m"] == ["big"]
    state = FleetState()
    for p in payloads:
        apply(p, state, "dashboard")
    assert state.get("big").meta == meta
