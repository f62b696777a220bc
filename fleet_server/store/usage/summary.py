"""Usage sums the dashboard pages and the REST API share (tokens, cost).

Units: tokens; USD; timestamps epoch ms UTC. Day buckets are calendar days in a named IANA time
zone (``zoneinfo``): records are summed per 15-minute UTC slot in SQL (every real UTC offset is a
multiple of 15 minutes) and the slots are put into local days in Python, so it works the same on
SQLite and PostgreSQL.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from peewee import OP, SQL, Case, Expression, fn

from fleet_server.store.models import UsageHourly, UsageRecord
from fleet_server.store.sql import QueryError, total

SLOT_MS = 15 * 60 * 1000
GROUP_KEYS = ("device", "agent", "model", "session", "day")
"""What usage can be grouped by (``model`` is ``provider/model``)."""


@dataclass
class UsageRow:
    """Sums of one group. Tokens are counts, ``cost_usd`` USD of the priced records (rule price,
    else OpenClaw's recorded cost); ``unpriced_tokens`` are tokens with neither (not $0).
    ``messages`` counts assistant messages, ``failed_turns`` those with ``stopReason: "error"``."""

    key: dict[str, str]
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    total_tokens: int = 0
    messages: int = 0
    failed_turns: int = 0
    cost_usd: float = 0.0
    priced_messages: int = 0
    unpriced_tokens: int = 0

    def add(self, other: UsageRow) -> None:
        """Add another row's sums into this one (in place)."""
        for k, v in asdict(other).items():
            if k != "key":
                setattr(self, k, getattr(self, k) + v)

    def as_json(self) -> dict:
        """The row as the API returns it: group key fields first, then the sums. ``cost_usd`` is
        None (unpriced, not $0) when tokens were used and no record had a price."""
        d = asdict(self)
        if not self.priced_messages and self.total_tokens:
            d["cost_usd"] = None
        return {**d.pop("key"), **d}


def zone(name: str | None) -> ZoneInfo | timezone:
    """The IANA zone ``name`` (``Europe/Berlin``); UTC for None/"UTC". Raises QueryError if unknown."""
    if not name or name.upper() == "UTC":
        return timezone.utc
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise QueryError(f"unknown time zone {name!r}; use an IANA name such as 'Europe/Berlin'") from None


def local_day(ts_ms: int, tz: ZoneInfo | timezone) -> str:
    """``YYYY-MM-DD`` of an epoch-ms instant in ``tz``."""
    return datetime.fromtimestamp(ts_ms / 1000, tz).strftime("%Y-%m-%d")


def day_start_ms(day: str, tz: ZoneInfo | timezone) -> int:
    """Epoch ms of local midnight starting ``day`` (``YYYY-MM-DD``) in ``tz``. Raises QueryError."""
    try:
        d = datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=tz)
    except ValueError:
        raise QueryError(f"bad date {day!r}; use YYYY-MM-DD") from None
    return int(d.timestamp() * 1000)


def usage_summary(group_by: list[str] | tuple[str, ...], since_ms: int | None = None, until_ms: int | None = None,
                  device: str | None = None, tz: str | None = None) -> list[UsageRow]:
    """Token usage summed per group, over records with ``since_ms <= ts < until_ms``.

    Args:
        group_by: one or more of :data:`GROUP_KEYS` (empty: one row, the grand total).
        since_ms, until_ms: time range, epoch ms UTC (None: unbounded).
        device: only this device id.
        tz: IANA zone for ``day`` keys (default UTC).

    Returns:
        Rows sorted by key; key values are strings (``day`` is ``YYYY-MM-DD``).

    Raises:
        QueryError: unknown group key or time zone.
    """
    bad = [g for g in group_by if g not in GROUP_KEYS]
    if bad:
        raise QueryError(f"group_by must be among {', '.join(GROUP_KEYS)}; got {', '.join(bad)}")
    tzinfo = zone(tz)
    cols = {"device": UsageRecord.device, "agent": UsageRecord.agent_id, "session": UsageRecord.session_id}
    select, group = [], []
    for g in group_by:
        if g == "model":
            select += [UsageRecord.provider, UsageRecord.model]
            group += [UsageRecord.provider, UsageRecord.model]
        elif g == "day":
            slot = UsageRecord.ts - Expression(UsageRecord.ts, OP.MOD, SLOT_MS)  # peewee's % means LIKE
            select.append(slot.alias("slot"))
            group.append(SQL("slot"))
        else:
            select.append(cols[g])
            group.append(cols[g])
    cost = fn.COALESCE(UsageRecord.priced_usd, UsageRecord.cost_usd)
    sums = [total(UsageRecord.input_tokens), total(UsageRecord.output_tokens),
            total(UsageRecord.cache_read_tokens), total(UsageRecord.cache_write_tokens),
            total(UsageRecord.total_tokens), fn.COUNT(UsageRecord.id),
            total(Case(None, [(UsageRecord.failed == True, 1)], 0)),  # noqa: E712 - peewee expression
            total(fn.COALESCE(cost, 0)), total(Case(None, [(cost.is_null(False), 1)], 0)),
            total(Case(None, [(cost.is_null(), UsageRecord.total_tokens)], 0))]
    q = UsageRecord.select(*select, *sums)
    if since_ms is not None:
        q = q.where(UsageRecord.ts >= since_ms)
    if until_ms is not None:
        q = q.where(UsageRecord.ts < until_ms)
    if device:
        q = q.where(UsageRecord.device == device)
    if group:
        q = q.group_by(*group)
    out: dict[tuple, UsageRow] = {}
    for row in q.tuples():
        key, i = {}, 0
        for g in group_by:
            if g == "model":
                provider, model = row[i] or "", row[i + 1] or ""
                key["model"] = f"{provider}/{model}" if provider else model
                i += 2
            elif g == "day":
                key["day"] = local_day(int(row[i]), tzinfo)
                i += 1
            else:
                key[g] = row[i] or ""
                i += 1
        vals = [v or 0 for v in row[i:]]
        r = UsageRow(key, *[int(v) for v in vals[:7]], float(vals[7]), int(vals[8]), int(vals[9]))
        k = tuple(key.values())
        if k in out:
            out[k].add(r)
        else:
            out[k] = r
    if not group_by and not out:
        out[()] = UsageRow({})
    return [out[k] for k in sorted(out)]


@dataclass(frozen=True)
class CostTotals:
    """Fleet cost over a time range: USD of priced records, and tokens left unpriced."""

    cost_usd: float
    priced_records: int
    unpriced_tokens: int
    total_tokens: int


def cost_between(start_ms: int, end_ms: int) -> CostTotals:
    """Cost of the hours starting in ``[start_ms, end_ms)`` (the hourly rollup; cheap)."""
    q = UsageHourly.select(total(UsageHourly.cost_usd), total(UsageHourly.priced_records),
                           total(UsageHourly.unpriced_tokens), total(UsageHourly.total_tokens)).where(
        (UsageHourly.hour_ms >= start_ms) & (UsageHourly.hour_ms < end_ms))
    usd, priced, unpriced, tokens = q.tuples().get()
    return CostTotals(float(usd or 0.0), int(priced or 0), int(unpriced or 0), int(tokens or 0))
