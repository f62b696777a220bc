"""Fleet overview page (``/``): one row per device with a status pill and the latest sample.

Reads only the in-memory :class:`fleet_server.state.FleetState`; redraws when its version
changes (checked every second), so the page updates live without a reload.
"""

from __future__ import annotations

import time
from datetime import datetime

from nicegui import ui

from fleet_server.dashboard.format import (
    STATUS_COLORS,
    ago_h,
    bytes_h,
    day_bounds_ms,
    duration_h,
    pct_h,
    rate_h,
    tokens_h,
    usd_h,
)
from fleet_server.dashboard.live import redraw_on_change
from fleet_server.dashboard.timezone import browser_zone
from fleet_server.state import DeviceView, FleetState
from fleet_server.store import queries, usage_days
from fleet_server.store.queries import CostTotals
from fleet_server.store.usage import TokenSums

STALE_ERROR_MS = 24 * 3_600_000
"""An error older than this (ms) is shown grey instead of red."""
COLUMNS = ("Status", "Device", "CPU", "Memory", "Disk", "Swap", "Net ↓ / ↑", "Uptime", "Tokens today / total",
           "Last seen")


def status_pill(status: str) -> ui.badge:
    """A colored badge for a device status."""
    return ui.badge(status, color=STATUS_COLORS.get(status, "grey")).classes("text-sm px-2").props(
        f'data-testid="status-{status}"')


def token_breakdown(s: TokenSums) -> str:
    """``"in 12.3k · out 456 · cache read 1.2k · cache write 0"`` (+ cost when priced)."""
    text = (f"in {tokens_h(s.input_tokens)} · out {tokens_h(s.output_tokens)} · cache read "
            f"{tokens_h(s.cache_read_tokens)} · cache write {tokens_h(s.cache_write_tokens)}")
    if s.priced_records:
        text += f" · {usd_h(s.cost_usd)}"
    return text


def _device_row(d: DeviceView, state: FleetState, today: tuple[int, int] | dict[str, TokenSums]) -> None:
    t, m = d.telemetry, d.meta
    with ui.column().classes("gap-0 items-start"):
        status_pill(d.display_status).tooltip(d.status_reason or d.status)
        since = d.status_since_ms or d.status_ms  # the transition, not the latest re-announcement
        if since:
            ui.label(f"for {duration_h(time.time() - since / 1000)}").classes("text-xs text-gray-500")
    stale = d.status != "online" and t is not None  # last values of a device that is not reporting
    with ui.column().classes("gap-0"):
        ui.link(d.name, f"/device/{d.device_id}").classes("font-medium")
        sub = f"{d.device_id} · {m.os} {m.arch}" if m else d.device_id
        ui.label(sub).classes("text-xs text-gray-500")
        if d.latest_error:
            old = time.time() * 1000 - d.latest_error.ts > STALE_ERROR_MS  # old errors look old
            ui.label(f"⚠ {ago_h(d.latest_error.ts)}: {d.latest_error.message[:140]}").classes(
                "text-xs " + ("text-gray-500" if old else "text-red-700")).tooltip(d.latest_error.message[:1000])
    if t is None:
        for _ in range(6):
            ui.label("–")
    else:
        for text in (pct_h(t.cpu_pct), f"{pct_h(t.mem_pct)} of {bytes_h(t.mem_total_bytes)}",
                     f"{pct_h(t.disk_pct)} of {bytes_h(t.disk_total_bytes)}", pct_h(t.swap_pct),
                     f"{rate_h(t.net_rx_bps)} / {rate_h(t.net_tx_bps)}", duration_h(t.uptime_s)):
            cell = ui.label(text)
            if stale:  # greyed: these are the values from before the device stopped reporting
                cell.classes("text-gray-400 italic").props('data-testid="stale-value"').mark("stale-value").tooltip(
                    f"last value, {ago_h(t.ts)}: the device is {d.display_status}")
    day = today.get(d.device_id, TokenSums()) if isinstance(today, dict) else state.usage(d.device_id, *today)
    total = state.usage(d.device_id)
    ui.label(f"{tokens_h(day.total_tokens)} / {tokens_h(total.total_tokens)}").tooltip(
        f"today: {token_breakdown(day)}\nall time: {token_breakdown(total)}")
    ui.label(ago_h(d.last_seen_ms))


def cost_h(c: CostTotals) -> str:
    """``"$1.23"``, ``"$1.23 + unpriced (45 tokens)"``, ``"unpriced (12,345 tokens)"``; "$0.00" only when
    nothing was used."""
    parts = [f"${c.cost_usd:,.2f}"] if c.cost_usd > 0 or not c.unpriced_tokens else []
    if c.unpriced_tokens:
        parts.append(f"unpriced ({c.unpriced_tokens:,} tokens)")
    return " + ".join(parts)


