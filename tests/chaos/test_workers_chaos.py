"""Chaos with several processes on a real PostgreSQL: ``clawfleet-server run --workers 2`` (a real
process with its managed Mosquitto and one child ingest worker). The process holding the jobs
lease is SIGKILLed: the surviving worker takes the lease within its time and runs the jobs (its
rollup pass moves the watermark)."""

from __future__ import annotations

import time

import psutil
import pytest
from e2e_helpers import ServerProcess, wait_for
from mqtt_helpers import free_port
from pg_helpers import start_pg

from fleet_server.jobs.leader import LEASE_S, RENEW_S
from fleet_server.store.db import open_database
from fleet_server.store.history.rollups import watermark
from fleet_server.store.lease import holder_of

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(240)]


def _holder_pid() -> int | None:
    held = holder_of("jobs")
    return None if held is None or held[1] < time.time() * 1000 else int(held[0].split(":")[-2])


def test_the_jobs_move_to_the_surviving_worker_when_the_leader_is_killed(tmp_path):
    pg = start_pg()
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
        pg.stop()
