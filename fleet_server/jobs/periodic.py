"""Run a function every N seconds on its own daemon thread, with the database connection open."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from peewee import Database

from fleet_server.ingest.writer import database_unavailable
from fleet_server.store import write_health

log = logging.getLogger("clawfleet.jobs")


class PeriodicJob:
    """Calls ``fn()`` every ``interval_s`` seconds (first call after ``first_delay_s``) until stopped.

    An exception is logged and the job carries on at the next interval (the database may be
    briefly unavailable). ``stop()`` waits for a running call to finish.
    """

    def __init__(self, name: str, interval_s: float, fn: Callable[[], object], database: Database,
                 first_delay_s: float | None = None) -> None:
        self.name = name
        self.interval_s = interval_s
        self.first_delay_s = interval_s if first_delay_s is None else first_delay_s
        self._fn = fn
        self._database = database
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the job's thread."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=f"clawfleet-job-{self.name}", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        with self._database.connection_context():
            delay = self.first_delay_s
            while not self._stop.wait(delay):
                delay = self.interval_s
                try:
                    self._fn()
                except Exception as exc:
                    if database_unavailable(exc):  # e.g. a full disk: /healthz says so
                        write_health.failed(exc)
                    log.exception("background job %s failed; trying again in %.0f s", self.name, self.interval_s)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the running call (if any), waiting up to ``timeout`` seconds."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
