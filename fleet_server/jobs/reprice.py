"""The server's re-pricing job: runs a paced re-pricing pass
(:func:`fleet_server.store.usage.reprice.reprice`) whenever one is due, on its own thread.

A pass is due after a price rule changed (the dashboard asks with :meth:`RepriceJob.request`, which
wakes the job at once; a change made elsewhere is found within :data:`POLL_S`) and at start-up when
a pass was cut short by a restart. A rule change during a pass starts it again with the new rules.
Progress is read with :attr:`RepriceJob.progress` (the tokens page shows it).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from peewee import Database

from fleet_server.store.usage.prices import reprice_due
from fleet_server.store.usage.reprice import Deltas, RepriceProgress, reprice

log = logging.getLogger("clawfleet.jobs")

POLL_S = 5.0
"""How often the job looks for a pass due without being asked, seconds."""
_current: dict[str, RepriceJob] = {}


def current() -> RepriceJob | None:
    """The running server's job (None outside a server, e.g. in page tests)."""
    return _current.get("job")


class RepriceJob:
    """Runs due re-pricing passes on a daemon thread.

    Args:
        database: the open peewee database.
        on_chunk: gets each committed chunk's cost deltas (the server tells its cache which devices'
            usage changed, ``FleetState.note_usage``).
    """

    def __init__(self, database: Database, on_chunk: Callable[[Deltas], None] | None = None) -> None:
        self.database, self.on_chunk = database, on_chunk
        self._progress = RepriceProgress()
        self._wake, self._stop, self._idle = threading.Event(), threading.Event(), threading.Event()
        self._idle.set()
        self._thread: threading.Thread | None = None

    @property
    def progress(self) -> RepriceProgress:
        """A snapshot of the current or last pass."""
        return self._progress.copy()

    def request(self) -> None:
        """A rule changed: run a pass now (or start the running one again)."""
        self._idle.clear()
        self._wake.set()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no pass is due or running; True when so within ``timeout`` seconds."""
        return self._idle.wait(timeout)

    def start(self) -> None:
        """Start the thread and make this the process's job (:func:`current`)."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="clawfleet-job-reprice", daemon=True)
        self._thread.start()
        _current["job"] = self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the running transaction (a cut-short pass runs again at the next start)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if _current.get("job") is self:
            del _current["job"]

    def _loop(self) -> None:
        with self.database.connection_context():
            while not self._stop.is_set():
                self._wake.wait(POLL_S)
                self._wake.clear()
                if self._stop.is_set():
                    return
                try:
                    if reprice_due():
                        self._idle.clear()
                        reprice(self.database, progress=self._progress, on_chunk=self.on_chunk,
                                restart=self._restart)
                    self._idle.set()
                except _Stopped:
                    return
                except Exception as exc:  # the database may be briefly unavailable: try again
                    self._progress.state, self._progress.error = "failed", str(exc)[:300]
                    log.exception("re-pricing failed; trying again in %.0f s", POLL_S)

    def _restart(self) -> bool:
        if self._stop.is_set():
            raise _Stopped
        if self._wake.is_set():
            self._wake.clear()
            log.info("a price rule changed during re-pricing; starting the pass again")
            return True
        return False


class _Stopped(Exception):
    """The server is stopping: leave the pass (it is still due and runs at the next start)."""
