"""Retention: how long each kind of history is kept, and deleting what is older.

Set with ``clawfleet-server run --retention KIND=DURATION`` (repeatable), e.g. ``--retention raw=72h
--retention logs=30d``; durations are ``<number><s|m|h|d|y>`` (``y`` = 365 days) or ``forever``.
Kinds and defaults (:data:`DEFAULTS`): raw samples 48 h, 5-minute rollups 14 d, 1-hour rollups
400 d, status events 400 d, log records 90 d, usage records 400 d, hourly usage sums forever
(they are the token ledger), OpenClaw turns and tool calls (``runs``) 400 d (a session keeps its sums).

Every kind is deleted by time over all devices at once — devices deleted long ago included —
in transactions of as many rows as fit in :data:`fleet_server.store.locks.HOLD_S` (paced with
:class:`fleet_server.store.locks.TakeTurns`), each found through an index on the kind's time
column. Raw samples age by the server's receive time (``received_ms``; rows stored before schema
version 5 by their ``ts``) and are deleted only once they are rolled up (received at or before
the rollup watermark), so a stalled rollup job never loses data.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, fields, replace

from peewee import Expression, Field, Model, Tuple

from fleet_server.store.history.rollups import watermark
from fleet_server.store.locks import HOLD_S, TakeTurns, write_transaction
from fleet_server.store.models import (
    AgentRun,
    LogRecord,
    Sample,
    SampleRollup1h,
    SampleRollup5m,
    StatusEvent,
    ToolCall,
    UsageHourly,
    UsageRecord,
)

log = logging.getLogger("clawfleet.store.retention")

_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "y": 365 * 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdy])\s*$")


class RetentionError(ValueError):
    """A retention setting that cannot be parsed; the message names the key and the fix."""


@dataclass(frozen=True)
class RetentionPolicy:
    """Seconds to keep each kind of history; None keeps it forever."""

    raw: float | None = 48 * 3600
    rollup_5m: float | None = 14 * 86400
    rollup_1h: float | None = 400 * 86400
    status_events: float | None = 400 * 86400
    logs: float | None = 90 * 86400
    usage_records: float | None = 400 * 86400
    usage_hourly: float | None = None
    runs: float | None = 400 * 86400

    ALIASES = {"5m": "rollup_5m", "1h": "rollup_1h", "status": "status_events", "usage": "usage_records"}

    @classmethod
    def parse(cls, items: Iterable[str], base: RetentionPolicy | None = None) -> RetentionPolicy:
        """Apply ``KIND=DURATION`` items to ``base`` (default :data:`DEFAULTS`).

        Raises:
            RetentionError: unknown kind, bad duration, or raw samples kept for less than 6 h (the
                1 h and 6 h charts read raw samples).
        """
        policy = base or DEFAULTS
        names = {f.name for f in fields(cls)}
        for item in items:
            key, sep, value = item.partition("=")
            key = cls.ALIASES.get(key.strip(), key.strip())
            if not sep or key not in names:
                raise RetentionError(f"--retention {item!r}: expected KIND=DURATION with KIND one of "
                                     f"{', '.join(sorted(names | set(cls.ALIASES)))}")
            policy = replace(policy, **{key: parse_duration(value, key)})
        if policy.raw is not None and policy.raw < 6 * 3600:
            raise RetentionError("--retention raw: keep raw samples at least 6h (the 1 h and 6 h charts read them)")
        return policy

    def describe(self) -> str:
        """``"raw 48h, rollup_5m 14d, …, usage_hourly forever"`` for the log."""
        return ", ".join(f"{f.name} {format_duration(getattr(self, f.name))}" for f in fields(self))


DEFAULTS = RetentionPolicy()


def parse_duration(text: str, key: str = "duration") -> float | None:
    """``"48h"`` -> 172800.0 seconds; ``"forever"`` -> None. Raises :class:`RetentionError`."""
    if text.strip().lower() in ("forever", "never", "0"):
        return None
    m = _DURATION.match(text.lower())
    if not m or float(m.group(1)) <= 0:
        raise RetentionError(f"--retention {key}={text!r}: use a positive number with a unit s, m, h, d or y "
                             "(e.g. 48h, 14d, 1y) or 'forever'")
    return float(m.group(1)) * _UNIT_S[m.group(2)]


def format_duration(seconds: float | None) -> str:
    """Seconds -> the shortest exact ``"14d"`` / ``"48h"`` form; None -> ``"forever"``."""
    if seconds is None:
        return "forever"
    for unit in ("y", "d", "h", "m"):
        if seconds % _UNIT_S[unit] == 0:
            return f"{int(seconds // _UNIT_S[unit])}{unit}"
    return f"{seconds:g}s"


def _cutoff(now_ms: int, keep_s: float | None) -> int | None:
    return None if keep_s is None else now_ms - int(keep_s * 1000)


FIRST_CHUNK_ROWS = 2000
"""Rows in the first delete of a kind; later ones are sized to take about :data:`HOLD_S` each."""


def _delete_older(database: object, model: type[Model], where: Expression, pace: TakeTurns) -> int:
    """Delete ``model`` rows matching ``where`` in paced transactions of about :data:`HOLD_S`
    (each a ``DELETE … WHERE key IN (SELECT key … LIMIT n)``); returns rows deleted."""
    key: list[Field] = ([model._meta.primary_key] if not model._meta.composite_key
                        else [model._meta.fields[n] for n in model._meta.primary_key.field_names])
    target = key[0] if len(key) == 1 else Tuple(*key)
    total, rows = 0, FIRST_CHUNK_ROWS
    while True:
        with write_transaction(database):
            started = time.monotonic()
            doomed = model.select(*key).where(where).limit(rows)
            n = model.delete().where(target.in_(doomed)).execute()
            took = time.monotonic() - started
        total += n
        pace.turn()
        if n < rows:
            return total
        rows = max(100, min(100_000, int(rows * HOLD_S / max(took, 1e-3) * 0.8)))


def apply_retention(policy: RetentionPolicy, now_ms: int, database: object | None = None) -> dict[str, int]:
    """Delete every row older than its kind's retention, every device at once; returns rows
    deleted per kind.

    "Older" means a time strictly before ``now_ms - retention``: the server's receive time of a
    raw sample (``received_ms``; its ``ts`` for rows stored before schema version 5), rollup
    ``bucket_ms``, event/record ``ts``, usage ``hour_ms``. Raw samples received after the rollup
    watermark (not yet in the tiers) are kept.
    """
    db = database or Sample._meta.database.obj  # the bound database, not the proxy (SQLite or not matters)
    deleted = dict.fromkeys(("raw", "rollup_5m", "rollup_1h", "status_events", "logs", "usage_records",
                             "usage_hourly", "runs"), 0)
    pace = TakeTurns(db)  # many short transactions: leave the write lock to ingest now and then
    raw_cut = _cutoff(now_ms, policy.raw)
    if raw_cut is not None:
        limit = min(raw_cut, watermark() + 1)
        deleted["raw"] = _delete_older(db, Sample, Sample.received_ms < limit, pace)
        # rows stored before receive times were kept: every one of them was rolled up by then
        deleted["raw"] += _delete_older(db, Sample, Sample.received_ms.is_null() & (Sample.ts < raw_cut), pace)
    for key, model, col in (("rollup_5m", SampleRollup5m, SampleRollup5m.bucket_ms),
                            ("rollup_1h", SampleRollup1h, SampleRollup1h.bucket_ms),
                            ("status_events", StatusEvent, StatusEvent.ts), ("logs", LogRecord, LogRecord.ts),
                            ("usage_records", UsageRecord, UsageRecord.ts),
                            ("usage_hourly", UsageHourly, UsageHourly.hour_ms), ("runs", AgentRun, AgentRun.started_ms),
                            ("runs", ToolCall, ToolCall.ts)):
        cut = _cutoff(now_ms, getattr(policy, key))
        if cut is not None:
            deleted[key] += _delete_older(db, model, col < cut, pace)  # "runs": turns, then tool calls
    if any(deleted.values()):
        log.info("retention deleted %s", ", ".join(f"{k} {v}" for k, v in deleted.items() if v))
    return deleted
