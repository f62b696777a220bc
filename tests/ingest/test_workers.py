"""Several server processes on a real PostgreSQL (tests/pg_helpers.py), a real managed Mosquitto
and real device connections (the benchmarks' load generator): a dashboard process without ingest
learns what a separate ingest worker stores (LISTEN/NOTIFY) and runs the jobs; SQLite refuses
several processes. A worker SIGKILLed mid-load: tests/chaos/test_workers_chaos.py."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_helpers import user_env, wait_for
from mqtt_helpers import free_port
from pg_helpers import PgServer, start_pg

from benchmarks.loadgen import DeviceCreds, LoadSpec, run_load
from fleet_server.devices.registry import add_device
from fleet_server.jobs.stale import STALE_REASON
from fleet_server.server import FleetServer, ServerOptions, ServerSetupError
from fleet_server.store.models import Device, Sample

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def pg() -> Iterator[PgServer]:
    server = start_pg()
    yield server
    server.stop()


def test_several_workers_need_postgresql(tmp_path: Path) -> None:
    server = FleetServer(ServerOptions(data_dir=tmp_path, mqtt_port=free_port(), local_agent=False, workers=2))
    with pytest.raises(ServerSetupError, match="need PostgreSQL: add --database-url postgresql://"):
        server.start()


def test_a_dashboard_process_without_ingest_shows_what_a_worker_stores(tmp_path: Path, pg: PgServer) -> None:
    url = pg.create_database()
    dash = FleetServer(ServerOptions(data_dir=tmp_path / "server", mqtt_port=free_port(), local_agent=False,
                                     database_url=url, workers=0))
    dash.start()
    worker = subprocess.Popen([sys.executable, "-m", "fleet_server.cli.main", "ingest", "--worker", "1", "--data-dir",
                               str(dash.opts.data_dir), "--mqtt-port", str(dash.opts.mqtt_port)],
                              env={**user_env(), "CLAWFLEET_DATABASE_URL": url}, stdout=subprocess.DEVNULL)
    try:
        assert dash.ingest is None and dash.health().ok
        assert dash.leadership is not None and dash.leadership.leading  # started first: it runs the jobs
        creds = []
        for i in range(4):
            new = add_device(dash.dynsec, f"dash load {i}", dash.broker_url)
            creds.append(DeviceCreds(new.device.id, new.api_key))
        spec = LoadSpec(port=dash.opts.mqtt_port, devices=creds, rate_per_s=40, duration_s=1.0, processes=1,
                        settle_s=20)
        deadline = time.monotonic() + 90
        while not all(getattr(dash.state.get(c.device_id), "telemetry", None) for c in creds):  # a slow worker start
            assert time.monotonic() < deadline, "the dashboard process never learnt the worker's samples"
            run_load(spec, progress=False)
            time.sleep(1)
        assert worker.poll() is None and dash.listener is not None and dash.listener.applied > 0
        assert Sample.select().count() > 0
        # it runs the stale check, though it has no broker connection of its own
        victim = creds[0].device_id
        meta = dash.state.get(victim).meta.model_copy(update={"interval_s": 1.0})  # grace 3 s
        dash.state.upsert(victim, status="online", meta=meta, heard_ms=int(time.time() * 1000) - 3_600_000)
        wait_for(lambda: Device.get_by_id(victim).status_reason == STALE_REASON, 20, what="the stale check")
    finally:
        worker.terminate()
        worker.wait(30)
        dash.stop()
