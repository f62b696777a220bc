"""agent → Mosquitto → ingest → SQLite → overview, with real processes and a real broker."""

from __future__ import annotations

import json
import os
import signal
import time

from e2e_helpers import start_agent, stop_agent, wait_for, write_agent_config
from mqtt_helpers import connect_probe
from nicegui.testing.user_simulation import user_simulation

from fleet_server.dashboard import register_pages
from fleet_server.devices.registry import add_device
from fleet_server.server import FleetServer
from fleet_server.store.models import Device, RejectCount, Sample, StatusEvent
from shared.topics import Channel, device_topic


def _sample_count(device_id: str) -> int:
    return Sample.select().where(Sample.device == device_id).count()


def _status(device_id: str) -> tuple[str, str | None]:
    d = Device.get_by_id(device_id)
    return d.status, d.status_reason


async def test_agent_sample_reaches_sqlite_and_overview(fleet: FleetServer, tmp_path, log_in):
    new = add_device(fleet.dynsec, "Build Box", fleet.broker_url)
    agent = start_agent(write_agent_config(tmp_path, new.device.id, new.api_key, fleet.opts.mqtt_port),
                        tmp_path / "agent.log")
    try:
        wait_for(lambda: _sample_count("build-box") >= 2, 15, what="two samples in SQLite")
        row = Sample.select().where(Sample.device == "build-box").order_by(Sample.ts.desc()).first()
        assert 0 <= row.cpu_pct <= 100 and row.mem_total_bytes > 0 and row.disk_total_bytes > 0
        assert _status("build-box")[0] == "online"
        view = fleet.state.get("build-box")
        assert view.status == "online" and view.telemetry is not None and view.meta is not None
        async with user_simulation() as user:
            register_pages(fleet.state)
            await log_in(user)
            await user.open("/")
            await user.should_see("Build Box")
            await user.should_see("1 online")
            await user.should_see(f"build-box · {view.meta.os} {view.meta.arch}")
    finally:
        assert stop_agent(agent) == 0
    # a clean stop publishes a retained "shutdown", not the last will
    wait_for(lambda: _status("build-box") == ("shutdown", "agent stopped"), 10, what="shutdown status")


def test_sigkill_makes_device_offline_through_last_will(fleet: FleetServer, tmp_path):
    new = add_device(fleet.dynsec, "victim", fleet.broker_url)
    agent = start_agent(write_agent_config(tmp_path, "victim", new.api_key, fleet.opts.mqtt_port),
                        tmp_path / "agent.log")
    wait_for(lambda: _status("victim")[0] == "online", 15, what="online")
    os.kill(agent.pid, signal.SIGKILL)
    agent.wait()
    killed = time.monotonic()
    # keepalive 5 s: the broker publishes the will within 1.5 x keepalive
    wait_for(lambda: _status("victim") == ("offline", "last-will"), 12, what="offline via last will")
    print(f"last will seen {time.monotonic() - killed:.1f} s after SIGKILL (keepalive 5 s)")
    # the cache is updated right after the commit the database check saw
    wait_for(lambda: fleet.state.get("victim").status == "offline", 2, what="offline in the cache")
    states = [e.state for e in StatusEvent.select().where(StatusEvent.device == "victim").order_by(StatusEvent.ts)]
    assert states[-2:] == ["online", "offline"]


def test_malformed_payload_is_rejected_counted_and_ingest_goes_on(fleet: FleetServer, tmp_path):
    new = add_device(fleet.dynsec, "noisy", fleet.broker_url)
    probe, rc = connect_probe("127.0.0.1", fleet.opts.mqtt_port, "noisy", new.api_key, client_id="noisy")
    try:
        assert not rc.is_failure
        topic = device_topic("noisy", Channel.TELEMETRY)
        good = {"v": 1, "device_id": "noisy", "ts": int(time.time() * 1000), "cpu_pct": 5, "mem_used_bytes": 1,
                "mem_total_bytes": 2, "mem_pct": 50, "disk_used_bytes": 1, "disk_total_bytes": 2, "disk_pct": 50,
                "swap_pct": 0, "net_rx_bps": 0, "net_tx_bps": 0, "uptime_s": 1}
        for bad in (b"not json", json.dumps({**good, "cpu_pct": 500}).encode(),
                    json.dumps({**good, "device_id": "someone-else"}).encode()):
            assert not probe.publish(topic, bad, qos=1).is_failure  # the broker accepts; the server rejects
        probe.publish(topic, json.dumps(good).encode(), qos=1)
        wait_for(lambda: _sample_count("noisy") == 1, 10, what="the good sample after the bad ones")
    finally:
        probe.close()
    rejects = {r.reason: r.count for r in RejectCount.select().where(RejectCount.device == "noisy")}
    assert rejects == {"not_json": 1, "invalid": 1, "device_mismatch": 1}
    # the cache follows the commit a moment later
    wait_for(lambda: fleet.state.get("noisy").rejects == rejects, 10, what="the rejects in the fleet cache")


def test_frozen_agent_goes_offline_by_keepalive(fleet: FleetServer, tmp_path):
    """SIGSTOP keeps the TCP connection open but silent, like a machine that lost power or network:
    only the broker's keepalive check (1.5 x keepalive) can notice and publish the last will.
    Samples every 10 s, so the server's own stale check (3 intervals) comes after the keepalive."""
    new = add_device(fleet.dynsec, "frozen", fleet.broker_url)
    agent = start_agent(write_agent_config(tmp_path, "frozen", new.api_key, fleet.opts.mqtt_port, interval_s=10),
                        tmp_path / "agent.log")
    try:
        wait_for(lambda: _status("frozen")[0] == "online", 15, what="online")
        os.kill(agent.pid, signal.SIGSTOP)
        stopped = time.monotonic()
        wait_for(lambda: _status("frozen") == ("offline", "last-will"), 15, what="offline via keepalive")
        took = time.monotonic() - stopped
        print(f"last will after {took:.1f} s of silence (keepalive 5 s)")
        # 1.5 x keepalive, plus Mosquitto 2.0.11's keepalive sweep, which runs every few seconds
        # (measured here: 11.0 s for keepalive 5 s, 17.3 s for 10 s with a bare paho client)
        assert 5 * 1.5 <= took <= 5 * 1.5 + 6
    finally:
        os.kill(agent.pid, signal.SIGKILL)
        agent.wait()
