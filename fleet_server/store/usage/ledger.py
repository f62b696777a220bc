"""Token usage: idempotent record inserts with an hourly rollup, and the sums the views need.

Units: tokens; cost in USD; timestamps epoch ms UTC. Rollup buckets are UTC hours.

Sums cannot overflow: the schema bounds each record (``shared.schemas.MAX_TOKENS``), rollup
columns saturate at :data:`ROLLUP_CAP`, and all-time totals are aggregated as floating point by
the database (exact up to 2^53 tokens, ~9e15, and never an error beyond) then summed as Python
integers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, fields
from decimal import Decimal

from fleet_server.store.bulk import executemany
from fleet_server.store.models import UsageHourly, UsageRecord
from fleet_server.store.records import insert_rows, new_records
from fleet_server.store.sql import total
from fleet_server.store.usage.prices import effective_cost, price_rows

HOUR_MS = 3_600_000


@dataclass
class TokenSums:
    """Summed token usage. ``priced_records`` counts records that had a cost (vs. "no price")."""

    records: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    total_tokens: int = 0
    cost_usd: float = 0.0
    priced_records: int = 0
    unpriced_tokens: int = 0
    """Tokens of records with neither a price rule nor a cost recorded by OpenClaw (never $0)."""

    def add(self, other: TokenSums) -> TokenSums:
        """Add ``other`` into self in place and return self."""
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self

    @classmethod
    def of_stored(cls, values: Iterable[object]) -> TokenSums:
        """Sums from stored values in :data:`SUM_FIELDS` order, whatever the database holds: NULL,
        a float (SQLite turns an overflowing integer sum into one), infinity or NaN become finite
        numbers (non-finite ones 0)."""
        out = [_finite(v) for v in values]
        return cls(*[v if name == "cost_usd" else int(v) for name, v in zip(SUM_FIELDS, out, strict=False)])  # type: ignore[arg-type]

    @classmethod
    def of_record(cls, r: dict) -> TokenSums:
        """Sums of one usage record row (as stored in :class:`UsageRecord`); cost as in
        :func:`fleet_server.store.usage.prices.effective_cost`."""
        cost = effective_cost(r)
        return cls(1, r["input_tokens"], r["output_tokens"], r["cache_read_tokens"], r["cache_write_tokens"],
                   r["total_tokens"], cost or 0.0, int(cost is not None), 0 if cost is not None else r["total_tokens"])


SUM_FIELDS = [f.name for f in fields(TokenSums)]

ROLLUP_CAP = 2**62
"""Largest value of an hourly rollup column; an addition that would pass it stays here (adding a
bounded batch to a capped value still fits in 64 bits)."""

CONTENT = ("ts", "agent_id", "session_id", "provider", "model", "input_tokens", "output_tokens",
           "cache_read_tokens", "cache_write_tokens", "cost_usd", "failed")
"""Fields that must match for a repeated record id to be the same record (``source`` may differ:
one message seen via the transcript and via the bridge is one record)."""


def _finite(v: object) -> float | int:
    if v is None or isinstance(v, bool):
        return 0
    if isinstance(v, int):
        return v
    if isinstance(v, Decimal):  # PostgreSQL's SUM(bigint): exact
        return int(v) if v.is_finite() and v == v.to_integral_value() else (float(v) if v.is_finite() else 0)
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0
    return f if math.isfinite(f) else 0


def insert_usage(rows: list[dict], conflicts: list[dict] | None = None) -> dict[str, dict[int, TokenSums]]:
    """Insert usage records not stored yet and add them to the hourly rollup.

    Each new record is priced by the price rules (``priced_usd``, see :mod:`fleet_server.store.usage.prices`).
    Must run inside the caller's transaction (one writer). Records whose ``(device, id)`` exists
    already (or repeats within ``rows``) with the same content are skipped, so re-delivery never
    double counts; with different content they are skipped too and appended to ``conflicts``.

    Returns:
        ``{device: {hour_ms: TokenSums}}`` of what was actually added, for the in-memory cache.
    """
    new, clash = new_records(UsageRecord, rows, CONTENT)
    if conflicts is not None:
        conflicts += clash
    price_rows(new)
    insert_rows(UsageRecord, new)
    added: dict[str, dict[int, TokenSums]] = {}
    for r in new:
        hour = r["ts"] - r["ts"] % HOUR_MS
        added.setdefault(r["device"], {}).setdefault(hour, TokenSums()).add(TokenSums.of_record(r))
    executemany(_ROLLUP_UPSERT, [(device, hour, *(getattr(s, n) for n in SUM_FIELDS))
                                 for device, hours in added.items() for hour, s in hours.items()])
    return added


def _capped_add(col: str) -> str:
    """SQL adding the proposed row's ``col`` to the stored one, saturating at :data:`ROLLUP_CAP`
    (``cost_usd`` is a float: a plain sum)."""
    mine, new = f'"usage_hourly"."{col}"', f'excluded."{col}"'
    if col == "cost_usd":
        return f'"{col}" = {mine} + {new}'
    return f'"{col}" = CASE WHEN {mine} <= {ROLLUP_CAP} - {new} THEN {mine} + {new} ELSE {ROLLUP_CAP} END'


_SUM_COLS = ", ".join(f'"{n}"' for n in SUM_FIELDS)
_MARKS = ", ".join("?" for _ in range(len(SUM_FIELDS) + 2))
_ROLLUP_UPSERT = (f'INSERT INTO "usage_hourly" ("device", "hour_ms", {_SUM_COLS}) VALUES ({_MARKS}) '  # noqa: S608
                  'ON CONFLICT ("device", "hour_ms") DO UPDATE SET '  # (column names are constants)
                  + ", ".join(_capped_add(n) for n in SUM_FIELDS))
"""Add one (device, hour) of sums to the hourly rollup (SQLite ≥ 3.24 and PostgreSQL upsert)."""


def totals_by_device() -> dict[str, TokenSums]:
    """All-time sums per device (one aggregate over the hourly rollup; never overflows, see above)."""
    cols = [total(getattr(UsageHourly, n)) for n in SUM_FIELDS]
    out = {}
    for row in UsageHourly.select(UsageHourly.device, *cols).group_by(UsageHourly.device).tuples().coerce(False):
        out[row[0]] = TokenSums.of_stored(row[1:])
    return out


def hours_since(since_ms: int) -> dict[str, dict[int, TokenSums]]:
    """Hourly sums per device from ``since_ms`` on (for today / yesterday in any time zone)."""
    out: dict[str, dict[int, TokenSums]] = {}
    cols = [getattr(UsageHourly, n) for n in SUM_FIELDS]
    q = (UsageHourly.select(UsageHourly.device, UsageHourly.hour_ms, *cols)
         .where(UsageHourly.hour_ms >= since_ms - since_ms % HOUR_MS).tuples().coerce(False))  # raw: see of_stored
    for device, hour, *values in q:
        out.setdefault(device, {})[int(hour)] = TokenSums.of_stored(values)
    return out


def sum_hours(hours: dict[int, TokenSums], start_ms: int, end_ms: int) -> TokenSums:
    """Sum the hourly buckets whose hour starts in ``[start_ms, end_ms)``."""
    total = TokenSums()
    for hour, s in hours.items():
        if start_ms <= hour < end_ms:
            total.add(s)
    return total


def merge(into: dict[int, TokenSums], more: Iterable[tuple[int, TokenSums]]) -> None:
    """Add hourly sums into a cache dict in place."""
    for hour, s in more:
        into.setdefault(hour, TokenSums()).add(s)
