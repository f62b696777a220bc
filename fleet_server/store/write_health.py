"""Whether the database takes writes: what ``/healthz`` says when the disk is full.

The ingest writer and the background jobs report a failed write (:func:`failed`: the database is
unavailable — locked beyond the busy timeout, disk full, I/O error, connection lost); the writer
reports every commit (:func:`succeeded`). :func:`problem` is the one-line reason while writes have
been failing for :data:`UNHEALTHY_AFTER_S` with no commit since (a failure is forgotten after
:data:`FORGET_S` without a new one, so a job that stopped trying does not keep ``/healthz`` red).
Module-level state: one per server process. :func:`disk_full` is the other half of ``/healthz``'s
storage check: the disk holding the data dir (database, broker files) is (nearly) full.
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

UNHEALTHY_AFTER_S = 3.0
"""Seconds of failing writes (no commit) before :func:`problem` reports them (a locked database
inside the busy timeout does not count: it is not reported as a failure)."""
FORGET_S = 30.0
"""A failure older than this, with no newer one, no longer counts, seconds."""

_lock = threading.Lock()
_state: dict[str, float | str | None] = {"first_failure": None, "last_failure": None, "error": ""}


def failed(exc: BaseException, clock: float | None = None) -> None:
    """A write failed because the database is unavailable (``exc`` says why)."""
    now = time.monotonic() if clock is None else clock
    with _lock:
        if _state["first_failure"] is None:
            _state["first_failure"] = now
        _state["last_failure"], _state["error"] = now, " ".join(str(exc).split())[:200]


def succeeded() -> None:
    """A write transaction committed: the database takes writes."""
    with _lock:
        _state["first_failure"] = _state["last_failure"] = None
        _state["error"] = ""


def reset() -> None:
    """Forget earlier failures (a server starting in this process)."""
    succeeded()


def problem(clock: float | None = None) -> str | None:
    """``"the database refuses writes for 12 s: database or disk is full"`` while writes fail, else None."""
    now = time.monotonic() if clock is None else clock
    with _lock:
        first, last, error = _state["first_failure"], _state["last_failure"], _state["error"]
        if first is None or last is None:
            return None
        if now - last >= FORGET_S:
            _state["first_failure"] = _state["last_failure"] = None
            return None
        if now - first < UNHEALTHY_AFTER_S:
            return None
        return f"the database refuses writes for {now - first:.0f} s: {error}"


MIN_FREE_BYTES = 8 * 1024 * 1024
"""Below this much free space on the data dir's disk :func:`disk_full` reports it."""


def disk_full(data_dir: Path) -> str | None:
    """``"only 3 MiB free on the disk of /var/lib/clawfleet: …"`` when under :data:`MIN_FREE_BYTES`, else None."""
    try:
        free = shutil.disk_usage(data_dir).free
    except OSError:
        return None
    if free >= MIN_FREE_BYTES:
        return None
    return f"only {free // (1024 * 1024)} MiB free on the disk of {data_dir}: nothing can be stored"
