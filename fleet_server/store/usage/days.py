"""Token sums of calendar days in the viewer's time zone, exact in every zone.

Usage is rolled up per UTC hour (:class:`UsageHourly`). A local day starts on a UTC hour only in
zones whose offset is whole hours; in Asia/Kolkata (+05:30) or Asia/Kathmandu (+05:45) it starts
mid-hour, and on DST days it is 23 or 25 hours long. So a day ``[start, end)`` is summed as: the
hourly buckets lying wholly inside it, plus the individual usage records of the (at most two)
partial hours at its edges. That is exact for any offset and reads at most two hours of records.
Day bounds come from :mod:`zoneinfo`. Records deleted by retention are no longer counted in the
edge hours of days older than the usage-record retention (400 days by default).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from peewee import Case, fn

from fleet_server.store.models import UsageHourly, UsageRecord
from fleet_server.store.sql import total
from fleet_server.store.usage.ledger import HOUR_MS, SUM_FIELDS, TokenSums


def zone(name: str | None) -> ZoneInfo:
    """The :class:`ZoneInfo` of an IANA name from the browser; UTC when missing or unknown."""
    try:
        return ZoneInfo(name) if name else ZoneInfo("UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def day_bounds_ms(tz: ZoneInfo, offset_days: int = 0, now_ms: int | None = None) -> tuple[int, int]:
    """``(start, end)`` epoch ms of a local calendar day in ``tz``: 0 today, -1 yesterday.

    Midnight to midnight local time, so a DST day is 23 or 25 hours long.
    """
    now = datetime.now(tz) if now_ms is None else datetime.fromtimestamp(now_ms / 1000, tz)
    day = (now + timedelta(days=offset_days)).date()
    start = datetime(day.year, day.month, day.day, tzinfo=tz)
    nxt = day + timedelta(days=1)
    end = datetime(nxt.year, nxt.month, nxt.day, tzinfo=tz)
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)


def _sums(row: tuple) -> TokenSums:
    """TokenSums from SUM() columns (PostgreSQL returns SUM(bigint) as Decimal: cast back)."""
    return TokenSums(*[float(v or 0) if name == "cost_usd" else int(v or 0)
                       for name, v in zip(SUM_FIELDS, row, strict=True)])


def usage_between(start_ms: int, end_ms: int, device_id: str | None = None) -> dict[str, TokenSums]:
    """Exact token sums per device of usage with ``start_ms <= ts < end_ms`` (all devices or one).

    Returns:
        ``{device_id: TokenSums}``; devices without usage in the range are absent.
    """
    out: dict[str, TokenSums] = {}
    first_full = -(-start_ms // HOUR_MS) * HOUR_MS  # first hour start >= start_ms
    last_full = end_ms - end_ms % HOUR_MS  # hours starting before this end by end_ms
    if first_full < last_full:
        cols = [total(getattr(UsageHourly, n)) for n in SUM_FIELDS]
        q = UsageHourly.select(UsageHourly.device, *cols).where(
            (UsageHourly.hour_ms >= first_full) & (UsageHourly.hour_ms < last_full))
        if device_id:
            q = q.where(UsageHourly.device == device_id)
        for row in q.group_by(UsageHourly.device).tuples():
            out.setdefault(row[0], TokenSums()).add(_sums(row[1:]))
        edges = [(start_ms, first_full), (last_full, end_ms)]
    else:  # the range lies within one or two hours: sum its records directly
        edges = [(start_ms, end_ms)]
    cost = fn.COALESCE(UsageRecord.priced_usd, UsageRecord.cost_usd)  # as store.usage.prices.effective_cost
    record_cols = [fn.COUNT(UsageRecord.id), total(UsageRecord.input_tokens), total(UsageRecord.output_tokens),
                   total(UsageRecord.cache_read_tokens), total(UsageRecord.cache_write_tokens),
                   total(UsageRecord.total_tokens), total(cost), fn.COUNT(cost),
                   total(Case(None, [(cost.is_null(), UsageRecord.total_tokens)], 0))]
    for lo, hi in edges:
        if lo >= hi:
            continue
        q = UsageRecord.select(UsageRecord.device, *record_cols).where((UsageRecord.ts >= lo) & (UsageRecord.ts < hi))
        if device_id:
            q = q.where(UsageRecord.device == device_id)
        for row in q.group_by(UsageRecord.device).tuples():
            out.setdefault(row[0], TokenSums()).add(_sums(row[1:]))
    return out


def fleet_total(sums: dict[str, TokenSums]) -> TokenSums:
    """Sum of a :func:`usage_between` result over all devices."""
    total = TokenSums()
    for s in sums.values():
        total.add(s)
    return total
