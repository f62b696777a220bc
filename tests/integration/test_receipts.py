"""Delivery receipts end to end (real Mosquitto, real server, real agent service): the agent keeps
messages until the server has stored them, not merely until the broker's PUBACK, sends again what
the broker lost, ignores receipts that are not for it, and falls back to PUBACKs with a server that
sends no receipts."""

from __future__ import annotations

import json
import sqlite3
import time

import pytest
from e2e_helpers import RunningAgent, wait_for
from mqtt_helpers import connect_probe
from payload_helpers import DeviceConn

from agent_tray.config import AgentConfig
from broker.acl import device_role_acls, device_role_name
from fleet_server.devices.reconcile import reconcile_roles
from fleet_server.devices.registry import add_device
from fleet_server.server import FleetServer
from fleet_server.store.models import Sample
from shared.topics import ALL_DEVICES_FILTER, SERVER_STATUS_TOPIC, Channel, device_topic


def _agent(fleet: FleetServer, tmp_path, device_id: str) -> RunningAgent:
    new = add_device(fleet.dynsec, device_id, fleet.broker_url)
    return RunningAgent(AgentConfig(device_id=device_id, broker_url=fleet.broker_url, api_key=new.api_key,
                                    interval_s=1, keepalive_s=5, data_dir=str(tmp_path / device_id), bridge_port=0,
                                    openclaw_state_dir=str(tmp_path / "no-openclaw")))


def _samples(device_id: str) -> set[int]:
    return {s.ts for s in Sample.select(Sample.ts).where(Sample.device == device_id)}


def _publish_as_server(fleet: FleetServer, topic: str, payload: dict, retain: bool = False) -> None:
    admin = fleet.broker.admin
    probe, rc = connect_probe("127.0.0.1", fleet.opts.mqtt_port, admin.username, admin.password)
    with probe:
        assert rc.value == 0
        assert not probe.publish(topic, json.dumps(payload).encode(), qos=1, retain=retain).is_failure


def test_messages_stay_in_the_outbox_until_the_server_stored_them(fleet: FleetServer, tmp_path):
    agent = _agent(fleet, tmp_path, "rcpt-hold")
    sender = agent.service.publisher.sender
    outbox = agent.service.outbox
    try:
        wait_for(lambda: sender.receipts_active and sender.last_confirmed_ms, 20, what="the first receipt")
        lock = sqlite3.connect(fleet.opts.data_dir / "clawfleet.sqlite", isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")  # ingest cannot commit: the broker acknowledges, nothing is stored
        try:
            acked = sender.last_publish_ms
            wait_for(lambda: (sender.last_publish_ms or 0) > (acked or 0) and outbox.stats()["messages"] >= 3, 20,
                     what="samples acknowledged by the broker but kept in the outbox")
            # a receipt for another outbox (e.g. the one before a reinstall) confirms nothing here
            _publish_as_server(fleet, device_topic("rcpt-hold", Channel.RECEIPT),
                               {"v": 1, "ts": int(time.time() * 1000), "outbox": "fedcba9876543210",
                                "channels": {"telemetry": {"upto": 1_000_000}}}, retain=True)
            time.sleep(1.5)
            held = outbox.stats()["messages"]
            assert held >= 3
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        wait_for(lambda: outbox.stats()["messages"] <= 1, 40, what="the outbox to drain on receipts")
        assert len(_samples("rcpt-hold")) >= held
    finally:
        agent.stop()


def test_what_the_broker_lost_after_its_puback_is_sent_again(fleet: FleetServer, tmp_path):
    agent = _agent(fleet, tmp_path, "rcpt-lost")
    sender = agent.service.publisher.sender
    try:
        wait_for(lambda: sender.receipts_active and sender.last_confirmed_ms, 20, what="the first receipt")
        outbox = agent.service.outbox
        fleet.ingest.client.unsubscribe(ALL_DEVICES_FILTER)  # the broker acknowledges and drops: no subscriber
        time.sleep(0.5)
        first, lost_from = outbox.last_seq("telemetry"), int(time.time() * 1000)
        time.sleep(3)
        last, lost_until = outbox.last_seq("telemetry"), int(time.time() * 1000)
        fleet.ingest.client.subscribe(ALL_DEVICES_FILTER, qos=1)

        def lost() -> set[int]:
            return {ts for ts in _samples("rcpt-lost") if lost_from - 300 <= ts <= lost_until}

        assert last - first >= 2 and not lost()
        # overtaken by later samples that were confirmed: sent again within seconds, not after a timeout
        wait_for(lambda: len(lost()) >= last - first, 20, what="every sample the broker dropped, sent again")
        assert sender.resent >= last - first - 1  # the newest may come back as the broker's retained replay
    finally:
        agent.stop()


@pytest.mark.parametrize("refuse", ["server", "broker"])
def test_without_receipts_messages_leave_the_outbox_on_their_puback(fleet: FleetServer, tmp_path, refuse):
    device_id = f"rcpt-off-{refuse}"
    agent = _agent(fleet, tmp_path, device_id)
    sender = agent.service.publisher.sender
    outbox = agent.service.outbox
    try:
        wait_for(lambda: sender.receipts_active, 20, what="receipts on")
        if refuse == "server":  # a server from before receipts says it is online
            _publish_as_server(fleet, SERVER_STATUS_TOPIC, {"v": 1, "ts": int(time.time() * 1000), "state": "online"})
        else:  # a broker that does not let the device read its receipts (ACL not there yet)
            role = f"device-{device_id}"
            fleet.dynsec.execute([{"command": "removeRoleACL", "rolename": role, "acltype": "subscribeLiteral",
                                   "topic": device_topic(device_id, Channel.RECEIPT)}])
            fleet.dynsec.execute([{"command": "disableClient", "username": device_id}])
            fleet.dynsec.execute([{"command": "enableClient", "username": device_id}])  # reconnects, subscribes
        wait_for(lambda: not sender.receipts_active, 20, what="receipts off")
        lock = sqlite3.connect(fleet.opts.data_dir / "clawfleet.sqlite", isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")  # nothing is stored, yet the outbox drains on PUBACKs
        try:
            acked = sender.last_publish_ms
            wait_for(lambda: (sender.last_publish_ms or 0) > (acked or 0) + 3000, 20, what="more PUBACKs")
            assert outbox.stats()["messages"] <= 2  # a sample just taken, one awaiting its PUBACK: no pile-up
        finally:
            lock.execute("ROLLBACK")
            lock.close()
    finally:
        agent.stop()


def test_a_device_enrolled_before_receipts_may_read_them_after_the_start_up_role_check(fleet: FleetServer):
    """On an external broker the device roles are brought up to date by dynsec commands at start-up
    (the managed broker's file is, before it starts: tests/broker/test_device_layout.py)."""
    dyn = fleet.dynsec
    assert dyn is not None
    with DeviceConn(fleet, "pre-receipts") as dev:
        old = [a for a in device_role_acls("pre-receipts") if not a["topic"].endswith("/receipt")]
        dyn.execute([{"command": "modifyRole", "rolename": device_role_name("pre-receipts"), "acls": old}])
        assert dev.probe.subscribe(dev.topic(Channel.RECEIPT)).value == 0x87  # not authorized
        assert reconcile_roles(dyn) == 1
        assert dev.probe.subscribe(dev.topic(Channel.RECEIPT)).value == 1
        assert reconcile_roles(dyn) == 0
