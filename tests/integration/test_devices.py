"""Device management end to end: a real FleetServer (managed Mosquitto, SQLite, ingest), real
agent processes and MQTT probes; the CLI as its own process against the running server.

Reason codes are Mosquitto 2.0.11's: DISCONNECT 0x98 (administrative action) on revoke, rotate
and delete; CONNACK 0x87 (not authorized) for a revoked or rotated-away key; SUBACK/PUBACK 0x87
outside a device's own topics.
"""

from __future__ import annotations

import json
import logging
import time

from e2e_helpers import server_cli, start_agent, stop_agent, wait_for, write_agent_config
from mqtt_helpers import Probe, connect_probe, free_port, make_device

from fleet_server import server as server_module
from fleet_server.devices.reconcile import NEEDS_NEW_KEY, broker_device_clients, reconcile
from fleet_server.server import FleetServer, ServerOptions
from fleet_server.store.models import AuditEvent, Device, LogRecord, RejectCount, Sample, StatusEvent, UsageRecord
from shared.enrollment import decode_token
from shared.topics import Channel, device_topic

ADMINISTRATIVE_ACTION = 0x98
NOT_AUTHORIZED = 0x87
ADMIN = "alice"


def _probe(fleet: FleetServer, device_id: str, key: str) -> tuple[Probe, int]:
    probe, rc = connect_probe("127.0.0.1", fleet.opts.mqtt_port, device_id, key, client_id=device_id)
    return probe, rc.value


def _admin_probe(fleet: FleetServer) -> Probe:
    admin = fleet.broker.admin
    probe, rc = connect_probe("127.0.0.1", fleet.opts.mqtt_port, admin.username, admin.password,
                              client_id=f"test-admin-{time.monotonic_ns()}")
    assert not rc.is_failure
    return probe


def _retained(fleet: FleetServer, device_id: str) -> dict[str, bytes]:
    """The retained messages a fresh server-side subscriber gets for ``device_id`` ({channel: payload})."""
    probe = _admin_probe(fleet)
    try:
        assert probe.subscribe(f"clawfleet/v1/{device_id}/#") == 1
        sentinel = device_topic(device_id, Channel.CMD)
        probe.publish(sentinel, b'{"sentinel": true}', qos=1)
        got = probe.messages_until(sentinel)
    finally:
        probe.close()
    return {m.topic.rsplit("/", 1)[1]: m.payload for m in got if m.retain}


def _audit(action: str, target: str) -> list[AuditEvent]:
    return list(AuditEvent.select().where((AuditEvent.action == action) & (AuditEvent.target == target)))


def _start_agent(fleet: FleetServer, tmp_path, device_id: str, key: str):
    return start_agent(write_agent_config(tmp_path, device_id, key, fleet.opts.mqtt_port),
                       tmp_path / f"agent-{device_id}.log")


def _samples(device_id: str) -> int:
    return Sample.select().where(Sample.device == device_id).count()


# --- revoke -----------------------------------------------------------------------------------


def test_revoke_kicks_the_live_session_within_a_second(fleet: FleetServer, caplog):
    caplog.set_level(logging.DEBUG)
    new = fleet.devices.add(ADMIN, "Kick me", tags="test")
    probe, rc = _probe(fleet, "kick-me", new.api_key)
    assert rc == 0
    try:
        t0 = time.monotonic()
        fleet.devices.revoke(ADMIN, "kick-me")
        gone = probe.wait_disconnect(2)
    finally:
        probe.close()
    took = gone.at - t0
    print(f"revoke -> DISCONNECT {gone.reason.value:#04x} after {took * 1000:.1f} ms")
    assert gone.reason.value == ADMINISTRATIVE_ACTION
    assert took < 1.0
    again, rc = _probe(fleet, "kick-me", new.api_key)
    again.close()
    assert rc == NOT_AUTHORIZED
    dev = Device.get_by_id("kick-me")
    assert dev.revoked_ms and (dev.status, dev.status_reason) == ("offline", "revoked")
    view = fleet.state.get("kick-me")
    assert (view.status, view.status_reason, view.display_status) == ("offline", "revoked", "revoked")
    assert broker_device_clients(fleet.dynsec)["kick-me"] is True  # disabled on the broker
    [row] = _audit("device.revoke", "kick-me")
    assert row.actor == ADMIN
    for secret in (new.api_key, new.token):
        assert secret not in caplog.text
        assert not AuditEvent.select().where(AuditEvent.detail.contains(secret)).exists()


