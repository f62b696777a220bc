"""Alert evaluation and notification delivery as background jobs of the server process.

Two self-contained periodic tasks, each on its own thread with its own database connection:
the engine (:class:`fleet_server.alerts.engine.AlertEngine`, every :data:`EVAL_S`) and the
dispatcher (:class:`fleet_server.alerts.dispatch.Dispatcher`, every :data:`SEND_S`). Neither runs
on the ingest path: a slow channel or a long evaluation never delays storing data.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from peewee import Database

from fleet_server.alerts.dispatch import Dispatcher
from fleet_server.alerts.engine import STARTUP_SETTLE_S, AlertEngine
from fleet_server.alerts.rules import ensure_default_rules
from fleet_server.jobs.periodic import PeriodicJob
from fleet_server.state import FleetState
from shared.clock import now_ms

log = logging.getLogger("clawfleet.jobs")

EVAL_S = 1.0
"""Seconds between evaluation ticks (a full pass every 30 s, see the engine)."""
SEND_S = 0.5
"""Seconds between dispatcher rounds."""


class AlertJobs:
    """The engine and the dispatcher of one server, with their jobs. Started and stopped with the
    jobs' lease (:class:`fleet_server.jobs.leader.Leadership`): one process of a fleet evaluates and
    sends; each start reads the incidents afresh (another process may have held the lease meanwhile).

    Args:
        database: the open database.
        state: the fleet cache.
        data_dir: the server data dir (channel key; its disk is watched by server rules).
        ingest_health: ``() -> (connected, disconnected since (monotonic s) or None, ok, reason)`` of
            this process's ingest, or None when it runs none (server rules then skip broker and ingest).
        settle_s: seconds after each start before rules are evaluated.
    """

    def __init__(self, database: Database, state: FleetState, data_dir: Path,
                 ingest_health: Callable[[], tuple[bool, float | None, bool, str] | None] | None = None,
                 settle_s: float = STARTUP_SETTLE_S) -> None:
        self.data_dir = data_dir
        self._database = database
        self._ingest_health = ingest_health
        self._settle_s = settle_s
        added = ensure_default_rules()
        if added:
            log.info("alerts: %d default rules added (no channel yet: add one on the Alerts page or with "
                     "'clawfleet-server alerts channel add')", added)
        self.engine = AlertEngine(state, server_status=self.server_status, settle_s=settle_s)
        self.dispatcher: Dispatcher | None = None
        self._jobs: list[PeriodicJob] = []

    def server_status(self) -> dict:
        """What server rules look at: broker connection, ingest health, data dir disk (percent used)."""
        out: dict = {}
        health = self._ingest_health() if self._ingest_health is not None else None
        if health is not None:
            connected, since, ok, reason = health
            out["broker_connected"] = connected
            out["broker_down_since_ms"] = None if since is None else now_ms() - int((time.monotonic() - since) * 1000)
            out["ingest_ok"], out["ingest_reason"] = ok, reason
        try:
            du = shutil.disk_usage(self.data_dir)
            out["disk_pct"] = 100.0 * du.used / du.total if du.total else None
        except OSError:
            out["disk_pct"] = None
        return out

    def start(self) -> None:
        """Read rules and incidents, then start evaluating (after the settle time) and sending."""
        with self._database.connection_context():
            self.engine.settle_until = now_ms() + int(self._settle_s * 1000)
            self.engine.load()
        self.dispatcher = Dispatcher(self.data_dir)
        self._jobs = [PeriodicJob("alert-rules", EVAL_S, self.engine.tick, self._database, first_delay_s=EVAL_S),
                      PeriodicJob("alert-notify", SEND_S, self.dispatcher.run_once, self._database,
                                  first_delay_s=SEND_S)]
        for job in self._jobs:
            job.start()

    def stop(self) -> None:
        """Stop both jobs (each finishes its running call) and the sending threads; safe to call twice."""
        for job in self._jobs:
            job.stop()
        self._jobs = []
        if self.dispatcher is not None:
            with self._database.connection_context():
                self.dispatcher.close()  # records sends that finish now: a restart does not repeat them
            self.dispatcher = None
