"""Ingest and the server around it: status ordered by the server's clock, ingest liveness in
``/healthz``, start-up with overflowing stored sums, a private database file. Real Mosquitto,
real SQLite."""

from __future__ import annotations

import socket
import stat
import time

from e2e_helpers import wait_for
from mqtt_helpers import free_port
from nicegui.testing.user_simulation import user_simulation
from payload_helpers import DeviceConn, dumps, status

from fleet_server.dashboard import register_pages
from fleet_server.ingest import Ingest
from fleet_server.server import FleetServer, ServerOptions
from fleet_server.store.db import open_database
from fleet_server.store.models import Device, UsageHourly
from fleet_server.store.usage import sums
from shared.topics import Channel

HOUR_MS = 3_600_000


def fleet_now_ms() -> int:
    return int(time.time() * 1000)


def test_last_will_counts_even_when_the_device_clock_runs_an_hour_ahead(fleet: FleetServer):
    """Status changes are ordered by when the server received them, not by the device's clock."""
    with DeviceConn(fleet, "fast-clock") as dev:
        d = dev.device_id
        dev.probe.close()
        ahead = fleet_now_ms() + HOUR_MS
        will = status(d, "offline", ts=ahead, reason="last-will")  # composed at connect, like the agent's
        dev.probe.client.will_set(dev.topic(Channel.STATUS), dumps(will), qos=1, retain=True)
        dev.probe.connect()
        dev.publish(Channel.STATUS, status(d, "online", ts=ahead + 1000), retain=True)
        wait_for(lambda: Device.get_by_id(d).status == "online", 10, what="online")
        online_since = Device.get_by_id(d).status_ms
        assert online_since <= fleet_now_ms()  # "status since" is the server's receive time
        dev.probe.client.socket().shutdown(socket.SHUT_RDWR)  # connection lost without DISCONNECT: the will
        wait_for(lambda: Device.get_by_id(d).status == "offline", 10, what="offline by the last will")
        assert Device.get_by_id(d).status_reason == "last-will"
        wait_for(lambda: fleet.state.get(d).status == "offline", 5, what="the cache to follow")


def test_a_replayed_retained_status_does_not_undo_a_newer_one(fleet: FleetServer):
    with DeviceConn(fleet, "replayed") as dev:
        d = dev.device_id
        dev.publish(Channel.STATUS, status(d, "online", ts=fleet_now_ms() - 60_000), retain=True)
        wait_for(lambda: Device.get_by_id(d).status == "online", 10, what="online")
    # the server marks it offline itself (as a revoke or the stale check does), later than the retained status
    Device.update(status="offline", status_reason="stale", status_ms=fleet_now_ms()).where(Device.id == d).execute()
    fleet.stop()
    fleet.start()  # resubscribing replays the retained "online" (sent a minute ago)
    assert fleet.ingest is not None and fleet.ingest.connected.wait(10)
    c = fleet.ingest.counters  # the replay of the device's status and of the server's own birth message
    wait_for(lambda: c["received"] >= 2 and c["acked"] == c["received"], 5, what="the retained replay processed")
    assert Device.get_by_id(d).status == "offline"


def test_health_reports_ingest_liveness(fleet: FleetServer, monkeypatch):
    h = fleet.health()
    assert h.ok and h.ingest["connected"] and h.ingest["network_thread"] and h.ingest["writer_thread"]
    monkeypatch.setattr(Ingest, "DISCONNECTED_GRACE_S", 0.5)
    assert fleet.broker is not None
    fleet.broker.stop()
    wait_for(lambda: not fleet.health().ok, 10, what="health to turn bad with the broker gone")
    assert "broker" in fleet.health().reason
    fleet.broker.start()
    wait_for(lambda: fleet.health().ok, 40, what="health to recover when the broker is back")
    assert fleet.ingest is not None
    fleet.ingest.writer.stopping.set()  # the writer thread ends (as it would on an unexpected error)
    wait_for(lambda: not fleet.health().ok, 5, what="health to notice the writer is gone")
    assert "writer" in fleet.health().reason
    fleet.ingest.client.loop_stop()  # paho's network thread ends
    assert not fleet.health().ok and "network thread" in fleet.health().reason


async def test_healthz_answers_503_with_a_reason_when_ingest_is_down(fleet: FleetServer, monkeypatch, log_in):
    async with user_simulation() as user:
        register_pages(fleet.state, health=fleet.health)
        r = await user.http_client.get("/healthz")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["ok"] is True and body["ingest"]["connected"] is True
        monkeypatch.setattr(Ingest, "DISCONNECTED_GRACE_S", 0.0)
        assert fleet.broker is not None
        fleet.broker.stop()
        wait_for(lambda: not fleet.health().ok, 10, what="ingest to notice the broker is gone")
        r = await user.http_client.get("/healthz")
        assert r.status_code == 503
        assert r.json()["ok"] is False and "broker" in r.json()["reason"]


def test_server_starts_when_stored_token_sums_exceed_int64(tmp_path):
    """Two 6e18 rollup rows (stored before bounds existed) must not stop the server starting."""
    data = tmp_path / "server"
    database = open_database(data)
    Device.create(id="big", name="big", key_hash="x", key_hint="abcd", created_ms=1)
    for hour in (0, HOUR_MS):
        UsageHourly.create(device="big", hour_ms=1_800_000_000_000 + hour, records=1, input_tokens=6 * 10**18,
                           total_tokens=6 * 10**18)
    database.close()
    server = FleetServer(ServerOptions(data_dir=data, mqtt_port=free_port(), local_agent=False))
    try:
        server.start()
        total = sums.total_usage(0, 2**62, devices=["big"])  # more than 64 bits hold: summed as floats
        assert total.input_tokens >= 12 * 10**18 * 0.999 and total.messages == 2
    finally:
        server.stop()


def test_database_file_is_private(fleet: FleetServer):
    path = fleet.opts.data_dir / "clawfleet.sqlite"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for extra in ("-wal", "-shm"):
        p = path.with_name(path.name + extra)
        if p.exists():
            assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