def test_revoked_agent_goes_offline_and_stays_out(fleet: FleetServer, tmp_path):
    new = fleet.devices.add(ADMIN, "Agent R")
    agent = _start_agent(fleet, tmp_path, "agent-r", new.api_key)
    try:
        wait_for(lambda: fleet.state.get("agent-r").status == "online", 15, what="agent online")
        fleet.devices.revoke(ADMIN, "agent-r")
        assert fleet.state.get("agent-r").status == "offline"
        n = _samples("agent-r")
        time.sleep(2.5)  # the agent samples every second and keeps retrying its login
        assert _samples("agent-r") == n, "a revoked agent must not get data in"
        assert Device.get_by_id("agent-r").status_reason == "revoked"
        left = _retained(fleet, "agent-r")  # cleared: a restart replays nothing as rejects; only the
        assert set(left) <= {"availability"}  # server's own verdict (ingest ignores it) may say "revoked"
        assert b'"state":"revoked"' in left.get("availability", b'"state":"revoked"')
    finally:
        stop_agent(agent)
    log = (tmp_path / "agent-agent-r.log").read_text()
    assert "revoked device cannot connect" in log


# --- rotate -----------------------------------------------------------------------------------


def test_rotate_refuses_the_old_key_at_once_and_accepts_the_new_one(fleet: FleetServer):
    old = fleet.devices.add(ADMIN, "Rotor")
    probe, rc = _probe(fleet, "rotor", old.api_key)
    assert rc == 0
    t0 = time.monotonic()
    new = fleet.devices.rotate_key(ADMIN, "rotor")
    gone = probe.wait_disconnect(2)
    probe.close()
    print(f"rotate -> DISCONNECT {gone.reason.value:#04x} after {(gone.at - t0) * 1000:.1f} ms")
    assert gone.reason.value == ADMINISTRATIVE_ACTION and gone.at - t0 < 1.0
    p_old, rc_old = _probe(fleet, "rotor", old.api_key)
    p_old.close()
    assert rc_old == NOT_AUTHORIZED
    enr = decode_token(new.token)
    assert (enr.device_id, enr.api_key, enr.url) == ("rotor", new.api_key, fleet.broker_url)
    p_new, rc_new = _probe(fleet, "rotor", new.api_key)
    p_new.close()
    assert rc_new == 0
    dev = Device.get_by_id("rotor")
    assert dev.key_hint == new.api_key[-4:] and (dev.status, dev.status_reason) == ("offline", "key rotated")
    assert fleet.state.get("rotor").key_hint == new.api_key[-4:]
    [row] = _audit("device.rotate_key", "rotor")
    assert new.api_key not in row.detail and new.token not in row.detail


