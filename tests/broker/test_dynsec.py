"""Device credentials and ACLs on a real Mosquitto (dynamic-security plugin).

Reason codes asserted here are what Mosquitto 2.0.11 actually sends to MQTT 5 clients:
CONNACK 0x87 (Not authorized) for a wrong key, unknown user or wrong client id (never 0x86);
PUBACK 0x87 for a QoS 1 publish outside the ACL (the message is dropped); SUBACK 0x87 for a
filter outside the ACL; DISCONNECT 0x98 (Administrative action) on delete/disable/rotate.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from mqtt_helpers import Probe, connect_probe, make_device, unique_device_id

from broker.acl import DEVICE_SHARED_ROLE
from broker.dynsec import (
    SERVER_ROLE,
    SERVER_USERNAME,
    DynSecClient,
    DynSecConnectionError,
    DynSecError,
)
from broker.mosquitto import ManagedMosquitto
from shared.topics import ALL_DEVICES_FILTER, ROOT, SERVER_STATUS_TOPIC, Channel, TopicError, device_topic

NOT_AUTHORIZED = 0x87
ADMINISTRATIVE_ACTION = 0x98
GRANTED_QOS_1 = 0x01


@pytest.fixture
def connect(managed_broker: ManagedMosquitto) -> Iterator:
    """``connect(username, password, client_id=None) -> (Probe, CONNACK code)``; probes closed after."""
    probes: list[Probe] = []

    def _connect(username: str, password: str, client_id: str | None = None) -> tuple[Probe, int]:
        probe, rc = connect_probe("127.0.0.1", managed_broker.cfg.port, username, password, client_id)
        probes.append(probe)
        return probe, rc.value

    yield _connect
    for p in probes:
        p.close()


@pytest.fixture
def server(connect, managed_broker: ManagedMosquitto) -> Probe:
    """A live connection as the server account (like ingest)."""
    probe, rc = connect(managed_broker.admin.username, managed_broker.admin.password,
                        f"test-server-{unique_device_id()}")
    assert rc == 0
    return probe


def test_device_connects_with_its_key(dynsec: DynSecClient, connect) -> None:
    dev = unique_device_id()
    _, rc = connect(dev, make_device(dynsec, dev))
    assert rc == 0


def test_wrong_credentials_get_connack_not_authorized(dynsec: DynSecClient, connect) -> None:
    dev = unique_device_id()
    key = make_device(dynsec, dev)
    assert connect(dev, key + "x")[1] == NOT_AUTHORIZED
    assert connect("nobody-" + dev, key)[1] == NOT_AUTHORIZED
    assert connect(dev, key, client_id="other-id")[1] == NOT_AUTHORIZED  # client id is pinned to the device id


def test_publish_to_other_device_is_refused_and_dropped(dynsec: DynSecClient, connect, server: Probe) -> None:
    a, b = unique_device_id("a"), unique_device_id("b")
    dev_a, _ = connect(a, make_device(dynsec, a))
    make_device(dynsec, b)
    assert server.subscribe(ALL_DEVICES_FILTER).value == GRANTED_QOS_1
    for ch in Channel:
        assert dev_a.publish(device_topic(b, ch), b"{}").value == NOT_AUTHORIZED, ch
    assert dev_a.publish(SERVER_STATUS_TOPIC, b"{}").value == NOT_AUTHORIZED
    assert dev_a.publish(device_topic(a, Channel.CMD), b"{}").value == NOT_AUTHORIZED  # cmd is server -> device
    sentinel = device_topic(a, Channel.LOGS)
    assert not dev_a.publish(sentinel, b"[]").is_failure
    assert [m.topic for m in server.messages_until(sentinel)] == [sentinel]  # nothing of the refused ones


def test_subscribe_outside_own_topics_gets_suback_not_authorized(dynsec: DynSecClient, connect) -> None:
    a, b = unique_device_id("a"), unique_device_id("b")
    dev_a, _ = connect(a, make_device(dynsec, a))
    for topic in (device_topic(b, Channel.CMD), device_topic(b, Channel.TELEMETRY), f"{ROOT}/+/cmd",
                  ALL_DEVICES_FILTER, f"{ROOT}/#", "#", f"$share/x/{device_topic(a, Channel.CMD)}"):
        assert dev_a.subscribe(topic).value == NOT_AUTHORIZED, topic
    assert dev_a.subscribe(device_topic(a, Channel.CMD)).value == GRANTED_QOS_1
    assert dev_a.subscribe(SERVER_STATUS_TOPIC).value == GRANTED_QOS_1


def test_device_cannot_read_other_devices_retained_telemetry(dynsec: DynSecClient, connect, server: Probe) -> None:
    a, b = unique_device_id("a"), unique_device_id("b")
    dev_b, _ = connect(b, make_device(dynsec, b))
    assert not dev_b.publish(device_topic(b, Channel.TELEMETRY), b'{"secret": 1}', retain=True).is_failure
    dev_a, _ = connect(a, make_device(dynsec, a))
    assert dev_a.subscribe(device_topic(b, Channel.TELEMETRY)).value == NOT_AUTHORIZED
    assert dev_a.subscribe(f"{ROOT}/+/{Channel.TELEMETRY.value}").value == NOT_AUTHORIZED
    assert dev_a.subscribe(device_topic(a, Channel.CMD)).value == GRANTED_QOS_1
    sentinel = device_topic(a, Channel.CMD)
    assert not server.publish(sentinel, b'{"cmd": "report"}').is_failure
    assert [m.topic for m in dev_a.messages_until(sentinel)] == [sentinel]


def test_server_account_can_do_its_job(dynsec: DynSecClient, connect, server: Probe,
                                      managed_broker: ManagedMosquitto) -> None:
    dev = unique_device_id()
    device, _ = connect(dev, make_device(dynsec, dev))
    telemetry, status = device_topic(dev, Channel.TELEMETRY), device_topic(dev, Channel.STATUS)
    assert device.publish(telemetry, b'{"cpu_pct": 1}', retain=True).value in (0, 0x10)  # 0x10: no subscribers
    assert device.publish(status, b'{"state": "online"}', retain=True).value in (0, 0x10)
    assert server.subscribe(f"$share/ingest/{ALL_DEVICES_FILTER}").value == GRANTED_QOS_1
    assert server.subscribe(f"{ROOT}/#").value == GRANTED_QOS_1
    assert device.subscribe(device_topic(dev, Channel.CMD)).value == GRANTED_QOS_1
    assert device.subscribe(SERVER_STATUS_TOPIC).value == GRANTED_QOS_1
    assert not server.publish(device_topic(dev, Channel.CMD), b'{"cmd": "report"}').is_failure
    assert not server.publish(SERVER_STATUS_TOPIC, b'{"state": "online"}', retain=True).is_failure
    got = device.messages_until(SERVER_STATUS_TOPIC)
    assert [m.topic for m in got] == [device_topic(dev, Channel.CMD), SERVER_STATUS_TOPIC]
    assert server.publish(device_topic(dev, Channel.USAGE), b"[]").value == NOT_AUTHORIZED  # only retained ones
    assert not server.publish(telemetry, b"", retain=True).is_failure  # clear the retained sample
    fresh, _ = connect(managed_broker.admin.username, managed_broker.admin.password, f"fresh-{dev}")
    assert fresh.subscribe(telemetry).value == GRANTED_QOS_1
    assert fresh.subscribe(status).value == GRANTED_QOS_1  # its retained message arrives after telemetry's would
    assert [m.topic for m in fresh.messages_until(status)] == [status]


def test_delete_kicks_live_session(dynsec: DynSecClient, connect) -> None:
    dev = unique_device_id()
    key = make_device(dynsec, dev)
    probe, _ = connect(dev, key)
    t0 = time.monotonic()
    assert dynsec.delete_device(dev) is True
    gone = probe.wait_disconnect(timeout=1.0)
    elapsed_ms = (gone.at - t0) * 1000
    print(f"\ndelete_device -> DISCONNECT: {elapsed_ms:.2f} ms, reason {gone.reason} (0x{gone.reason.value:02x})")
    assert gone.reason.value == ADMINISTRATIVE_ACTION
    assert elapsed_ms < 1000
    assert connect(dev, key)[1] == NOT_AUTHORIZED
    assert dynsec.get_client(dev) is None and dev not in dynsec.list_device_ids()
    assert dynsec.delete_device(dev) is False  # idempotent


def test_rotated_key_kicks_and_replaces_old_one(dynsec: DynSecClient, connect) -> None:
    dev = unique_device_id()
    old = make_device(dynsec, dev)
    probe, _ = connect(dev, old)
    dynsec.set_device_password(dev, "cfk_new-key-" + dev)
    assert probe.wait_disconnect(timeout=1.0).reason.value == ADMINISTRATIVE_ACTION
    assert connect(dev, old)[1] == NOT_AUTHORIZED
    assert connect(dev, "cfk_new-key-" + dev)[1] == 0


def test_disable_and_enable(dynsec: DynSecClient, connect) -> None:
    dev = unique_device_id()
    key = make_device(dynsec, dev)
    probe, _ = connect(dev, key)
    dynsec.disable_device(dev)
    assert probe.wait_disconnect(timeout=1.0).reason.value == ADMINISTRATIVE_ACTION
    assert connect(dev, key)[1] == NOT_AUTHORIZED
    dynsec.disable_device(dev)  # idempotent
    dynsec.enable_device(dev)
    assert connect(dev, key)[1] == 0


def test_create_existing_device_updates_it(dynsec: DynSecClient, connect) -> None:
    dev = unique_device_id()
    first = make_device(dynsec, dev)
    dynsec.disable_device(dev)
    second = make_device(dynsec, dev)  # no error: password replaced, client re-enabled
    assert connect(dev, first)[1] == NOT_AUTHORIZED
    assert connect(dev, second)[1] == 0
    client = dynsec.get_client(dev)
    assert client is not None and client["clientid"] == dev
    assert {r["rolename"] for r in client["roles"]} == {f"device-{dev}", DEVICE_SHARED_ROLE}


def test_list_device_ids_only_lists_devices(dynsec: DynSecClient) -> None:
    devs = {unique_device_id() for _ in range(3)}
    for d in devs:
        make_device(dynsec, d)
    stranger = unique_device_id("stranger")  # a valid id, but no device role
    dynsec.execute([{"command": "createClient", "username": stranger, "password": "x"}])
    ids = dynsec.list_device_ids()
    assert devs <= ids
    assert stranger not in ids and SERVER_USERNAME not in ids


@pytest.mark.parametrize("bad", ["Bad_Id", "", "-x", "a" * 64, SERVER_USERNAME])
def test_invalid_or_reserved_ids_rejected_before_any_command(managed_broker: ManagedMosquitto, bad: str) -> None:
    closed = managed_broker.admin_client()
    closed.close()  # any command sent would raise DynSecConnectionError instead
    for call in (lambda: closed.create_device(bad, "pw"), lambda: closed.delete_device(bad),
                 lambda: closed.set_device_password(bad, "pw"), lambda: closed.disable_device(bad),
                 lambda: closed.enable_device(bad)):
        with pytest.raises(TopicError):
            call()


def test_command_error_is_raised_with_command_and_text(dynsec: DynSecClient) -> None:
    with pytest.raises(DynSecError) as err:
        dynsec.execute([{"command": "getRole", "rolename": "no-such-role"}])
    assert (err.value.command, err.value.error) == ("getRole", "Role not found")
    with pytest.raises(DynSecError, match="Client not found"):
        dynsec.set_device_password(unique_device_id("ghost"), "pw")


def test_wrong_admin_password_and_non_admin_account(managed_broker: ManagedMosquitto, dynsec: DynSecClient) -> None:
    port = managed_broker.cfg.port
    with pytest.raises(DynSecConnectionError) as err:
        DynSecClient("127.0.0.1", port, SERVER_USERNAME, "wrong")
    assert err.value.reason_code == NOT_AUTHORIZED
    dev = unique_device_id()
    key = make_device(dynsec, dev)
    with pytest.raises(DynSecConnectionError, match="not a dynamic-security admin"):
        DynSecClient("127.0.0.1", port, dev, key, client_id=dev)


def test_concurrent_requests_from_two_admins(managed_broker: ManagedMosquitto, dynsec: DynSecClient) -> None:
    """Replies go to every admin subscribed to the response topic; correlation keeps them apart."""
    devs = [unique_device_id() for _ in range(4)]
    for d in devs:
        make_device(dynsec, d)
    errors: list[BaseException] = []
    with managed_broker.admin_client() as other:

        def work(client: DynSecClient, dev: str) -> None:
            try:
                for _ in range(25):
                    assert client.get_client(dev)["username"] == dev  # type: ignore[index]
            except BaseException as exc:  # collected for the main thread
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(c, d)) for d in devs for c in (dynsec, other)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert errors == []


def test_ensure_server_role_is_idempotent_and_kicks_nobody(dynsec: DynSecClient, server: Probe) -> None:
    dynsec.ensure_server_role()
    dynsec.ensure_server_role()
    assert server.publish(SERVER_STATUS_TOPIC, b'{"state": "online"}', retain=True).value in (0, 0x10)
    assert server.disconnected is None


def test_ensure_server_role_on_an_account_without_it(managed_broker: ManagedMosquitto, dynsec: DynSecClient) -> None:
    """External broker case: an admin account made by ``mosquitto_ctrl dynsec init`` has only
    dynsec rights. Giving itself the role kicks it (Mosquitto 2.0); the client reconnects."""
    name, password = unique_device_id("ext-admin"), "ext-admin-password"
    control = [{"acltype": t, "topic": "$CONTROL/dynamic-security/#", "allow": True}
               for t in ("publishClientSend", "publishClientReceive", "subscribePattern")]
    dynsec.execute([{"command": "createRole", "rolename": name, "acls": control},
                    {"command": "createClient", "username": name, "password": password,
                     "roles": [{"rolename": name}]}])
    with DynSecClient("127.0.0.1", managed_broker.cfg.port, name, password) as ext:
        ext.ensure_server_role()
        client = ext.get_client(name)
    assert client is not None and SERVER_ROLE in {r["rolename"] for r in client["roles"]}
