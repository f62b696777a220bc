"""Which server process runs the background jobs (rollups, retention, the stale check, alerts,
broker reconciliation) when several run against one PostgreSQL: the holder of the ``"jobs"``
lease (:mod:`fleet_server.store.lease`).

Every process tries to take the lease every :data:`RENEW_S` seconds; the holder renews it for
:data:`LEASE_S`. A holder that cannot renew (database gone, process frozen) stops its jobs once its
last renewal is :data:`LEASE_S` - :data:`RENEW_S` old, before the lease expires, so two processes
never run the jobs at once; another process takes the lease within :data:`LEASE_S` +
:data:`RENEW_S` of the holder's last renewal. A process that stops gives the lease up at once.
With SQLite there is one process: it always leads (no lease).
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable

from peewee import Database, SqliteDatabase

from fleet_server.store.lease import release, try_acquire

log = logging.getLogger("clawfleet.jobs.leader")

LEASE_NAME = "jobs"
LEASE_S = 15.0
"""How long a renewal holds the lease, seconds."""
RENEW_S = 5.0
"""How often every process tries to take or renew it, seconds."""


def holder_id() -> str:
    """This process's name in the lease: ``host:pid:random``."""
    return f"{socket.gethostname()[:100]}:{os.getpid()}:{secrets.token_hex(4)}"


class Leadership:
    """Runs ``on_gain()`` when this process takes the jobs lease and ``on_loss()`` when it loses it.

    Args:
        database: the open database (SQLite: always the leader, no thread).
        on_gain: start the jobs (called in the leadership thread, or in :meth:`start`).
        on_loss: stop them.
        lease_s, renew_s: see :data:`LEASE_S`, :data:`RENEW_S` (tests shorten them).
    """

    def __init__(self, database: Database, on_gain: Callable[[], None], on_loss: Callable[[], None],
                 lease_s: float = LEASE_S, renew_s: float = RENEW_S) -> None:
        self.database, self._gain, self._loss = database, on_gain, on_loss
        self.lease_s, self.renew_s = lease_s, renew_s
        self.holder = holder_id()
        self.leading = False
        self._renewed = 0.0  # monotonic time of the last successful renewal
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def always(self) -> bool:
        """True on SQLite: one process, no lease."""
        return isinstance(self.database, SqliteDatabase)

    def start(self) -> bool:
        """Try once now (so the first holder starts its jobs before ingest), then keep trying in a
        thread. Returns whether this process leads now."""
        if self.always:
            self.leading = True
            self._gain()
            return True
        self._attempt()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="clawfleet-leadership", daemon=True)
        self._thread.start()
        return self.leading

    def _loop(self) -> None:
        with self.database.connection_context():
            while not self._stop.wait(self.renew_s):
                self._attempt()

    def _attempt(self) -> None:
        try:
            held = try_acquire(self.database, LEASE_NAME, self.holder, int(self.lease_s * 1000))
        except Exception as exc:  # the database is unavailable: keep the lease only while it surely is ours
            held = self.leading and time.monotonic() - self._renewed < self.lease_s - self.renew_s
            log.warning("could not renew the jobs lease (%s)%s", exc, "" if held or not self.leading else
                        "; stopping the background jobs (another server process may take them)")
        else:
            if held:
                self._renewed = time.monotonic()
        if held and not self.leading:
            log.info("this process runs the background jobs now (lease %s)", self.holder)
            self.leading = True
            self._gain()
        elif not held and self.leading:
            self.leading = False
            log.warning("this process no longer runs the background jobs")
            self._loss()

    def stop(self) -> None:
        """Stop trying; stop the jobs and give the lease up when this process leads."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.renew_s + 5)
            self._thread = None
        if self.leading:
            self.leading = False
            self._loss()
            if not self.always:
                try:
                    release(self.database, LEASE_NAME, self.holder)
                except Exception as exc:  # it expires by itself
                    log.warning("could not give the jobs lease up (%s); it expires in %.0f s", exc, self.lease_s)
