"""The device account layout on a real Mosquitto: own role + shared role, as strict as the first
layout (one role per device holding everything), and the one-time start-up migration of devices
enrolled the first way. Rights are checked by connecting as the device (real CONNACK/PUBACK/SUBACK)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from mqtt_helpers import connect_probe, make_device, unique_device_id

from broker.acl import (
    DEVICE_SHARED_ROLE,
    device_role_acls,
    device_role_name,
    legacy_device_role_acls,
    same_acls,
)
from broker.config import BrokerAdmin, pbkdf2_fields, prepare_dynsec_file
from broker.dynsec import DynSecClient
from broker.dynsec_file import add_devices, migrate_device_layout
from broker.mosquitto import ManagedMosquitto
from shared.topics import ALL_DEVICES_FILTER, ROOT, SERVER_STATUS_TOPIC, Channel, device_topic

NOT_AUTHORIZED = 0x87
OWN_PUBLISH = (Channel.STATUS, Channel.META, Channel.TELEMETRY, Channel.USAGE, Channel.LOGS)


def assert_device_rights(port: int, device_id: str, key: str, other: str) -> None:
    """``device_id`` may publish its own five channels and subscribe to its cmd, its receipts and the
    server status; nothing else (another device's topics, its own cmd or receipt as publisher, wildcards)."""
    probe, rc = connect_probe("127.0.0.1", port, device_id, key, device_id)
    try:
        assert rc.value == 0
        for ch in OWN_PUBLISH:
            assert not probe.publish(device_topic(device_id, ch), b"{}").is_failure, ch
        for ch in Channel:
            assert probe.publish(device_topic(other, ch), b"{}").value == NOT_AUTHORIZED, ch
        assert probe.publish(device_topic(device_id, Channel.CMD), b"{}").value == NOT_AUTHORIZED
        assert probe.publish(device_topic(device_id, Channel.RECEIPT), b"{}").value == NOT_AUTHORIZED  # no forging
        assert probe.publish(SERVER_STATUS_TOPIC, b"{}").value == NOT_AUTHORIZED
        assert probe.subscribe(device_topic(device_id, Channel.CMD)).value == 1
        assert probe.subscribe(device_topic(device_id, Channel.RECEIPT)).value == 1
        assert probe.subscribe(SERVER_STATUS_TOPIC).value == 1
        for topic in (device_topic(other, Channel.CMD), device_topic(other, Channel.TELEMETRY),
                      device_topic(other, Channel.RECEIPT), f"{ROOT}/+/cmd", f"{ROOT}/+/receipt",
                      ALL_DEVICES_FILTER, "#", f"{ROOT}/_server/#"):
            assert probe.subscribe(topic).value == NOT_AUTHORIZED, topic
    finally:
        probe.close()


def pre_receipt_acls(device_id: str) -> list[dict]:
    """A device role's ACLs as the release before delivery receipts made them: no ``receipt`` topic."""
    return [a for a in device_role_acls(device_id) if not a["topic"].endswith("/receipt")]


def _legacy_file(path: Path, admin: BrokerAdmin, devices: dict[str, str]) -> None:
    """A dynsec file as the first layout wrote it: one labelled role per device holding every right."""
    prepare_dynsec_file(path, admin)
    data = json.loads(path.read_text())
    data["roles"] = [r for r in data["roles"] if r["rolename"] != DEVICE_SHARED_ROLE]
    for did, key in devices.items():
        data["clients"].append({"username": did, "textname": f"ClawFleet device {did}", "clientid": did,
                                "roles": [{"rolename": device_role_name(did)}], **pbkdf2_fields(key)})
        data["roles"].append({"rolename": device_role_name(did), "textname": f"ClawFleet device {did}",
                              "acls": legacy_device_role_acls(did)})
    path.write_text(json.dumps(data))  # as prepare_dynsec_file writes it


def test_new_device_holds_own_and_shared_role_with_the_same_rights(dynsec: DynSecClient,
                                                                   managed_broker: ManagedMosquitto) -> None:
    a, b = unique_device_id("a"), unique_device_id("b")
    key = make_device(dynsec, a)
    make_device(dynsec, b)
    client = dynsec.get_client(a)
    assert client is not None and "textname" not in client
    assert {r["rolename"] for r in client["roles"]} == {device_role_name(a), DEVICE_SHARED_ROLE}
    role = dynsec._get_role(device_role_name(a))
    assert role is not None and SERVER_STATUS_TOPIC not in {x["topic"] for x in role["acls"]}
    assert_device_rights(managed_broker.cfg.port, a, key, b)


def test_shared_role_alone_grants_only_the_server_status(dynsec: DynSecClient,
                                                         managed_broker: ManagedMosquitto) -> None:
    name, other = unique_device_id("shared-only"), unique_device_id()
    make_device(dynsec, other)
    dynsec.execute([{"command": "createClient", "username": name, "password": "pw-" + name,
                     "roles": [{"rolename": DEVICE_SHARED_ROLE}]}])
    probe, rc = connect_probe("127.0.0.1", managed_broker.cfg.port, name, "pw-" + name, name)
    try:
        assert rc.value == 0
        assert probe.subscribe(SERVER_STATUS_TOPIC).value == 1
        for ch in Channel:
            assert probe.publish(device_topic(other, ch), b"{}").value == NOT_AUTHORIZED
            assert probe.subscribe(device_topic(other, ch)).value == NOT_AUTHORIZED
    finally:
        probe.close()
        dynsec.execute([{"command": "deleteClient", "username": name}])


def test_legacy_devices_are_migrated_once_at_start_and_keep_working(broker_factory, tmp_path: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    broker = broker_factory(start=False)
    broker.cfg.broker_dir.mkdir(parents=True, mode=0o700)
    admin = BrokerAdmin.load_or_create(broker.cfg.admin_path)
    devices = {unique_device_id("old"): "cfk_" + "k" * 43 + str(i) for i in range(3)}
    _legacy_file(broker.cfg.dynsec_path, admin, devices)
    size_before = broker.cfg.dynsec_path.stat().st_size
    with caplog.at_level(logging.INFO, logger="clawfleet.broker"):
        broker.start()
    assert [r.getMessage() for r in caplog.records if "moved 3 device accounts" in r.getMessage()]
    data = json.loads(broker.cfg.dynsec_path.read_text())
    roles = {r["rolename"]: r for r in data["roles"]}
    for did in devices:
        client = next(c for c in data["clients"] if c["username"] == did)
        assert {r["rolename"] for r in client["roles"]} == {device_role_name(did), DEVICE_SHARED_ROLE}
        assert "textname" not in client and "textname" not in roles[device_role_name(did)]
        assert {x["topic"] for x in roles[device_role_name(did)]["acls"]} == {
            x["topic"] for x in device_role_acls(did)}
    assert broker.cfg.dynsec_path.stat().st_size < size_before
    ids = sorted(devices)
    for did, other in zip(ids, ids[1:] + ids[:1], strict=True):
        assert_device_rights(broker.cfg.port, did, devices[did], other)  # the old keys still work
    broker.stop()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="clawfleet.broker"):
        broker.start()  # once: nothing left to migrate
    assert not [r for r in caplog.records if "device accounts" in r.getMessage()]


def test_devices_enrolled_before_receipts_get_their_receipt_topic_at_start(broker_factory) -> None:
    broker = broker_factory(start=False)
    broker.cfg.broker_dir.mkdir(parents=True, mode=0o700)
    admin = BrokerAdmin.load_or_create(broker.cfg.admin_path)
    prepare_dynsec_file(broker.cfg.dynsec_path, admin)
    data = json.loads(broker.cfg.dynsec_path.read_text())
    devices = {unique_device_id("pre"): "cfk_" + "r" * 43 + str(i) for i in range(2)}
    add_devices(data, [(did, pbkdf2_fields(key)) for did, key in devices.items()])
    for role in data["roles"]:  # as enrolled by the release before receipts
        did = role["rolename"].removeprefix("device-")
        if did in devices:
            role["acls"] = pre_receipt_acls(did)
    broker.cfg.dynsec_path.write_text(json.dumps(data))
    broker.start()
    roles = {r["rolename"]: r for r in json.loads(broker.cfg.dynsec_path.read_text())["roles"]}
    a, b = sorted(devices)
    for did in devices:
        assert same_acls(roles[device_role_name(did)]["acls"], device_role_acls(did))
    assert_device_rights(broker.cfg.port, a, devices[a], b)


def test_file_helpers_refuse_duplicates_and_migrate_idempotently(tmp_path: Path) -> None:
    path = tmp_path / "dynsec.json"
    admin = BrokerAdmin(username="clawfleet-server", password="x" * 43)
    _legacy_file(path, admin, {"old-1": "k1"})
    data = json.loads(path.read_text())
    assert migrate_device_layout(data) == 1 and migrate_device_layout(data) == 0
    assert add_devices(data, [("new-1", pbkdf2_fields("k2"))]) == 1
    with pytest.raises(ValueError, match="already has an account for 'new-1'"):
        add_devices(data, [("new-2", pbkdf2_fields("k3")), ("new-1", pbkdf2_fields("k4"))])
    assert "new-2" not in {c["username"] for c in data["clients"]}  # all or nothing
    assert migrate_device_layout(data) == 0  # added in the current layout