COST_CACHE_S = 30.0
"""The cost tiles re-query the hourly rollup at most this often (seconds); the overview redraws often."""
_cost_cache: dict[tuple[int, int], tuple[float, CostTotals]] = {}


def _cost(start_ms: int, end_ms: int) -> CostTotals:
    hit = _cost_cache.get((start_ms, end_ms))
    if hit is not None and time.monotonic() - hit[0] < COST_CACHE_S:
        return hit[1]
    if len(_cost_cache) > 16:
        _cost_cache.clear()
    value = queries.cost_between(start_ms, end_ms)
    _cost_cache[(start_ms, end_ms)] = (time.monotonic(), value)
    return value


def _fleet_tokens(state: FleetState, tz: usage_days.ZoneInfo | None) -> None:
    bounds = day_bounds_ms(0) if tz is None else usage_days.day_bounds_ms(tz, 0)
    now = datetime.now(tz) if tz is not None else datetime.now().astimezone()
    month_start = int(now.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp() * 1000)
    if tz is None:  # until the browser told its zone: the server's, from the cache
        today, yesterday = state.usage(None, *day_bounds_ms(0)), state.usage(None, *day_bounds_ms(-1))
    else:  # exact sums for the viewer's calendar days (any UTC offset, DST days)
        today = usage_days.fleet_total(usage_days.usage_between(*usage_days.day_bounds_ms(tz, 0)))
        yesterday = usage_days.fleet_total(usage_days.usage_between(*usage_days.day_bounds_ms(tz, -1)))
    with ui.row().classes("w-full gap-4"):
        for title, sums in (("Tokens today", today), ("Yesterday", yesterday), ("All time", state.usage(None))):
            with ui.card().classes("p-3 min-w-64"):
                ui.label(title).classes("text-xs uppercase text-gray-500")
                ui.label(tokens_h(sums.total_tokens)).classes("text-xl font-semibold").tooltip(
                    f"{sums.total_tokens:,} tokens")
                ui.label(token_breakdown(sums)).classes("text-xs text-gray-600")
        for title, cost in (("Cost today", _cost(*bounds)), ("Cost this month", _cost(month_start, bounds[1]))):
            with ui.card().classes("p-3 min-w-48"):
                ui.label(title).classes("text-xs uppercase text-gray-500")
                ui.link(cost_h(cost), "/tokens").classes("text-xl font-semibold no-underline text-black").tooltip(
                    f"${cost.cost_usd:,.6f} for {cost.priced_records:,} priced messages").props(
                    f'data-testid="{title.lower().replace(" ", "-")}"')


def render_overview(state: FleetState) -> None:
    """Build the overview into the current page."""
    with ui.row().classes("items-center w-full"):
        ui.label("Fleet overview").classes("text-2xl font-semibold")
        ui.space()
        summary = ui.row().classes("gap-2")

    viewer: dict[str, usage_days.ZoneInfo] = {}

    @ui.refreshable
    def tokens() -> None:
        _fleet_tokens(state, viewer.get("tz"))

    tokens()
    zone_note = ui.label(f"Days are in the server's time zone ({time.strftime('%Z')}).").classes(
        "text-xs text-gray-500")

    async def learn_zone() -> None:
        tz = await browser_zone()
        viewer["tz"] = tz
        zone_note.text = f"Days are in your time zone ({tz.key})."
        tokens.refresh()
        table.refresh()

    ui.timer(0.05, learn_zone, once=True)

    @ui.refreshable
    def table() -> None:
        devices = state.snapshot()
        summary.clear()
        with summary:
            online = sum(d.status == "online" for d in devices)
            ui.badge(f"{online} online", color="positive")
            ui.badge(f"{len(devices) - online} not online", color="grey")
            ui.badge(f"{len(devices)} devices", color="primary")
        if not devices:
            ui.label("No devices yet. Add one with: clawfleet-server device add NAME").classes("text-gray-500")
            return
        tz = viewer.get("tz")
        today = usage_days.usage_between(*usage_days.day_bounds_ms(tz, 0)) if tz else day_bounds_ms(0)
        with ui.grid(columns="auto 3fr 1fr 2fr 2fr 1fr 2fr 1fr 2fr 1fr").classes(
                "w-full items-center gap-x-4 gap-y-2"):
            for col in COLUMNS:
                ui.label(col).classes("text-xs uppercase text-gray-500")
            for d in devices:
                _device_row(d, state, today)

    table()
    redraw_on_change(state, table, tokens)
