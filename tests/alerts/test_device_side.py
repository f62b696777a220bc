"""Device-side pieces with a real Mosquitto and a real server: a device snoozes its own alerts over
MQTT (its own topic only), older roles get the new ACLs at start-up, integrations read the
server's retained verdicts (a paused or silent device is not "online")."""

from __future__ import annotations

import json
import queue

from e2e_helpers import wait_for
from mqtt_helpers import connect_probe, free_port
from payload_helpers import DeviceConn, now_ms, status, telemetry

from broker.acl import device_role_acls, device_role_name, integration_role_acls
from fleet_server.devices.reconcile import reconcile_roles
from fleet_server.integrations.accounts import add_integration
from fleet_server.jobs.stale import STALE_REASON
from fleet_server.server import FleetServer, ServerOptions
from fleet_server.store.alert_models import AlertSilence
from fleet_server.store.models import AuditEvent, IntegrationAccount
from shared.topics import Channel, device_topic

NOT_AUTHORIZED = 0x87


def test_a_device_snoozes_its_own_alerts_and_no_one_else_s(fleet: FleetServer):
    with DeviceConn(fleet, "laptop") as laptop, DeviceConn(fleet, "other") as other:
        until = now_ms() + 3600_000
        laptop.publish(Channel.SNOOZE, {"v": 1, "device_id": "laptop", "ts": now_ms(), "until_ms": until})
        row = wait_for(lambda: AlertSilence.get_or_none(AlertSilence.scope == "device:laptop"), 10,
                       what="the snooze row")
        assert row.kind == "snooze" and row.created_by == "device:laptop" and abs(row.end_ms - until) < 5000
        assert AuditEvent.get(AuditEvent.action == "alert.snooze").actor == "device:laptop"
        # another device's topic is refused by the broker; a payload naming another device by the server
        rc = other.probe.publish(device_topic("laptop", Channel.SNOOZE), json.dumps(
            {"v": 1, "device_id": "laptop", "ts": now_ms(), "until_ms": until}).encode(), qos=1)
        assert rc.value == NOT_AUTHORIZED
        other.publish(Channel.SNOOZE, {"v": 1, "device_id": "laptop", "ts": now_ms(), "until_ms": until})
        wait_for(lambda: getattr(fleet.state.get("other"), "rejects", {}).get("device_mismatch"), 10,
                 what="the reject")
        # "until tomorrow" is capped at 36 hours; a past time ends the device's own snoozes
        laptop.publish(Channel.SNOOZE, {"v": 1, "device_id": "laptop", "ts": now_ms(),
                                        "until_ms": now_ms() + 30 * 86400_000})
        wait_for(lambda: AlertSilence.select().count() == 2, 10)
        longest = max(s.end_ms for s in AlertSilence.select())
        assert longest <= now_ms() + 36 * 3600_000 + 5000
        laptop.publish(Channel.SNOOZE, {"v": 1, "device_id": "laptop", "ts": now_ms(), "until_ms": now_ms() - 1})
        wait_for(lambda: AlertSilence.select().count() == 0, 10, what="the snoozes to end")


def test_older_roles_get_the_new_acls_at_start_up(fleet: FleetServer):
    dyn = fleet.dynsec
    assert dyn is not None
    with DeviceConn(fleet, "old-dev") as dev:
        old = [a for a in device_role_acls("old-dev") if not a["topic"].endswith("/snooze")]
        dyn.execute([{"command": "modifyRole", "rolename": device_role_name("old-dev"), "acls": old}])
        assert dev.probe.publish(dev.topic(Channel.SNOOZE), b"{}", qos=1).value == NOT_AUTHORIZED
        row, _password = add_integration(dyn, "ha", (Channel.STATUS, Channel.TELEMETRY), "test")
        dyn.execute([{"command": "modifyRole", "rolename": row.username,
                      "acls": [a for a in integration_role_acls((Channel.STATUS, Channel.TELEMETRY))
                               if "availability" not in a["topic"]]}])
        assert reconcile_roles(dyn) == 2
        assert not dev.probe.publish(dev.topic(Channel.SNOOZE), json.dumps(
            {"v": 1, "device_id": "old-dev", "ts": now_ms(), "until_ms": now_ms() + 60_000}).encode(),
            qos=1).is_failure
        assert reconcile_roles(dyn) == 0  # current: nothing to do
        assert IntegrationAccount.get().name == "ha"


def test_integrations_read_the_servers_verdicts(tmp_path):
    server = FleetServer(ServerOptions(data_dir=tmp_path / "server", mqtt_port=free_port(), local_agent=False))
    server.start()
    try:
        assert server.ingest is not None and server.ingest.connected.wait(10)
        _row, password = add_integration(server.dynsec, "ha", (Channel.STATUS,), "test")
        ha, rc = connect_probe("127.0.0.1", server.opts.mqtt_port, "integration.ha", password)
        assert not rc.is_failure
        assert ha.subscribe("clawfleet/v1/+/availability").value == 1
        with DeviceConn(server, "desk") as desk:
            desk.publish(Channel.STATUS, status("desk", "online"), retain=True)
            desk.publish(Channel.TELEMETRY, telemetry("desk"), retain=True)

            seen: list[dict] = []

            def verdict(state: str) -> dict | None:
                while True:
                    try:
                        m = ha.messages.get_nowait()
                    except queue.Empty:
                        break
                    if m.topic == device_topic("desk", Channel.AVAILABILITY) and m.payload:
                        seen.append(json.loads(m.payload))
                return next((d for d in seen if d["state"] == state), None)

            first = wait_for(lambda: verdict("online"), 15, what="online")
            assert first["online"] is True and first["device_id"] == "desk"
            desk.publish(Channel.STATUS, status("desk", "paused", reason="reporting paused"), retain=True)
            paused = wait_for(lambda: verdict("paused"), 15, what="paused")
            assert paused["online"] is False
            server.state.upsert("desk", status="offline", status_reason=STALE_REASON, status_ms=now_ms())
            stale = wait_for(lambda: verdict("stale"), 15, what="stale")
            assert stale["reason"] == STALE_REASON and stale["online"] is False
        assert ha.publish(device_topic("desk", Channel.AVAILABILITY), b"{}", qos=1).value == NOT_AUTHORIZED
        ha.close()
    finally:
        server.stop()
