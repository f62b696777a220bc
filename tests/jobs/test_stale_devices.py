"""Stale devices end to end: real Mosquitto, real server, real agent processes (1 s samples, so
the grace is 3 s; the stale check runs every 2 s)."""

from __future__ import annotations

import os
import signal
import time

from e2e_helpers import start_agent, stop_agent, wait_for, write_agent_config
from mqtt_helpers import free_port

from fleet_server.devices.registry import add_device
from fleet_server.jobs.stale import RESUMED_REASON, STALE_REASON
from fleet_server.server import FleetServer, ServerOptions
from fleet_server.store.models import Device

GRACE_S = 3.0
SLACK_S = 6.0  # stale check period (2 s) + ingest batching + a loaded 2-core CI machine


def _status(device_id: str) -> tuple[str, str | None]:
    d = Device.get_by_id(device_id)
    return d.status, d.status_reason


def _wait_status(server: FleetServer, device_id: str, want: tuple[str, str | None], timeout: float) -> float:
    start = time.monotonic()
    def cached() -> tuple[str, str | None] | None:  # the cache follows the commit a moment later
        view = server.state.get(device_id)
        return None if view is None else (view.status, view.status_reason)

    wait_for(lambda: _status(device_id) == want and cached() == want, timeout, what=f"{device_id} {want}")
    return time.monotonic() - start


def test_sigstopped_agent_and_broker_crash_are_detected_and_a_restarted_server_is_right(tmp_path):
    opts = ServerOptions(data_dir=tmp_path / "server", mqtt_port=free_port(), local_agent=False)
    server = FleetServer(opts)
    server.start()
    agents = {}
    try:
        assert server.ingest is not None and server.ingest.connected.wait(10)
        for name in ("frozen", "crashed"):
            new = add_device(server.dynsec, name, server.broker_url)
            # keepalive 60 s: the broker keeps the frozen agent's connection (no last will) for the whole test
            cfg = write_agent_config(tmp_path, name, new.api_key, opts.mqtt_port, keepalive_s=60)
            agents[name] = start_agent(cfg, tmp_path / f"{name}.log")
        for name in agents:
            _wait_status(server, name, ("online", None), 20)
            wait_for(lambda n=name: server.state.get(n).meta is not None and server.state.get(n).meta.interval_s == 1,
                     10, what="meta with interval_s")

        # 1. SIGSTOP: still connected as far as the broker knows, but no data
        os.kill(agents["frozen"].pid, signal.SIGSTOP)
        took = _wait_status(server, "frozen", ("offline", STALE_REASON), GRACE_S + SLACK_S)
        print(f"SIGSTOPped agent marked offline {took:.1f} s after the stop (grace {GRACE_S} s)")
        os.kill(agents["frozen"].pid, signal.SIGCONT)
        _wait_status(server, "frozen", ("online", RESUMED_REASON), 10)

        # 2. broker SIGKILLed, then the agent: the last will is lost with the broker. Nothing is marked stale
        # while ingest has no broker; once it is back, the silent device is, 3 intervals later
        assert server.broker is not None and server.broker.pid
        os.kill(server.broker.pid, signal.SIGKILL)
        os.kill(agents["crashed"].pid, signal.SIGKILL)
        agents["crashed"].wait()
        killed = time.monotonic()
        wait_for(lambda: server.ingest.connected.is_set() and server.broker.restart_count >= 1, 60,
                 what="ingest reconnected to the restarted broker")
        _wait_status(server, "crashed", ("offline", STALE_REASON), GRACE_S + SLACK_S)
        print(f"device whose broker and agent were SIGKILLed marked offline {time.monotonic() - killed:.1f} s later")
        # the frozen agent reconnects and its data resumes
        cfg = tmp_path / "agent-crashed.json"
        agents["crashed"] = start_agent(cfg, tmp_path / "crashed-2.log")
        wait_for(lambda: _status("crashed")[0] == "online", 30, what="crashed device back online")
        wait_for(lambda: _status("frozen")[0] == "online", 30, what="frozen device online")

        # 3. the server stops; the crashed device's agent dies while it is down; the server restarts
        server.stop()
        os.kill(agents["crashed"].pid, signal.SIGKILL)
        agents["crashed"].wait()
        time.sleep(GRACE_S + 1)
        server = FleetServer(opts)
        server.start()
        # decided at start-up, before any message: the silent device is not shown online
        assert (server.state.get("crashed").status, server.state.get("crashed").status_reason) == (
            "offline", STALE_REASON)
        wait_for(lambda: server.state.get("frozen").status == "online" and server.state.get("frozen").heard_ms
                 and server.state.get("frozen").heard_ms > time.time() * 1000 - 3000, 30,
                 what="the running agent reported to the restarted server")
        time.sleep(GRACE_S + 2)
        assert server.state.get("frozen").status == "online"
        assert server.state.get("crashed").status == "offline"
    finally:
        for proc in agents.values():
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
                stop_agent(proc)
        server.stop()


def test_while_the_server_has_no_broker_no_device_goes_stale_and_health_says_so(tmp_path):
    opts = ServerOptions(data_dir=tmp_path / "server", mqtt_port=free_port(), local_agent=False)
    server = FleetServer(opts)
    server.start()
    agent = None
    try:
        assert server.ingest is not None and server.ingest.connected.wait(10)
        new = add_device(server.dynsec, "steady", server.broker_url)
        cfg = write_agent_config(tmp_path, "steady", new.api_key, opts.mqtt_port, keepalive_s=60)
        agent = start_agent(cfg, tmp_path / "steady.log")
        _wait_status(server, "steady", ("online", None), 20)
        wait_for(lambda: getattr(server.state.get("steady").meta, "interval_s", None) == 1, 10,
                 what="meta with interval_s")
        assert server.broker is not None and server.broker.pid
        server.broker.restart_backoff_s = 3 * GRACE_S + 6  # the supervisor's first restart comes this much later
        os.kill(server.broker.pid, signal.SIGKILL)  # the broker is gone (no last will): nobody can be heard
        wait_for(lambda: not server.ingest.connected.is_set(), 10, what="ingest noticed")
        time.sleep(3 * GRACE_S + 2)  # three times the grace, and two stale checks past it
        assert _status("steady") == ("online", None) and server.state.get("steady").status == "online"
        health = server.health()
        assert health.ingest["connected"] is False
        wait_for(lambda: server.ingest.connected.is_set(), 90, what="ingest reconnected to the restarted broker")
        wait_for(lambda: server.state.get("steady").heard_ms and server.state.get("steady").heard_ms
                 > time.time() * 1000 - 2000, 60, what="the agent reported again")
        assert _status("steady") == ("online", None)
    finally:
        if agent is not None:
            stop_agent(agent)
        server.stop()
