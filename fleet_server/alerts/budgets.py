"""Token and cost budgets: usage of a scope in the current day or month of a time zone, the
percentage of the budget, and a projection ("at this rate the daily budget is reached at 15:40").

Usage sums come from :func:`usage_by_device`, which asks the one module that sums usage
(:mod:`fleet_server.store.usage.sums`), so a budget counts what every page shows; it is exact in any
zone (half-hour offsets, 23- and 25-hour DST days). :class:`BudgetMeter` keeps the part of a period that lies
more than an hour back and re-reads only the last hour or so on each evaluation; the kept part is
read again every :data:`REFRESH_MS` so usage that arrives late (an agent's outbox after an outage)
is counted. Token budgets count every token, priced or not; cost budgets count USD of priced
usage and report unpriced tokens beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from fleet_server.alerts.messages import clock
from fleet_server.store.usage.sums import HOUR_MS, UsageSums, by_device, day_bounds_ms, month_bounds_ms

REFRESH_MS = 10 * 60_000
"""How often the kept (older) part of a period is summed again, ms."""


def usage_by_device(start_ms: int, end_ms: int) -> dict[str, UsageSums]:
    """Exact token and cost sums per device of usage with ``start_ms <= ts < end_ms`` (epoch ms):
    ``{device: UsageSums}``, devices without usage absent; ``cost_usd`` in USD of priced messages,
    ``unpriced_tokens`` beside it (:func:`fleet_server.store.usage.sums.by_device`)."""
    return by_device(start_ms, end_ms)


def period_bounds(period: str, zone: ZoneInfo, now: int) -> tuple[int, int, str]:
    """``(start_ms, end_ms, key)`` of the local day or month containing ``now``; key ``2026-03-29``
    or ``2026-03``. A DST day is 23 or 25 hours long; months start at local midnight."""
    if period == "day":
        start, end = day_bounds_ms(zone, 0, now)
        return start, end, datetime.fromtimestamp(start / 1000, zone).strftime("%Y-%m-%d")
    start, end = month_bounds_ms(zone, now)
    return start, end, datetime.fromtimestamp(start / 1000, zone).strftime("%Y-%m")


@dataclass(frozen=True)
class BudgetReading:
    """One scope's use of a budget now: ``used`` in the budget's unit (tokens or USD), ``pct`` of
    the amount (0-…), the period, ``rate`` per second (recent), ``unpriced`` tokens without a price."""

    used: float
    pct: float
    period_key: str
    period_start: int
    period_end: int
    rate: float
    unpriced: int


class BudgetMeter:
    """Per-device usage of periods, kept between evaluations (see the module docstring).

    Args:
        source: ``(start_ms, end_ms) -> {device: UsageSums}`` (default :func:`usage_by_device`).
    """

    def __init__(self, source=usage_by_device) -> None:
        self.source = source
        self._kept: dict[int, tuple[int, int, dict[str, UsageSums]]] = {}  # start -> (kept_until, read_ms, sums)

    def period_usage(self, start_ms: int, now: int) -> dict[str, UsageSums]:
        """Usage per device from ``start_ms`` up to ``now`` (inclusive of records at ``now``)."""
        until = max(start_ms, now - now % HOUR_MS - HOUR_MS)
        kept = self._kept.get(start_ms)
        if kept is None or now - kept[1] >= REFRESH_MS or kept[0] > until:
            kept = (until, now, self.source(start_ms, until) if until > start_ms else {})
        elif kept[0] < until:
            more = self.source(kept[0], until)
            sums = {d: UsageSums().add(s) for d, s in kept[2].items()}
            for d, s in more.items():
                sums.setdefault(d, UsageSums()).add(s)
            kept = (until, kept[1], sums)
        self._kept = {k: v for k, v in self._kept.items() if k == start_ms or now - v[1] < 2 * REFRESH_MS}
        self._kept[start_ms] = kept
        out = {d: UsageSums().add(s) for d, s in kept[2].items()}
        for d, s in self.source(until, now + 1).items():
            out.setdefault(d, UsageSums()).add(s)
        return out

    def recent(self, now: int) -> dict[str, UsageSums]:
        """Usage per device over the last hour (for the projection's rate)."""
        return self.source(now - HOUR_MS, now + 1)


def reading(unit: str, amount: float, sums: UsageSums, recent: UsageSums, start: int, end: int, key: str,
            now: int) -> BudgetReading:
    """A :class:`BudgetReading` from the scope's period and last-hour sums."""
    used = sums.cost_usd if unit == "usd" else float(sums.total_tokens)
    last_hour = recent.cost_usd if unit == "usd" else float(recent.total_tokens)
    elapsed_s = max(1.0, (now - start) / 1000)
    rate = last_hour / min(3600.0, elapsed_s) if last_hour > 0 else used / elapsed_s
    return BudgetReading(used, 100.0 * used / amount, key, start, end, rate, sums.unpriced_tokens)


def projection(r: BudgetReading, unit: str, amount: float, period: str, zone: ZoneInfo, now: int) -> str:
    """``At this rate the daily budget is reached at 15:40 CEST.`` or, when it is not reached before
    the period ends (or is passed already), the share of the budget the period ends at."""
    word = "daily" if period == "day" else "monthly"
    note = f" ({r.unpriced:,} tokens have no price and are not in the cost.)" if unit == "usd" and r.unpriced else ""
    end_pct = 100.0 * (r.used + r.rate * max(0, r.period_end - now) / 1000) / amount
    if r.used < amount and r.rate > 0:
        reach = now + int((amount - r.used) / r.rate * 1000)
        if reach < r.period_end:
            return f"At this rate the {word} budget is reached at {clock(reach, zone)}.{note}"
    if r.rate <= 0:
        return f"No usage in the last hour; the {word} budget ends at {r.pct:.0f} % unless usage resumes.{note}"
    return f"At this rate the {'day' if period == 'day' else 'month'} ends at about {end_pct:.0f} % of the " \
           f"budget.{note}"
