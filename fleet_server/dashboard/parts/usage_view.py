"""Token sums as the live pages show them: asked from :mod:`fleet_server.store.usage.sums` (the one
truth), remembered until stored usage changes (:attr:`fleet_server.state.FleetState.usage_version`),
so a redraw or another open page never repeats a query whose answer cannot have changed.

Cached per question across all open pages (at most :data:`CACHE_MAX` answers). A "today" question
names its day's bounds, so a new day is a new question.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar
from zoneinfo import ZoneInfo

from fleet_server.state import FleetState
from fleet_server.store.usage import sums
from fleet_server.store.usage.sums import UsageSums

T = TypeVar("T")
CACHE_MAX = 256
_cache: dict[tuple, tuple[int, object]] = {}
_lock = threading.Lock()


def cached(state: FleetState, key: tuple, compute: Callable[[], T]) -> T:
    """``compute()``, remembered under ``key`` until ``state.usage_version`` changes."""
    full = (id(state), *key)
    version = state.usage_version
    with _lock:
        hit = _cache.get(full)
    if hit is not None and hit[0] == version:
        return hit[1]  # type: ignore[return-value]
    value = compute()
    with _lock:
        if len(_cache) >= CACHE_MAX:
            _cache.clear()
        _cache[full] = (version, value)
    return value


def devices_today_and_total(state: FleetState, tz: ZoneInfo, device_ids: Iterable[str],
                            now_ms: int | None = None) -> tuple[dict[str, UsageSums], dict[str, UsageSums]]:
    """``(today, all time)``: ``{device id: sums}`` of the given devices (devices without usage absent);
    today is the calendar day in ``tz``."""
    ids = tuple(sorted(device_ids))
    bounds = sums.day_bounds_ms(tz, 0, now_ms)
    today = cached(state, ("today", tz.key, bounds, ids), lambda: sums.by_device(*bounds, devices=ids))
    total = cached(state, ("total", ids), lambda: sums.by_device(devices=ids))
    return today, total


@dataclass(frozen=True)
class FleetFigures:
    """The overview tiles' sums: today, yesterday, this month (calendar days in the viewer's zone)
    and all time."""

    today: UsageSums
    yesterday: UsageSums
    month: UsageSums
    all_time: UsageSums


def fleet_figures(state: FleetState, tz: ZoneInfo, now_ms: int | None = None) -> FleetFigures:
    """The fleet's :class:`FleetFigures` in zone ``tz``."""
    today = sums.day_bounds_ms(tz, 0, now_ms)
    yesterday = sums.day_bounds_ms(tz, -1, now_ms)
    month = sums.month_bounds_ms(tz, now_ms)

    def compute() -> FleetFigures:
        return FleetFigures(sums.total_usage(*today, tz=tz), sums.total_usage(*yesterday, tz=tz),
                            sums.total_usage(month[0], today[1], tz=tz), sums.total_usage())

    return cached(state, ("fleet", tz.key, today, month), compute)
