"""The benchmarks' load generator against a real server: what it says it published is what the
broker delivered (its bare-subscriber ceiling) and what ingest stored, channel by channel."""

from __future__ import annotations

import pytest
from e2e_helpers import wait_for

from benchmarks.loadgen import DeviceCreds, LoadSpec, run_load
from fleet_server.devices.registry import add_device
from fleet_server.server import FleetServer
from fleet_server.store.models import Device, LogRecord, Sample, UsageRecord


@pytest.mark.parametrize("receipts", [False, True], ids=["puback", "receipts"])
def test_loadgen_publishes_valid_payloads_that_are_all_stored(fleet: FleetServer, receipts: bool) -> None:
    creds = []
    for i in range(6):
        new = add_device(fleet.dynsec, f"load {i}", fleet.broker_url)
        creds.append(DeviceCreds(new.device.id, new.api_key))
    account = fleet.ingest.subscriber.account
    spec = LoadSpec(port=fleet.opts.mqtt_port, devices=creds, rate_per_s=150, duration_s=2.0, processes=2,
                    mix={"telemetry": 3, "usage": 1, "logs": 1}, usage_records=4, log_records=3,
                    observer=(account.username, account.password), settle_s=20, receipts=receipts)
    result = run_load(spec, progress=False)

    assert result.connected == 6 and result.connect_failures == 0, result.errors
    assert result.errors == [] and result.unconfirmed == 0 and result.resent == 0
    sent = result.published
    assert sum(sent.values()) >= 250 and set(sent) == {"telemetry", "usage", "logs"}
    assert result.acked == result.total_published
    assert result.observed == result.total_published  # announcements are retained: not counted
    wait_for(lambda: Sample.select().count() == sent["telemetry"]
             and UsageRecord.select().count() == sent["usage"] * 4
             and LogRecord.select().count() == sent["logs"] * 3, timeout=30)
    assert fleet.ingest.counters["rejected_invalid_payload"] == 0
    # each device announced itself (retained online status + meta); a clean DISCONNECT sends no last will
    assert [(d.status, d.meta_json is not None) for d in Device.select()] == [("online", True)] * 6
