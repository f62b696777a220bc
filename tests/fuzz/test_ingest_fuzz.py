"""Property, through the real ingest path (managed Mosquitto on loopback, FleetServer, SQLite):
whatever a hostile device publishes on its own topics, ingest keeps running, nothing stored for it
breaks the schema's bounds, and a canary device's good messages keep being stored."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from e2e_helpers import wait_for
from fuzz_helpers import hostile_payloads, stored_violations
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mqtt_helpers import free_port
from payload_helpers import DeviceConn, batch, now_ms, telemetry, usage_record

from fleet_server.server import FleetServer, ServerOptions
from fleet_server.store.models import Sample, UsageRecord
from shared.topics import Channel

HOSTILE = "hostile-fuzz"
EXAMPLES = {"n": 0, "messages": 0}


@pytest.fixture(scope="module")
def fleet_fuzz(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FleetServer, DeviceConn, DeviceConn]]:
    server = FleetServer(ServerOptions(data_dir=tmp_path_factory.mktemp("fuzz") / "server", mqtt_port=free_port(),
                                       local_agent=False))
    server.start()
    assert server.ingest is not None and server.ingest.connected.wait(10)
    hostile, canary = DeviceConn(server, HOSTILE), DeviceConn(server, "canary-fuzz")
    yield server, hostile, canary
    print(f"\ningest fuzz: {EXAMPLES['n']} examples, {EXAMPLES['messages']} hostile messages, "
          f"counters {dict(sorted(server.ingest.counters.items()))}")
    hostile.close()
    canary.close()
    server.stop()


@settings(max_examples=80, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(hostile_payloads(HOSTILE), min_size=1, max_size=8))
def test_hostile_messages_never_stop_ingest(fleet_fuzz, messages):
    server, hostile, canary = fleet_fuzz
    for channel, raw in messages:
        hostile.publish(channel, raw, retain=channel in (Channel.STATUS, Channel.META, Channel.TELEMETRY))
    ts = now_ms()
    good = usage_record()
    canary.publish(Channel.TELEMETRY, telemetry(canary.device_id, ts=ts))
    canary.publish(Channel.USAGE, batch(canary.device_id, [good]))
    wait_for(lambda: Sample.get_or_none((Sample.device == canary.device_id) & (Sample.ts == ts))
             and UsageRecord.get_or_none((UsageRecord.device == canary.device_id) & (UsageRecord.id == good["id"])),
             15, what="the canary's sample and usage record")
    assert server.health().ok, server.health()
    assert stored_violations(server.opts.data_dir / "clawfleet.sqlite", HOSTILE) == []
    EXAMPLES["n"] += 1
    EXAMPLES["messages"] += len(messages)
