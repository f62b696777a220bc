"""A device flooding far over its budget is refused at the broker for a while, then let back; a block
left by a killed server is lifted at the next start (real Mosquitto and SQLite)."""

from __future__ import annotations

import pytest
from e2e_helpers import wait_for
from mqtt_helpers import connect_probe, make_device, unique_device_id

from fleet_server.devices import throttle
from fleet_server.store.db import open_database
from fleet_server.store.models import AuditEvent, JobMark
from shared.topics import Channel, device_topic

NOT_AUTHORIZED = 0x87


@pytest.fixture
def db(tmp_path):
    return open_database(tmp_path / "server")


@pytest.fixture
def blocker(db, dynsec, monkeypatch):
    monkeypatch.setattr(throttle, "FIRST_BLOCK_S", 2.0)
    b = throttle.ChannelBlocker(lambda: dynsec, db)
    b.start()
    yield b
    b.stop()


def test_a_flood_is_refused_at_the_broker_then_let_back(blocker, dynsec, managed_broker):
    device = unique_device_id("flood")
    probe, rc = connect_probe("127.0.0.1", managed_broker.cfg.port, device, make_device(dynsec, device))
    topic = device_topic(device, Channel.USAGE)
    try:
        assert rc.value == 0 and not probe.publish(topic, b"{}").is_failure
        for _ in range(throttle.BLOCK_AFTER - 1):
            blocker.note(device, Channel.USAGE, 100)
        assert not blocker.blocked, "under the threshold nothing happens"
        blocker.note(device, Channel.USAGE, 100)
        wait_for(lambda: probe.publish(topic, b"{}").value == NOT_AUTHORIZED, 10, what="the broker to refuse it")
        assert not probe.publish(device_topic(device, Channel.TELEMETRY), b"{}").is_failure, "other channels go on"
        assert probe.disconnected is None, "the device is not kicked"
        assert JobMark.get_or_none(JobMark.job == f"block/{device}/usage") is not None
        assert AuditEvent.get(AuditEvent.action == "device.throttle").target == device
        wait_for(lambda: not probe.publish(topic, b"{}").is_failure, 15, what="the block to end")
        assert not blocker.blocked and JobMark.get_or_none(JobMark.job == f"block/{device}/usage") is None
    finally:
        probe.close()


def test_a_block_left_by_a_killed_server_is_lifted_at_start(db, dynsec, managed_broker):
    device = unique_device_id("left")
    key = make_device(dynsec, device)
    dynsec.execute([{"command": "removeRoleACL", "rolename": f"device-{device}", "acltype": "publishClientSend",
                     "topic": device_topic(device, Channel.LOGS)}])
    JobMark.create(job=f"block/{device}/logs", requested_ms=1)
    probe, _ = connect_probe("127.0.0.1", managed_broker.cfg.port, device, key)
    try:
        assert probe.publish(device_topic(device, Channel.LOGS), b"{}").value == NOT_AUTHORIZED
        assert throttle.restore_blocked(dynsec) == [f"{device}/logs"]
        assert not probe.publish(device_topic(device, Channel.LOGS), b"{}").is_failure
        assert throttle.restore_blocked(dynsec) == []
    finally:
        probe.close()