def test_rotate_kicks_a_running_agent_and_re_enables_a_revoked_device(fleet: FleetServer, tmp_path):
    old = fleet.devices.add(ADMIN, "Agent K")
    agent = _start_agent(fleet, tmp_path, "agent-k", old.api_key)
    try:
        wait_for(lambda: _samples("agent-k") >= 1, 15, what="first sample")
        new = fleet.devices.rotate_key(ADMIN, "agent-k")
        n = _samples("agent-k")
        time.sleep(2.5)
        assert _samples("agent-k") == n, "the agent with the old key must be out"
    finally:
        stop_agent(agent)
    fleet.devices.revoke(ADMIN, "agent-k")
    again = fleet.devices.rotate_key(ADMIN, "agent-k")  # the fix for a revoked device
    assert Device.get_by_id("agent-k").revoked_ms is None and fleet.state.get("agent-k").revoked_ms is None
    assert "re-enabled" in _audit("device.rotate_key", "agent-k")[-1].detail
    assert again.api_key != new.api_key
    agent = _start_agent(fleet, tmp_path, "agent-k", again.api_key)
    try:
        wait_for(lambda: fleet.state.get("agent-k").status == "online", 15, what="online with the newest key")
    finally:
        stop_agent(agent)


# --- delete -----------------------------------------------------------------------------------


def test_delete_kicks_clears_retained_topics_and_purges_rows(fleet: FleetServer, tmp_path):
    new = fleet.devices.add(ADMIN, "Doomed")
    agent = _start_agent(fleet, tmp_path, "doomed", new.api_key)
    try:
        wait_for(lambda: _samples("doomed") >= 2 and fleet.state.get("doomed").meta is not None, 15,
                 what="samples and meta")
        wait_for(lambda: set(_retained(fleet, "doomed")) - {"availability"} == {"status", "meta", "telemetry",
                                                                                 "receipt"}, 10,
                 what="the retained topics, its delivery receipt too")
        res = fleet.devices.delete(ADMIN, "doomed")
    finally:
        stop_agent(agent)
    assert res.broker_client and res.retained_cleared and not res.data_kept
    assert _retained(fleet, "doomed") == {}
    assert Device.get_or_none(Device.id == "doomed") is None
    for model in (Sample, StatusEvent, UsageRecord, LogRecord, RejectCount):
        assert not model.select().where(model.device == "doomed").exists(), model.__name__
    assert fleet.state.get("doomed") is None
    assert "doomed" not in broker_device_clients(fleet.dynsec)
    p, rc = _probe(fleet, "doomed", new.api_key)
    p.close()
    assert rc == NOT_AUTHORIZED
    [row] = _audit("device.delete", "doomed")
    assert row.actor == ADMIN and "data purged" in row.detail


def test_delete_with_keep_data_keeps_the_history(fleet: FleetServer):
    new = fleet.devices.add(ADMIN, "Keeper")
    probe, _ = _probe(fleet, "keeper", new.api_key)
    try:
        sample = {"v": 1, "device_id": "keeper", "ts": int(time.time() * 1000), "cpu_pct": 5, "mem_used_bytes": 1,
                  "mem_total_bytes": 2, "mem_pct": 50, "disk_used_bytes": 1, "disk_total_bytes": 2, "disk_pct": 50,
                  "swap_pct": 0, "net_rx_bps": 0, "net_tx_bps": 0, "uptime_s": 1}
        probe.publish(device_topic("keeper", Channel.TELEMETRY), json.dumps(sample), qos=1, retain=True)
        wait_for(lambda: _samples("keeper") == 1, 10, what="the sample stored")
        res = fleet.devices.delete(ADMIN, "keeper", keep_data=True)
        assert probe.wait_disconnect(2).reason.value == ADMINISTRATIVE_ACTION
    finally:
        probe.close()
    assert res.data_kept and res.retained_cleared
    assert _samples("keeper") == 1 and Device.get_or_none(Device.id == "keeper") is None
    assert _retained(fleet, "keeper") == {}
    assert "data kept" in _audit("device.delete", "keeper")[0].detail


# --- isolation between devices ----------------------------------------------------------------


