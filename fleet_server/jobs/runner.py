"""Start and stop the server's background jobs."""

from __future__ import annotations

import logging
from collections.abc import Callable

from peewee import Database

from fleet_server.jobs.history import RETENTION_S, ROLLUP_S, enforce_retention
from fleet_server.jobs.periodic import PeriodicJob
from fleet_server.jobs.stale import CHECK_S, StaleDetector
from fleet_server.state import FleetState
from fleet_server.store.history.retention import RetentionPolicy
from fleet_server.store.history.rollups import roll_up_all

log = logging.getLogger("clawfleet.jobs")


class ServerJobs:
    """Rollups (every minute), retention (hourly, first after 1 minute), stale check (every 2 s).

    ``check_stale_now()`` runs the stale check once in the caller's thread (the server does it at
    start-up, before ingest starts, so a restarted server never shows a silent device online).
    ``broker_connected`` tells the periodic stale check whether ingest has its broker connection
    (no device is marked stale while it has not).
    """

    def __init__(self, database: Database, state: FleetState, retention: RetentionPolicy,
                 broker_connected: Callable[[], bool] | None = None) -> None:
        self.stale = StaleDetector(state, broker_connected=broker_connected)
        self._jobs = [
            PeriodicJob("rollups", ROLLUP_S, lambda: roll_up_all(database), database, first_delay_s=5.0),
            PeriodicJob("retention", RETENTION_S, lambda: enforce_retention(database, retention), database,
                        first_delay_s=60.0),
            PeriodicJob("stale-devices", CHECK_S, self.stale.check, database),
        ]
        log.info("history retention: %s", retention.describe())

    def check_stale_now(self) -> list[tuple[str, str]]:
        """One stale-device pass now; returns ``[(device_id, new_state), …]``."""
        return self.stale.check(force=True)

    def start(self) -> None:
        """Start every job's thread."""
        for job in self._jobs:
            job.start()

    def stop(self) -> None:
        """Stop every job (each finishes its running call first)."""
        for job in self._jobs:
            job.stop()
