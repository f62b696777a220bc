"""Device-page availability: uptime over 24 h / 7 d / 30 d and the status history
("offline 14:02–14:31, 29 min, last will"), in the viewer's time zone."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

from nicegui import ui

from fleet_server.dashboard.parts.format import STATUS_COLORS, duration_h
from fleet_server.store.history.availability import Period, status_periods, uptime
from shared.clock import now_ms

UPTIME_WINDOWS = (("24 h", 86_400_000), ("7 d", 7 * 86_400_000), ("30 d", 30 * 86_400_000))
HISTORY_ROWS = 50


def _clock(ts_ms: int, tz: ZoneInfo, ref: datetime) -> str:
    t = datetime.fromtimestamp(ts_ms / 1000, tz)
    return t.strftime("%H:%M") if t.date() == ref.date() else t.strftime("%b %d %H:%M")


def period_text(p: Period, tz: ZoneInfo, now: int) -> str:
    """``"offline 14:02–14:31, 29m 0s, last will"``; an ongoing period ends with ``"now"``.

    Times are wall-clock in ``tz``; a time on another day than the period's start carries its date.
    """
    start = datetime.fromtimestamp(p.start_ms / 1000, tz)
    end = _clock(p.end_ms, tz, start) if p.end_ms is not None else "now"
    text = f"{p.state} {_clock(p.start_ms, tz, datetime.fromtimestamp(now / 1000, tz))}–{end}, " \
           f"{duration_h(p.duration_ms(now) / 1000)}"
    if p.reason:
        text += f", {p.reason.replace('-', ' ')}"
    return text


def render_availability(device_id: str, tz: ZoneInfo) -> None:
    """Uptime figures and the newest status periods (last 30 days) into the current page."""
    now = now_ms()
    month = status_periods(device_id, now - UPTIME_WINDOWS[-1][1], now)
    with ui.card().classes("p-3 w-full gap-1").mark("availability"):
        ui.label(f"Availability ({tz.key})").classes("text-xs uppercase text-gray-500")
        with ui.row().classes("gap-6"):
            for label, span in UPTIME_WINDOWS:
                pct, known = uptime(month, now - span, now)
                with ui.column().classes("gap-0"):
                    ui.label(f"uptime {label}").classes("text-xs text-gray-500")
                    ui.label("–" if pct is None else f"{pct:.2f}%").classes("text-lg font-semibold").mark(
                        f"uptime-{label.replace(' ', '')}")
                    if pct is not None and known < span - 60_000:  # a younger device: say over how long
                        ui.label(f"over {duration_h(known / 1000)}, since its first status").classes(
                            "text-xs text-gray-500").mark(
                            f"uptime-known-{label.replace(' ', '')}")
        if not month:
            ui.label("no status changes recorded in the last 30 days").classes("text-sm text-gray-600")
            return
        with ui.column().classes("gap-0"):
            for p in list(reversed(month))[:HISTORY_ROWS]:
                with ui.row().classes("items-center gap-2"):
                    ui.badge(p.state, color=STATUS_COLORS.get(p.state, "grey")).classes("text-xs")
                    ui.label(period_text(p, tz, now)).classes("text-sm").mark("status-period")


def render_availability_live(device_id: str, tz: Callable[[], ZoneInfo],
                             refresh_s: float = 30.0) -> Callable[[], None]:
    """:func:`render_availability` in the viewer's zone (``tz()``, asked at every draw), redrawn every
    ``refresh_s``. Returns the redraw (call it when the page's zone changed)."""
    box = ui.column().classes("w-full")

    def draw() -> None:
        box.clear()
        with box:
            render_availability(device_id, tz())

    draw()
    ui.timer(refresh_s, draw)
    return draw