def test_a_device_cannot_read_or_command_another_device(fleet: FleetServer):
    a = fleet.devices.add(ADMIN, "Iso A")
    b = fleet.devices.add(ADMIN, "Iso B")
    pb, _ = _probe(fleet, "iso-b", b.api_key)
    pa, _ = _probe(fleet, "iso-a", a.api_key)
    try:
        assert pb.publish(device_topic("iso-b", Channel.TELEMETRY), b"{}", qos=1, retain=True).value == 0
        for topic in (device_topic("iso-b", Channel.TELEMETRY), device_topic("iso-b", Channel.STATUS),
                      device_topic("iso-b", Channel.CMD), "clawfleet/v1/+/telemetry", "clawfleet/v1/#"):
            assert pa.subscribe(topic).value == NOT_AUTHORIZED, topic
        assert pa.publish(device_topic("iso-b", Channel.TELEMETRY), b"{}", qos=1).value == NOT_AUTHORIZED
        assert pa.publish(device_topic("iso-b", Channel.CMD), b"{}", qos=1).value == NOT_AUTHORIZED
        assert pa.subscribe(device_topic("iso-a", Channel.CMD)).value == 1  # its own cmd: granted QoS 1
        assert pa.messages.empty()
    finally:
        pa.close()
        pb.close()


# --- reconciliation ---------------------------------------------------------------------------


def test_reconcile_repairs_the_broker_from_the_database(fleet: FleetServer):
    fleet.devices.add(ADMIN, "Lost")  # client will be missing -> needs a new key
    fleet.devices.add(ADMIN, "Rogue")  # revoked here, but enabled on the broker
    fleet.devices.revoke(ADMIN, "rogue")
    fleet.dynsec.enable_device("rogue")
    fleet.devices.add(ADMIN, "Muted")  # active here, disabled on the broker
    fleet.dynsec.disable_device("muted")
    fleet.devices.add(ADMIN, "Fine")
    fleet.dynsec.delete_device("lost")
    ghost_key = make_device(fleet.dynsec, "ghost")  # on the broker, not in the database
    ghost, rc = _probe(fleet, "ghost", ghost_key)
    assert rc == 0

    summary = reconcile(fleet.dynsec)
    print(summary.line())
    assert summary.needs_new_key == ["lost"] and summary.disabled == ["rogue"] and summary.enabled == ["muted"]
    assert summary.deleted == ["ghost"] and summary.ok == 1 and summary.checked == 4 and not summary.errors
    assert ghost.wait_disconnect(2).reason.value == ADMINISTRATIVE_ACTION
    ghost.close()
    clients = broker_device_clients(fleet.dynsec)
    assert clients == {"rogue": True, "muted": False, "fine": False}
    lost = Device.get_by_id("lost")
    assert (lost.status, lost.status_reason) == ("offline", NEEDS_NEW_KEY)
    assert reconcile(fleet.dynsec).needs_new_key == ["lost"]  # idempotent; still waiting for the rotation
    new = fleet.devices.rotate_key(ADMIN, "lost")  # the fix the warning names
    p, rc = _probe(fleet, "lost", new.api_key)
    p.close()
    assert rc == 0
    assert reconcile(fleet.dynsec).ok == 4


def test_server_start_reconciles_and_logs_one_summary_line(fleet: FleetServer, caplog):
    assert fleet.reconciled is not None and fleet.reconciled.checked == 0
    fleet.devices.add(ADMIN, "Orphan")
    make_device(fleet.dynsec, "stray")
    fleet.dynsec.delete_device("orphan")
    fleet.stop()
    caplog.set_level(logging.INFO, logger="clawfleet")
    restarted = FleetServer(fleet.opts)
    restarted.start()
    try:
        s = restarted.reconciled
        assert s.needs_new_key == ["orphan"] and s.deleted == ["stray"]
        assert "rotate its key" in caplog.text and "orphan" in caplog.text
        lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("reconciled broker")]
        assert lines == ["reconciled broker with database: 1 devices, 0 ok, 1 need a new key, 0 enabled, "
                         "0 disabled (revoked), 1 unknown clients deleted, 0 errors"]
        view = restarted.state.get("orphan")
        assert (view.status, view.status_reason) == ("offline", NEEDS_NEW_KEY)
    finally:
        restarted.stop()


