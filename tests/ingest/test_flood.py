"""One device flooding must not slow the fleet down: a real Mosquitto, a real FleetServer and SQLite,
the flood from the benchmarks' load generator in its own process (usage batches of 500 records as
fast as the broker takes them), a canary device publishing a sample every half second. The canary's
publish→stored latency stays under 2 s; what the flooder sends over its budget is rejected as
``rate_limited``, counted, and shown on its device view, and the broker refuses its usage for a
while."""

from __future__ import annotations

import time

from e2e_helpers import wait_for
from payload_helpers import CanaryWatch, DeviceConn

from benchmarks.loadgen import DeviceCreds, LoadSpec, run_load
from fleet_server.devices.registry import add_device
from fleet_server.ingest.limits import DEFAULT_BUDGETS
from fleet_server.server import FleetServer
from fleet_server.store.models import AuditEvent, RejectCount, UsageRecord
from shared.topics import Channel

FLOOD_S = 20.0
MAX_LATENCY_S = 2.0


def test_a_flooding_device_is_limited_and_the_canary_stays_fast(fleet: FleetServer):
    assert fleet.dynsec is not None
    flooder = add_device(fleet.dynsec, "flooder", fleet.broker_url)
    with DeviceConn(fleet, "canary") as canary:
        watch = CanaryWatch(fleet, canary)
        spec = LoadSpec(port=fleet.opts.mqtt_port, devices=[DeviceCreds(flooder.device.id, flooder.api_key)],
                        rate_per_s=400, duration_s=FLOOD_S, mix={"usage": 1.0}, usage_records=500, processes=1,
                        settle_s=10, announce=False)
        result = run_load(spec, progress=False)
        time.sleep(2)
        watch.stop()
    latencies = watch.latencies
    flood_records = result.published["usage"] * 500
    stored = UsageRecord.select().where(UsageRecord.device == flooder.device.id).count()
    limited = RejectCount.get_or_none((RejectCount.device == flooder.device.id)
                                      & (RejectCount.reason == "rate_limited"))
    print(f"flood: {flood_records:,} records offered, {stored:,} stored, "
          f"{limited.count if limited else 0:,} messages rate_limited; {watch.summary()}")
    assert len(latencies) >= FLOOD_S, latencies
    assert max(latencies) < MAX_LATENCY_S, latencies
    # the budget: its burst and rate of bytes over the flood and the settling (usage batches of ~128 KiB)
    budget = DEFAULT_BUDGETS[Channel.USAGE]
    allowed_bytes = budget.burst_bytes + budget.bytes_per_s * (FLOOD_S + 20)
    assert stored <= allowed_bytes / (120 * 1024) * 500 and stored < flood_records / 10
    assert limited is not None and limited.count > 0 and "usage budget" in limited.last_error
    wait_for(lambda: fleet.state.get(flooder.device.id).rejects.get("rate_limited", 0) > 0, 10,
             what="the device view to count it")
    # it went on far over budget: the broker refused its usage for a while (audited)
    assert AuditEvent.get((AuditEvent.action == "device.throttle") & (AuditEvent.target == flooder.device.id))
