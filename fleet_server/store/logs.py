"""OpenClaw log records: idempotent inserts (ids unique per device), and log queries: newest-first
pages with keyset (cursor) paging, fingerprint groups, the "what
failed" line.

Paging never uses OFFSET: a cursor is the last row's ``(ts, device, id)`` (record ids are unique per
device, not globally), and the next page is the rows strictly older, in index order (``log_record
(ts, device, id)``, ``(device, ts, id)``, ``(fingerprint, ts, device, id)``), so page 1000 is as fast
as page 1 on a million rows. Level and text filters are applied while walking that order.

OpenClaw's CLI ends a failure with hint lines at error level (``The CLI command failed.``, ``Debug:
set OPENCLAW_DEBUG=1 …``, ``Try: openclaw doctor``, ``Help: openclaw --help``); the line that says
what failed is the ``Reason: …`` before them. :func:`is_hint` tells the hint lines apart so the
"latest error" is never one of them.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass

from peewee import Tuple, fn

from fleet_server.store.models import LogRecord
from fleet_server.store.records import insert_rows, new_records

LEVELS = ("trace", "debug", "info", "warn", "error", "fatal")
MAX_LIMIT = 500
_HINT_RE = re.compile(r"^\[openclaw\] (?:The CLI command failed\.?$|Debug: |Try: |Help: )")
HINT_PREFIXES = ("[openclaw] The CLI command failed", "[openclaw] Debug: ", "[openclaw] Try: ", "[openclaw] Help: ")


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


class LogQueryError(ValueError):
    """A bad filter or cursor (the message names it)."""


def is_hint(message: str) -> bool:
    """True for OpenClaw's CLI hint lines that follow a failure (not the reason itself)."""
    return bool(_HINT_RE.match(message or ""))


def not_hint():  # a peewee expression
    """SQL condition: the record is not a CLI hint line (see :func:`is_hint`)."""
    cond = None
    for p in HINT_PREFIXES:
        c = ~LogRecord.message.startswith(p)
        cond = c if cond is None else cond & c
    return cond


def latest_error(device_id: str) -> LogRecord | None:
    """A device's newest error/fatal record that is not a hint line (the "latest error")."""
    return (LogRecord.select().where((LogRecord.device == device_id) & LogRecord.level.in_(("error", "fatal"))
                                     & not_hint()).order_by(LogRecord.ts.desc()).first())


@dataclass(frozen=True)
class LogFilter:
    """Filters of the logs page and ``GET /api/v1/logs``. Times epoch ms UTC; ``min_level`` keeps that
    level and above; ``text`` is a case-insensitive substring of the message."""

    device: str | None = None
    min_level: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    text: str | None = None
    fingerprint: str | None = None
    hide_hints: bool = False

    def where(self):  # a peewee expression
        """The filter as a peewee condition (True when empty). Raises LogQueryError on a bad level."""
        cond = LogRecord.ts.is_null(False)
        if self.device:
            cond &= LogRecord.device == self.device
        if self.min_level:
            if self.min_level not in LEVELS:
                raise LogQueryError(f"level must be one of {', '.join(LEVELS)}")
            keep = LEVELS[LEVELS.index(self.min_level):]
            # "level || ''": filter while walking the (ts, device, id) index newest first, instead of
            # collecting every matching level from a level index and sorting them (no LIMIT shortcut)
            cond &= LogRecord.level.concat("").in_(keep)
        if self.since_ms is not None:
            cond &= LogRecord.ts >= self.since_ms
        if self.until_ms is not None:
            cond &= LogRecord.ts < self.until_ms
        if self.text:
            cond &= LogRecord.message.contains(self.text[:200])
        if self.fingerprint:
            cond &= LogRecord.fingerprint == self.fingerprint
        if self.hide_hints:
            cond &= not_hint()
        return cond


def encode_cursor(ts: int, device: str, record_id: str) -> str:
    """Opaque cursor of a row: URL-safe base64 of ``"<ts>:<device>:<id>"`` (device ids have no ':')."""
    return base64.urlsafe_b64encode(f"{ts}:{device}:{record_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str, str]:
    """``(ts, device, id)`` of a cursor. Raises LogQueryError when it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        ts, device, record_id = raw.split(":", 2)
        return int(ts), device, record_id
    except (ValueError, UnicodeDecodeError):
        raise LogQueryError("bad cursor; pass the next_cursor of the previous page") from None


@dataclass(frozen=True)
class LogPage:
    """One page, newest first; ``next_cursor`` is None on the last page."""

    rows: list[dict]
    next_cursor: str | None


LOG_FIELDS = (LogRecord.id, LogRecord.device, LogRecord.ts, LogRecord.level, LogRecord.subsystem,
              LogRecord.message, LogRecord.fingerprint, LogRecord.source, LogRecord.agent_id, LogRecord.session_id,
              LogRecord.session_key, LogRecord.run_id)


def logs_page(f: LogFilter, cursor: str | None = None, limit: int = 100) -> LogPage:
    """Records matching ``f``, newest first (``ts``, ``device``, ``id`` descending), ``limit`` (1-500) per page.

    Rows are dicts with ``id, device, ts, level, subsystem, message, fingerprint, source, agent_id,
    session_id, session_key, run_id``. Raises LogQueryError on a bad filter or cursor.
    """
    limit = max(1, min(MAX_LIMIT, int(limit)))
    cond = f.where()
    if cursor:
        ts, device, rid = decode_cursor(cursor)
        cond &= Tuple(LogRecord.ts, LogRecord.device, LogRecord.id) < Tuple(ts, device, rid)
    order = (LogRecord.ts.desc(), LogRecord.device.desc(), LogRecord.id.desc())
    rows = list(LogRecord.select(*LOG_FIELDS).where(cond).order_by(*order).limit(limit + 1).dicts())
    more = len(rows) > limit
    rows = rows[:limit]
    last = rows[-1] if rows else None
    return LogPage(rows, encode_cursor(last["ts"], last["device"], last["id"]) if more and last else None)


def fingerprint_groups(f: LogFilter, limit: int = 100) -> list[dict]:
    """Records matching ``f`` grouped by fingerprint, most recent group first.

    Returns:
        ``[{"fingerprint", "count", "first_ms", "last_ms", "devices", "level", "subsystem", "sample"}]``
        where ``devices`` counts distinct devices and ``sample`` is the newest message of the group.
    """
    limit = max(1, min(MAX_LIMIT, int(limit)))
    last = fn.MAX(LogRecord.ts)
    q = (LogRecord.select(LogRecord.fingerprint, fn.COUNT(LogRecord.id), fn.MIN(LogRecord.ts), last,
                          fn.COUNT(LogRecord.device.distinct()))
         .where(f.where()).group_by(LogRecord.fingerprint).order_by(last.desc()).limit(limit))
    out = []
    for fp, count, first_ms, last_ms, devices in q.tuples():
        sample = (LogRecord.select(LogRecord.message, LogRecord.level, LogRecord.subsystem)
                  .where((LogRecord.fingerprint == fp) & (LogRecord.ts == last_ms)).first())
        out.append({"fingerprint": fp, "count": count, "first_ms": first_ms, "last_ms": last_ms, "devices": devices,
                    "level": sample.level if sample else "", "subsystem": sample.subsystem if sample else "",
                    "sample": sample.message if sample else ""})
    return out