# --- CLI against a running server -------------------------------------------------------------


def _cli(fleet: FleetServer, *args: str):
    return server_cli("device", *args, "--data-dir", str(fleet.opts.data_dir),
                      *([] if args[0] == "rename" else ["--mqtt-port", str(fleet.opts.mqtt_port)]))


def test_cli_device_commands_reach_the_running_server(fleet: FleetServer, monkeypatch):
    t0 = time.monotonic()
    res = _cli(fleet, "add", "Cli Box", "--tags", "cli")
    assert res.exit_code == 0, res.output
    key = res.output.split("api key: ")[1].split()[0]
    wait_for(lambda: fleet.state.get("cli-box") is not None, 8, what="the registry sync to add it")
    print(f"CLI add visible in the running server after {time.monotonic() - t0:.1f} s")
    probe, rc = _probe(fleet, "cli-box", key)
    assert rc == 0
    try:
        res = _cli(fleet, "revoke", "cli-box")
        assert res.exit_code == 0, res.output
        assert probe.wait_disconnect(2).reason.value == ADMINISTRATIVE_ACTION
    finally:
        probe.close()
    t0 = time.monotonic()
    wait_for(lambda: fleet.state.get("cli-box").revoked_ms is not None, 8, what="the sync to show the revocation")
    print(f"CLI revoke visible in the running server after {time.monotonic() - t0:.1f} s")
    view = fleet.state.get("cli-box")
    assert (view.status, view.status_reason) == ("offline", "revoked")
    monkeypatch.setattr(server_module, "REGISTRY_SYNC_S", 0.5)  # the real interval is shown above; go faster now
    res = _cli(fleet, "rotate-key", "cli-box")
    assert res.exit_code == 0, res.output
    token = res.output.split("keep it secret):\n")[1].split()[0]
    enr = decode_token(token)
    p, rc = _probe(fleet, "cli-box", enr.api_key)
    p.close()
    assert rc == 0
    wait_for(lambda: fleet.state.get("cli-box").revoked_ms is None, 8, what="the sync to show the rotation")
    res = _cli(fleet, "rename", "cli-box", "CLI box 2", "--tags", "a, b")
    assert res.exit_code == 0, res.output
    wait_for(lambda: fleet.state.get("cli-box").name == "CLI box 2", 8, what="the sync to show the new name")
    assert fleet.state.get("cli-box").tags == "a,b"
    res = _cli(fleet, "delete", "cli-box")
    assert res.exit_code == 0 and "retained" not in res.output, res.output
    wait_for(lambda: fleet.state.get("cli-box") is None, 8, what="the sync to drop it")
    actions = [(e.action, e.actor.startswith("cli:")) for e in AuditEvent.select().where(
        AuditEvent.target == "cli-box").order_by(AuditEvent.id)]
    assert actions == [("device.add", True), ("device.revoke", True), ("device.rotate_key", True),
                       ("device.rename", True), ("device.delete", True)]
    assert _cli(fleet, "revoke", "no-such").exit_code == 2


def test_local_agent_is_re_enrolled_when_its_broker_client_was_lost(tmp_path):
    opts = ServerOptions(data_dir=tmp_path / "server", mqtt_port=free_port(), local_agent=True,
                         local_agent_interval_s=1)
    first = FleetServer(opts)
    first.start()
    try:
        [local] = [d.id for d in Device.select() if d.tags == "local"]
        wait_for(lambda: first.state.get(local).status == "online", 20, what="the local agent online")
        first.dynsec.delete_device(local)  # e.g. the broker's state was wiped
    finally:
        first.stop()
    second = FleetServer(opts)
    second.start()
    try:
        assert second.reconciled.needs_new_key == [local]
        wait_for(lambda: second.state.get(local).status == "online", 20, what="the re-enrolled local agent online")
    finally:
        second.stop()
