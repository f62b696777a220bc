"""No account the fleet hands out can take another connection's client id (real Mosquitto 2.0.11
with dynamic security, a real FleetServer and SQLite).

MQTT keeps one session per client id: connecting with another connection's id kicks it and takes
its session (clean start wipes it; a resumed session receives what was queued for it). Every kind
of account the server creates (device, integration) tries every other kind's client id, with a
clean start and resuming, and is refused, while the victims stay connected.
"""

from __future__ import annotations

import secrets

import pytest
from e2e_helpers import wait_for
from mqtt_helpers import connect_probe
from payload_helpers import DeviceConn, batch, usage_record

from broker.acl import integration_role_acls
from broker.client_ids import bind_client_ids
from fleet_server.devices.reconcile import reconcile
from fleet_server.devices.registry import DeviceError, add_device
from fleet_server.integrations.accounts import add_integration, parse_channels
from fleet_server.server import FleetServer
from fleet_server.store.models import AuditEvent, Device, IntegrationAccount, UsageRecord
from shared.topics import Channel, TopicError

SERVER_IDS = ("clawfleet-ingest", "clawfleet-ingest-1", "clawfleet-dynsec", "clawfleet-cli-0a1b2c3d",
              "clawfleet-server")


class Disconnects:
    """Counts the DISCONNECTs of one paho client (its callback is wrapped, not replaced)."""

    def __init__(self, client: object) -> None:
        self.count = 0
        inner = client.on_disconnect  # type: ignore[attr-defined]

        def counting(*args: object) -> None:
            self.count += 1
            inner(*args)

        client.on_disconnect = counting  # type: ignore[attr-defined]


def test_no_account_can_take_another_ones_client_id(fleet: FleetServer):
    assert fleet.dynsec is not None and fleet.ingest is not None
    port = fleet.opts.mqtt_port
    ingest_drops = Disconnects(fleet.ingest.client)
    dynsec_generation = fleet.dynsec._generation
    attacker_dev = add_device(fleet.dynsec, "attacker", fleet.broker_url)
    x, x_password = add_integration(fleet.dynsec, "x", parse_channels("status,telemetry,usage,logs"), "test")
    y, y_password = add_integration(fleet.dynsec, "y", parse_channels(None), "test")
    with DeviceConn(fleet, "victim") as victim:
        victim_integration, rc = connect_probe("127.0.0.1", port, y.username, y_password)
        assert rc.value == 0, "an integration connects with its username as client id"
        try:
            attackers = {"device": (attacker_dev.device.id, attacker_dev.api_key),
                         "integration": (x.username, x_password)}
            targets = {"server": SERVER_IDS, "device": (victim.device_id,), "integration": (y.username,)}
            accepted = []
            for kind, (username, password) in attackers.items():
                for target_kind, ids in targets.items():
                    for client_id in ids:
                        for clean in (True, False):
                            probe, rc = connect_probe("127.0.0.1", port, username, password, client_id=client_id,
                                                      clean_start=clean)
                            probe.close()
                            if not rc.is_failure:
                                accepted.append(f"{kind} as {target_kind} {client_id} (clean start {clean})")
            assert accepted == []
            # each account still works under its own id
            for username, password in attackers.values():
                probe, rc = connect_probe("127.0.0.1", port, username, password, client_id=username)
                probe.close()
                assert rc.value == 0, username
            assert victim.probe.disconnected is None and victim_integration.disconnected is None
            assert ingest_drops.count == 0 and fleet.dynsec._generation == dynsec_generation
            record = usage_record()
            victim.publish(Channel.USAGE, batch(victim.device_id, [record]))
            wait_for(lambda: UsageRecord.get_or_none(UsageRecord.id == record["id"]), 10, what="ingest to store it")
        finally:
            victim_integration.close()


def test_server_ids_are_reserved_for_devices(fleet: FleetServer):
    assert fleet.dynsec is not None
    for device_id in ("clawfleet-ingest", "clawfleet-ingest-3", "clawfleet-dynsec", "clawfleet-cli-x"):
        with pytest.raises((DeviceError, TopicError), match="reserved for the server"):
            add_device(fleet.dynsec, "box", fleet.broker_url, device_id=device_id)
    assert add_device(fleet.dynsec, "clawfleet vps", fleet.broker_url).device.id == "clawfleet-vps"


def test_accounts_from_before_are_bound_at_start_up(fleet: FleetServer):
    """An integration account created unbound (before this release) and a device enrolled under a
    server id: start-up binds the one and revokes the other."""
    ds = fleet.dynsec
    assert ds is not None
    port = fleet.opts.mqtt_port
    password = secrets.token_urlsafe(32)
    ds.execute([{"command": "createRole", "rolename": "integration.old", "acls": integration_role_acls(
        parse_channels(None))}, {"command": "createClient", "username": "integration.old", "password": password,
                                 "roles": [{"rolename": "integration.old"}]}])
    IntegrationAccount.create(name="old", username="integration.old", channels="status,meta,telemetry",
                              created_ms=1, created_by="test")
    key = secrets.token_urlsafe(32)
    ds.execute([{"command": "createRole", "rolename": "device-clawfleet-ingest-9", "acls": []},
                {"command": "createClient", "username": "clawfleet-ingest-9", "password": key,
                 "clientid": "clawfleet-ingest-9", "roles": [{"rolename": "device-clawfleet-ingest-9"}]}])
    Device.create(id="clawfleet-ingest-9", name="old box", key_hash="x", key_hint="x", created_ms=1)
    probe, rc = connect_probe("127.0.0.1", port, "integration.old", password, client_id="clawfleet-ingest-7")
    probe.close()
    assert rc.value == 0, "precondition: an unbound account can use a server id"

    summary = bind_client_ids(ds, fleet.broker.admin.username if fleet.broker else "")
    assert summary.bound == ["integration.old"] and summary.errors == []
    assert reconcile(ds).reserved == ["clawfleet-ingest-9"]
    assert bind_client_ids(ds, "clawfleet-server").bound == [], "idempotent"

    probe, rc = connect_probe("127.0.0.1", port, "integration.old", password, client_id="clawfleet-ingest-7")
    probe.close()
    assert rc.is_failure
    probe, rc = connect_probe("127.0.0.1", port, "integration.old", password)
    probe.close()
    assert rc.value == 0
    probe, rc = connect_probe("127.0.0.1", port, "clawfleet-ingest-9", key)
    probe.close()
    assert rc.is_failure, "the device with a server id is disabled"
    assert Device.get_by_id("clawfleet-ingest-9").revoked_ms is not None
    assert AuditEvent.get(AuditEvent.target == "clawfleet-ingest-9").action == "device.revoke"
