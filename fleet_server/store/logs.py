"""OpenClaw log records (warnings and errors): idempotent inserts, ids unique per device."""

from __future__ import annotations

from fleet_server.store.models import LogRecord
from fleet_server.store.records import insert_rows, new_records

CONTENT = ("ts", "level", "subsystem", "message", "fingerprint")
"""Fields that must match for a repeated record id to be the same record (``source`` may differ)."""


def insert_logs(rows: list[dict], conflicts: list[dict] | None = None) -> list[dict]:
    """Insert log records (dicts of :class:`LogRecord` fields) not stored yet; return those inserted.

    A record whose ``(device, id)`` exists with different content is not stored; it is appended
    to ``conflicts`` when given. Must run inside the caller's transaction.
    """
    new, clash = new_records(LogRecord, rows, CONTENT)
    insert_rows(LogRecord, new)
    if conflicts is not None:
        conflicts += clash
    return new
