"""Extra ingest processes on this host: ``clawfleet-server run --workers N`` starts N - 1
``clawfleet-server ingest --worker K`` children (K = 1 … N - 1) and restarts one that exits.

Each child opens the same PostgreSQL, connects to the same broker with the server account (client
id ``clawfleet-ingest-K``) on the shared subscription, and stores what the broker gives it. The
database URL and a broker password go to the children through their environment
(``CLAWFLEET_DATABASE_URL``, ``CLAWFLEET_BROKER_ADMIN_PASSWORD``), never their command line.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from fleet_server.endpoints.broker_link import ExternalBroker

log = logging.getLogger("clawfleet.ingest.processes")

RESTART_S = 2.0
"""Seconds before a child that exited is started again."""


@dataclass(frozen=True)
class WorkerSpec:
    """What a child needs: data dir (the managed broker's admin file), broker port, database URL,
    or an external broker."""

    data_dir: Path
    mqtt_port: int
    database_url: str
    external: ExternalBroker | None = None


def worker_command(spec: WorkerSpec, index: int) -> tuple[list[str], dict[str, str]]:
    """The argv and environment of child ``index`` (no secret in the argv)."""
    argv = [sys.executable, "-m", "fleet_server.cli.main", "ingest", "--worker", str(index),
            "--data-dir", str(spec.data_dir), "--mqtt-port", str(spec.mqtt_port)]
    env = {**os.environ, "CLAWFLEET_DATABASE_URL": spec.database_url}
    if spec.external is not None:
        argv += ["--broker-url", spec.external.url, "--broker-admin-user", spec.external.username]
        if spec.external.ca_file is not None:
            argv += ["--broker-ca-file", str(spec.external.ca_file)]
        env["CLAWFLEET_BROKER_ADMIN_PASSWORD"] = spec.external.password
    return argv, env


class WorkerProcesses:
    """Starts ``count`` children (indexes 1 … count) and restarts any that exits until :meth:`stop`."""

    def __init__(self, spec: WorkerSpec, count: int) -> None:
        self.spec, self.count = spec, count
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.restarts = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._supervise, name="clawfleet-ingest-workers", daemon=True)

    def start(self) -> None:
        """Start every child and the supervising thread."""
        for k in range(1, self.count + 1):
            self._launch(k)
        self._thread.start()

    def _launch(self, index: int) -> None:
        argv, env = worker_command(self.spec, index)
        self.procs[index] = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL)
        log.info("ingest worker %d started (pid %d)", index, self.procs[index].pid)

    def _supervise(self) -> None:
        while not self._stop.wait(1.0):
            for index, proc in list(self.procs.items()):
                if proc.poll() is not None and not self._stop.is_set():
                    log.warning("ingest worker %d (pid %d) exited with %s; starting it again in %.0f s", index,
                                proc.pid, proc.returncode, RESTART_S)
                    time.sleep(RESTART_S)
                    if not self._stop.is_set():
                        self._launch(index)
                        self.restarts += 1

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM every child (each stores what it has and disconnects), SIGKILL after ``timeout`` s."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + timeout
        for index, proc in self.procs.items():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("ingest worker %d did not stop within %.0f s; killing it", index, timeout)
                proc.kill()
                proc.wait()
