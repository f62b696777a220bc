"""Overload: the broker drops messages it acknowledged because ingest's queue is full (here made
small, and ingest held up, so a modest load does it on a shared machine). The overload is visible
while it lasts (the broker's line at WARNING, the dropped count in /healthz and /metrics) and every
record is still stored exactly once: devices that handle receipts send again what was dropped.
Real Mosquitto, real server; the devices are the benchmarks' simulated ones (separate processes),
which handle receipts as the agent does."""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
import threading
import time

import pytest
from e2e_helpers import wait_for
from mqtt_helpers import free_port

import fleet_server.ingest.subscriber as subscriber_module
import fleet_server.server as server_module
from benchmarks.loadgen import DeviceCreds, LoadSpec, run_load
from fleet_server.devices.registry import add_device
from fleet_server.server import FleetServer, ServerOptions
from fleet_server.store.models import LogRecord, Sample, UsageRecord

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def small_queues(tmp_path, monkeypatch):
    """A server whose broker queues at most 100 messages for ingest beyond 100 in flight."""
    shipped = server_module.managed_broker_config
    monkeypatch.setattr(server_module, "managed_broker_config",
                        lambda *a, **kw: dataclasses.replace(shipped(*a, **kw), max_queued_messages=100))
    monkeypatch.setattr(subscriber_module, "RECEIVE_MAXIMUM", 100)
    server = FleetServer(ServerOptions(data_dir=tmp_path / "server", mqtt_port=free_port(), local_agent=False))
    server.start()
    assert server.ingest is not None and server.ingest.connected.wait(10)
    yield server
    server.stop()


def test_dropped_messages_are_visible_and_sent_again_until_all_are_stored_once(small_queues: FleetServer, caplog):
    fleet = small_queues
    creds = []
    for i in range(10):
        new = add_device(fleet.dynsec, f"overload {i}", fleet.broker_url)
        creds.append(DeviceCreds(new.device.id, new.api_key))
    spec = LoadSpec(port=fleet.opts.mqtt_port, devices=creds, rate_per_s=300, duration_s=4.0, processes=1,
                    mix={"telemetry": 3, "usage": 1, "logs": 1}, usage_records=5, log_records=2, receipts=True,
                    settle_s=150)
    lock = sqlite3.connect(fleet.opts.data_dir / "clawfleet.sqlite", isolation_level=None, check_same_thread=False)
    lock.execute("BEGIN IMMEDIATE")  # ingest stops storing: in flight and queue fill up, the rest is dropped
    release = threading.Timer(6.0, lambda: (lock.execute("ROLLBACK"), lock.close()))
    release.start()
    with caplog.at_level(logging.WARNING):
        result = run_load(spec, progress=False)
    release.join()
    sent = result.published
    assert result.connected == 10 and result.errors == [], result.errors
    assert result.unconfirmed == 0 and result.resent > 0, (result.unconfirmed, result.resent)
    assert result.acked == result.total_published  # the broker acknowledged every one of them
    # every record exactly once (ids and (device, ts) are the keys: a duplicate cannot be a second row)
    assert (Sample.select().count(), UsageRecord.select().count(), LogRecord.select().count()) == (
        sent["telemetry"] + result.settle_samples, sent["usage"] * 5, sent["logs"] * 2)
    assert any("Outgoing messages are being dropped for client clawfleet-ingest" in r.getMessage()
               and r.levelno == logging.WARNING for r in caplog.records)
    drops = fleet.ingest.subscriber.drops
    wait_for(lambda: (drops.total or 0) > 0, 15, what="the broker's dropped count ($SYS, every 10 s)")
    assert drops.total >= result.resent // 2
    health = fleet.health()
    assert health.ok and health.ingest["broker_dropping"] and "dropping" in health.ingest["warning"]
    print(f"overload: {result.total_published} published, {drops.total} dropped by the broker, "
          f"{result.resent} sent again, all stored once; {time.strftime('%H:%M:%S')}")
