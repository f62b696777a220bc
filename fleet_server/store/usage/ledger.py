"""Token usage: idempotent record inserts with the hourly and all-time rollups (the sums every
view reads are in :mod:`fleet_server.store.usage.sums`).

Units: tokens; cost in USD; timestamps epoch ms UTC. Rollup buckets are UTC hours.

Sums cannot overflow: the schema bounds each record (``shared.schemas.MAX_TOKENS``), rollup
columns saturate at :data:`ROLLUP_CAP`, and sums over many rows are aggregated as floating point
by the database (exact up to 2^53 tokens, ~9e15, and never an error beyond).
"""

from __future__ import annotations

from fleet_server.store.bulk import executemany
from fleet_server.store.models import UsageRecord
from fleet_server.store.records import insert_rows, new_records
from fleet_server.store.usage.prices import effective_cost, price_rows
from fleet_server.store.usage.sums import HOUR_MS, SUM_FIELDS, UsageSums, rollup_column

__all__ = ["CONTENT", "HOUR_MS", "ROLLUP_CAP", "insert_usage"]

ROLLUP_CAP = 2**62
"""Largest value of a rollup column; an addition that would pass it stays here (adding a
bounded batch to a capped value still fits in 64 bits)."""

CONTENT = ("ts", "agent_id", "session_id", "provider", "model", "input_tokens", "output_tokens",
           "cache_read_tokens", "cache_write_tokens", "cost_usd", "failed")
"""Fields that must match for a repeated record id to be the same record (``source`` may differ:
one message seen via the transcript and via the bridge is one record)."""


def insert_usage(rows: list[dict], conflicts: list[dict] | None = None) -> dict[str, UsageSums]:
    """Insert usage records not stored yet and add them to the hourly and all-time rollups.

    Each new record is priced by the price rules (``priced_usd``, see :mod:`fleet_server.store.usage.prices`).
    Must run inside the caller's transaction (one writer). Records whose ``(device, id)`` exists
    already (or repeats within ``rows``) with the same content are skipped, so re-delivery never
    double counts; with different content they are skipped too and appended to ``conflicts``.

    Returns:
        ``{device: sums}`` of what was actually added (devices with nothing new are absent).
    """
    new, clash = new_records(UsageRecord, rows, CONTENT)
    if conflicts is not None:
        conflicts += clash
    price_rows(new)
    insert_rows(UsageRecord, new)
    hours: dict[tuple[str, int], UsageSums] = {}
    added: dict[str, UsageSums] = {}
    for r in new:
        sums = UsageSums.of_record(r, effective_cost(r))
        hours.setdefault((r["device"], r["ts"] - r["ts"] % HOUR_MS), UsageSums()).add(sums)
        added.setdefault(r["device"], UsageSums()).add(sums)
    executemany(_HOURLY_UPSERT, [(device, hour, *(getattr(s, n) for n in SUM_FIELDS))
                                 for (device, hour), s in hours.items()])
    executemany(_TOTAL_UPSERT, [(device, *(getattr(s, n) for n in SUM_FIELDS)) for device, s in added.items()])
    return added


def _upsert(table: str, key: tuple[str, ...]) -> str:
    """SQL adding one row of sums to ``table`` (SQLite >= 3.24 and PostgreSQL upsert), each column
    saturating at :data:`ROLLUP_CAP` (``cost_usd`` is a float: a plain sum). Names are constants."""
    cols = [rollup_column(n) for n in SUM_FIELDS]

    def add(col: str) -> str:
        mine, new = f'"{table}"."{col}"', f'excluded."{col}"'
        if col == "cost_usd":
            return f'"{col}" = {mine} + {new}'
        return f'"{col}" = CASE WHEN {mine} <= {ROLLUP_CAP} - {new} THEN {mine} + {new} ELSE {ROLLUP_CAP} END'

    names = ", ".join(f'"{c}"' for c in (*key, *cols))
    marks = ", ".join("?" for _ in range(len(key) + len(cols)))
    conflict = ", ".join(f'"{k}"' for k in key)
    return (f'INSERT INTO "{table}" ({names}) VALUES ({marks}) '  # noqa: S608 - constant names
            f"ON CONFLICT ({conflict}) DO UPDATE SET " + ", ".join(add(c) for c in cols))


_HOURLY_UPSERT = _upsert("usage_hourly", ("device", "hour_ms"))
_TOTAL_UPSERT = _upsert("usage_total", ("device",))
