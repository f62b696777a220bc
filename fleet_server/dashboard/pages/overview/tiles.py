"""The overview's fleet tiles: tokens today / yesterday / all time and cost today / this month.

Sums in the server's zone come from the in-memory cache; sums in the viewer's zone and costs come
from the hourly rollups, each query cached for :data:`CACHE_S` seconds across all open pages, so
neither a redraw nor a table row ever re-queries them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from nicegui import ui

from fleet_server.dashboard.pages.overview.rows import token_breakdown
from fleet_server.dashboard.parts.format import day_bounds_ms, tokens_h
from fleet_server.state import FleetState
from fleet_server.store.usage import days as usage_days
from fleet_server.store.usage import summary as queries
from fleet_server.store.usage.ledger import TokenSums
from fleet_server.store.usage.summary import CostTotals

CACHE_S = 30.0
"""A rollup query behind a tile (or behind the table's "tokens today" in the viewer's zone) is
repeated at most this often, seconds."""

T = TypeVar("T")
_cache: dict[tuple, tuple[float, object]] = {}


def cached(key: tuple, compute: Callable[[], T]) -> T:
    """``compute()``, remembered under ``key`` for :data:`CACHE_S` seconds (at most 64 keys)."""
    hit = _cache.get(key)
    if hit is not None and time.monotonic() - hit[0] < CACHE_S:
        return hit[1]  # type: ignore[return-value]
    if len(_cache) > 64:
        _cache.clear()
    value = compute()
    _cache[key] = (time.monotonic(), value)
    return value


def usage_today(state: FleetState, tz: usage_days.ZoneInfo) -> dict[str, TokenSums]:
    """Every device's token sums of today in ``tz`` (``{device id: sums}``), cached per server state."""
    bounds = usage_days.day_bounds_ms(tz, 0)
    return cached((id(state), "today", bounds), lambda: usage_days.usage_between(*bounds))


def cost_h(c: CostTotals) -> str:
    """``"$1.23"``, ``"$1.23 + unpriced (45 tokens)"``, ``"unpriced (12,345 tokens)"``; "$0.00" only when
    nothing was used."""
    parts = [f"${c.cost_usd:,.2f}"] if c.cost_usd > 0 or not c.unpriced_tokens else []
    if c.unpriced_tokens:
        parts.append(f"unpriced ({c.unpriced_tokens:,} tokens)")
    return " + ".join(parts)


def _cost(state: FleetState, start_ms: int, end_ms: int) -> CostTotals:
    return cached((id(state), "cost", start_ms, end_ms), lambda: queries.cost_between(start_ms, end_ms))


def render_tiles(state: FleetState, tz: usage_days.ZoneInfo | None) -> None:
    """The token and cost tiles into the current page; ``tz`` None: the server's zone (until the
    browser told its own)."""
    bounds = day_bounds_ms(0) if tz is None else usage_days.day_bounds_ms(tz, 0)
    now = datetime.now(tz) if tz is not None else datetime.now().astimezone()
    month_start = int(now.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp() * 1000)
    if tz is None:  # until the browser told its zone: the server's, from the cache
        today, yesterday = state.usage(None, *day_bounds_ms(0)), state.usage(None, *day_bounds_ms(-1))
    else:  # exact sums for the viewer's calendar days (any UTC offset, DST days)
        today = usage_days.fleet_total(usage_today(state, tz))
        y_bounds = usage_days.day_bounds_ms(tz, -1)
        yesterday = cached((id(state), "yesterday", y_bounds),
                           lambda: usage_days.fleet_total(usage_days.usage_between(*y_bounds)))
    with ui.row().classes("w-full gap-4"):
        for title, sums in (("Tokens today", today), ("Yesterday", yesterday), ("All time", state.usage(None))):
            with ui.card().classes("p-3 min-w-0 grow sm:grow-0 sm:min-w-64"):
                ui.label(title).classes("text-xs uppercase text-gray-500")
                ui.label(tokens_h(sums.total_tokens)).classes("text-xl font-semibold").tooltip(
                    f"{sums.total_tokens:,} tokens")
                ui.label(token_breakdown(sums)).classes("text-xs text-gray-600")
        for title, cost in (("Cost today", _cost(state, *bounds)),
                            ("Cost this month", _cost(state, month_start, bounds[1]))):
            with ui.card().classes("p-3 min-w-0 grow sm:grow-0 sm:min-w-48"):
                ui.label(title).classes("text-xs uppercase text-gray-500")
                ui.link(cost_h(cost), "/tokens").classes("text-xl font-semibold no-underline text-black").tooltip(
                    f"${cost.cost_usd:,.6f} for {cost.priced_records:,} priced messages").props(
                    f'data-testid="{title.lower().replace(" ", "-")}"')
