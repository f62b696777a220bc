"""Token usage: idempotent record inserts with an hourly rollup, and the sums the views need.

Units: tokens; cost in USD; timestamps epoch ms UTC. Rollup buckets are UTC hours.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields

from peewee import fn

from fleet_server.store.models import UsageHourly, UsageRecord
from fleet_server.store.prices import effective_cost, price_rows

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
    def of_record(cls, r: dict) -> TokenSums:
        """Sums of one usage record row (as stored in :class:`UsageRecord`); cost as in
        :func:`fleet_server.store.prices.effective_cost`."""
        cost = effective_cost(r)
        return cls(1, r["input_tokens"], r["output_tokens"], r["cache_read_tokens"], r["cache_write_tokens"],
                   r["total_tokens"], cost or 0.0, int(cost is not None), 0 if cost is not None else r["total_tokens"])


SUM_FIELDS = [f.name for f in fields(TokenSums)]


def insert_usage(rows: list[dict]) -> dict[str, dict[int, TokenSums]]:
    """Insert usage records not stored yet and add them to the hourly rollup.

    Each new record is priced by the price rules (``priced_usd``, see :mod:`fleet_server.store.prices`).
    Must run inside the caller's transaction (one writer). Records whose ``id`` exists already
    (or repeats within ``rows``) are skipped, so re-delivery never double counts.

    Returns:
        ``{device: {hour_ms: TokenSums}}`` of what was actually added, for the in-memory cache.
    """
    unique: dict[str, dict] = {}
    for r in rows:
        unique.setdefault(r["id"], r)
    ids = list(unique)
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        for (rid,) in UsageRecord.select(UsageRecord.id).where(UsageRecord.id.in_(chunk)).tuples():
            unique.pop(rid, None)
    new = list(unique.values())
    price_rows(new)
    for i in range(0, len(new), 200):
        UsageRecord.insert_many(new[i:i + 200]).execute()
    added: dict[str, dict[int, TokenSums]] = {}
    for r in new:
        hour = r["ts"] - r["ts"] % HOUR_MS
        added.setdefault(r["device"], {}).setdefault(hour, TokenSums()).add(TokenSums.of_record(r))
    for device, hours in added.items():
        for hour, s in hours.items():
            values = {name: getattr(s, name) for name in SUM_FIELDS}
            UsageHourly.insert(device=device, hour_ms=hour, **values).on_conflict(
                conflict_target=[UsageHourly.device, UsageHourly.hour_ms],
                update={getattr(UsageHourly, n): getattr(UsageHourly, n) + v for n, v in values.items()},
            ).execute()
    return added


def totals_by_device() -> dict[str, TokenSums]:
    """All-time sums per device (one aggregate over the hourly rollup)."""
    cols = [fn.SUM(getattr(UsageHourly, n)) for n in SUM_FIELDS]
    out = {}
    for row in UsageHourly.select(UsageHourly.device, *cols).group_by(UsageHourly.device).tuples():
        out[row[0]] = TokenSums(*[(v or 0) for v in row[1:]])
    return out


def hours_since(since_ms: int) -> dict[str, dict[int, TokenSums]]:
    """Hourly sums per device from ``since_ms`` on (for today / yesterday in any time zone)."""
    out: dict[str, dict[int, TokenSums]] = {}
    q = UsageHourly.select().where(UsageHourly.hour_ms >= since_ms - since_ms % HOUR_MS)
    for h in q:
        out.setdefault(h.device, {})[h.hour_ms] = TokenSums(*[getattr(h, n) for n in SUM_FIELDS])
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
