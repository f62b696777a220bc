"""Chaos with several processes on a real PostgreSQL (tests/pg_helpers.py), a real managed Mosquitto
and real device connections (the benchmarks' load generator):

- two ingest workers, one SIGKILLed in the middle of a load: every message stored exactly once,
  and the main process's cache learns what the other worker stored (LISTEN/NOTIFY);
- ``clawfleet-server run --workers 2`` as a real process: the process holding the jobs lease is
  SIGKILLed, the surviving worker takes the lease within its time and runs the jobs (its rollup
  pass moves the watermark)."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from e2e_helpers import ServerProcess, wait_for
from mqtt_helpers import free_port
from peewee import fn
from pg_helpers import PgServer, start_pg

from benchmarks.loadgen import DeviceCreds, LoadSpec, run_load
from fleet_server.devices.registry import add_device
from fleet_server.jobs.leader import LEASE_S, RENEW_S
from fleet_server.server import FleetServer, ServerOptions
from fleet_server.store.db import open_database
from fleet_server.store.history.rollups import watermark
from fleet_server.store.lease import holder_of
from fleet_server.store.models import LogRecord, Sample, UsageHourly, UsageRecord

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def pg() -> Iterator[PgServer]:
    server = start_pg()
    yield server
    server.stop()



def test_two_workers_store_everything_once_when_one_is_killed_mid_load(tmp_path: Path, pg: PgServer) -> None:
    server = FleetServer(ServerOptions(data_dir=tmp_path / "server", mqtt_port=free_port(), local_agent=False,
                                       database_url=pg.create_database(), workers=2))
    server.start()
    try:
        assert server.ingest is not None and server.ingest.connected.wait(10)
        assert server.workers is not None and server.leadership is not None and server.leadership.leading
        creds = []
        for i in range(8):
            new = add_device(server.dynsec, f"worker load {i}", server.broker_url)
            creds.append(DeviceCreds(new.device.id, new.api_key))
        child = server.workers.procs[1]
        warm = LoadSpec(port=server.opts.mqtt_port, devices=creds, rate_per_s=50, duration_s=1.0, processes=1,
                        settle_s=20)
        warmed = 0
        deadline = time.monotonic() + 60
        while server.listener.applied == 0:  # until the child worker has stored something (it starts slowly)
            assert time.monotonic() < deadline, "the second worker stored nothing within 60 s"
            warmed += run_load(warm, progress=False).published["telemetry"]
            time.sleep(1)
        spec = LoadSpec(port=server.opts.mqtt_port, devices=creds, rate_per_s=200, duration_s=8.0, processes=1,
                        mix={"telemetry": 3, "usage": 1, "logs": 1}, usage_records=5, log_records=2, settle_s=20)
        killer = threading.Timer(4.0, lambda: os.kill(child.pid, signal.SIGKILL))  # in the middle of the load
        killer.start()
        result = run_load(spec, progress=False)
        killer.join()
        assert result.errors == [] and result.acked == result.total_published
        sent = dict(result.published)
        sent["telemetry"] += warmed
        wait_for(lambda: server.workers.restarts >= 1, 30, what="the killed worker restarted")
        wait_for(lambda: Sample.select().count() == sent["telemetry"]
                 and UsageRecord.select().count() == sent["usage"] * 5
                 and LogRecord.select().count() == sent["logs"] * 2, 90, what="everything stored")
        assert UsageHourly.select(fn.SUM(UsageHourly.records)).scalar() == sent["usage"] * 5  # nothing counted twice
        # both workers took a share, and this process's cache holds what the other one stored
        assert 0 < server.ingest.counters["stored_telemetry"] < sent["telemetry"]
        assert server.listener is not None and server.listener.applied > 0
        wait_for(lambda: all(server.state.get(c.device_id).telemetry is not None for c in creds), 20,
                 what="every device's latest sample in the main process's cache")
        time.sleep(2)
        assert Sample.select().count() == sent["telemetry"]
    finally:
        server.stop()


def _holder_pid() -> int | None:
    held = holder_of("jobs")
    return None if held is None or held[1] < time.time() * 1000 else int(held[0].split(":")[-2])


def test_the_jobs_move_to_the_surviving_worker_when_the_leader_is_killed(tmp_path, pg):
    url = pg.create_database()
    server = ServerProcess(tmp_path / "server", free_port(), free_port(), tmp_path / "server.log", "--no-local-agent",
                           "--workers", "2", "--database-url", url)
    child = None
    try:
        server.start(timeout=120)
        database = open_database(tmp_path / "reader", url)
        assert server.proc is not None
        main = psutil.Process(server.proc.pid)
        wait_for(lambda: _holder_pid() == main.pid, 30, what="the run process holds the jobs lease")
        wait_for(lambda: any("ingest" in p.cmdline() for p in main.children()), 30, what="the child worker")
        child = next(p for p in main.children() if "ingest" in p.cmdline())
        mark = watermark()
        server.kill()  # SIGKILL: nothing given up; the child worker and the broker stay
        killed = time.monotonic()
        wait_for(lambda: _holder_pid() == child.pid, LEASE_S + RENEW_S + 15, what="the child took the lease")
        took = time.monotonic() - killed
        print(f"the surviving worker took the jobs {took:.1f} s after the leader was killed "
              f"(lease {LEASE_S:.0f} s, renewal every {RENEW_S:.0f} s)")
        assert took <= LEASE_S + RENEW_S + 10  # a busy 2-core machine: 10 s of slack
        wait_for(lambda: watermark() > mark, 30, what="the new leader's rollup pass")
        database.close()
    finally:
        if child is not None and child.is_running():
            child.kill()
        server.stop()
