"""Device-page trend charts (ECharts via ``ui.echart``): CPU, memory, disk, swap, network, load and
tokens per hour over 1 h / 6 h / 24 h / 7 d / 30 d.

Data comes from :func:`fleet_server.store.history.samples.samples_for_window` (which picks the tier) and
:func:`fleet_server.store.history.samples.tokens_per_hour`. The time axis is an ECharts ``time`` axis
whose labels and tooltips are wall-clock times in the viewer's zone (``Intl.DateTimeFormat`` with
``timeZone``), so a saved zone other than the browser's is honoured too. A silence longer than the tier allows (3 sample
intervals raw, 2 buckets in a rollup) becomes a ``null`` point, so offline periods are gaps, and
offline / shutdown / sleeping periods from the status history are shaded bands. 1 h and 6 h
charts redraw every :data:`LIVE_S` seconds.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from nicegui import ui

from fleet_server.state import DeviceView, FleetState
from fleet_server.store.history.availability import Period, status_periods
from fleet_server.store.history.samples import TIER_WIDTH_MS, HistoryRow, samples_for_window, tokens_per_hour
from shared.clock import now_ms

WINDOWS = {"1h": 3_600_000, "6h": 6 * 3_600_000, "24h": 24 * 3_600_000, "7d": 7 * 86_400_000, "30d": 30 * 86_400_000}
"""Chart windows (label -> length in ms)."""
LIVE_WINDOWS = ("1h", "6h")
LIVE_S = 10.0
BAND_COLORS = {"offline": "rgba(220, 38, 38, 0.12)", "shutdown": "rgba(107, 114, 128, 0.15)",
               "sleeping": "rgba(217, 119, 6, 0.14)"}
"""Shading of non-online periods (red, grey, amber)."""
TIER_NOTES = {"raw": "raw samples", "5m": "5-minute averages and maxima", "1h": "1-hour averages and maxima"}


@dataclass(frozen=True)
class ChartSpec:
    """One chart: ``key`` (test id), title, unit on the axis, and ``(metric, series label)`` pairs."""

    key: str
    title: str
    unit: str
    series: tuple[tuple[str, str], ...]


CHARTS = (
    ChartSpec("cpu", "CPU", "%", (("cpu_pct", "CPU"),)),
    ChartSpec("mem", "Memory", "%", (("mem_pct", "memory"),)),
    ChartSpec("disk", "Disk", "%", (("disk_pct", "disk"),)),
    ChartSpec("swap", "Swap", "%", (("swap_pct", "swap"),)),
    ChartSpec("net", "Network", "B/s", (("net_rx_bps", "↓ received"), ("net_tx_bps", "↑ sent"))),
    ChartSpec("load", "Load (1 min)", "", (("load1", "load"),)),
)

# value formatting in the browser: bytes/s scaled (KiB/s, MiB/s …), others with one decimal
_JS_FMT = ("(v, u) => { if (v === null || v === undefined) return '–';"
           " if (u === 'B/s') { const k = ['B/s','KiB/s','MiB/s','GiB/s']; let i = 0;"
           " while (Math.abs(v) >= 1024 && i < 3) { v /= 1024; i++; } return v.toFixed(i ? 1 : 0) + ' ' + k[i]; }"
           " if (u === 'tokens') return Math.round(v).toLocaleString() + ' tokens';"
           " return v.toFixed(u === '%' ? 1 : 2) + (u ? ' ' + u : ''); }")


def _tooltip(unit: str, tz: str) -> str:
    return ("(ps) => { const f = " + _JS_FMT + "; if (!ps.length) return '';"
            " const t = new Date(ps[0].value[0]).toLocaleString(undefined, {timeZone: " + json.dumps(tz) + "});"
            " return t + ps.map(p => '<br/>' + p.marker + p.seriesName + ': '"
            " + f(p.value[1], '" + unit + "')).join(''); }")


def _time_label(tz: str, span_ms: int) -> str:
    """JS formatter of the time axis: ``14:30`` in ``tz``, with the date for windows over a day."""
    parts = "{month: 'short', day: 'numeric'}" if span_ms > 86_400_000 else "{hour: '2-digit', minute: '2-digit'}"
    return ("(v) => new Intl.DateTimeFormat(undefined, Object.assign({timeZone: " + json.dumps(tz) + "}, "
            + parts + ")).format(new Date(v))")


def _axis_label(unit: str) -> str:
    if unit == "%":
        return "(v) => v.toFixed(0) + ' %'"
    return "(v) => { const f = " + _JS_FMT + "; return f(v, '" + unit + "'); }"


def gap_ms(tier: str, interval_s: float | None) -> int:
    """Longest step between two points that is still drawn as a line: 3 sample intervals for raw
    samples (the stale-device grace), 2 bucket widths for a rollup tier."""
    if tier == "raw":
        return int(3 * (interval_s or 30.0) * 1000)
    return 2 * TIER_WIDTH_MS[tier]


def series_points(rows: list[HistoryRow], metric: str, max_step_ms: int, field: str = "avg") -> list[list]:
    """``[[ts_ms, value], …]`` with a ``[ts_ms, None]`` inserted inside every gap > ``max_step_ms``."""
    out: list[list] = []
    prev = None
    for r in rows:
        if prev is not None and r.ts_ms - prev > max_step_ms:
            out.append([prev + 1, None])
        out.append([r.ts_ms, getattr(r, field)[metric]])
        prev = r.ts_ms
    return out


def status_bands(periods: list[Period], start_ms: int, end_ms: int) -> list[list[dict]]:
    """ECharts ``markArea`` data: one shaded band per offline / shutdown / sleeping period."""
    bands = []
    for p in periods:
        if p.state not in BAND_COLORS:
            continue
        lo, hi = max(p.start_ms, start_ms), min(p.end_ms if p.end_ms is not None else end_ms, end_ms)
        if hi > lo:
            bands.append([{"xAxis": lo, "name": p.state, "itemStyle": {"color": BAND_COLORS[p.state]}},
                          {"xAxis": hi}])
    return bands


@dataclass(frozen=True)
class ChartLook:
    """How the charts of one page are drawn: the viewer's zone (IANA name) and dark mode."""

    tz: str = "UTC"
    dark: bool = False


def _base(title: str, unit: str, start_ms: int, end_ms: int, look: ChartLook = ChartLook()) -> dict:
    text = "#e5e7eb" if look.dark else "#1f2937"  # canvas text: no page CSS reaches it
    return {
        "animation": False,
        "title": {"text": title, "left": 0, "textStyle": {"fontSize": 13, "fontWeight": "normal", "color": text}},
        "grid": {"left": 64, "right": 12, "top": 36, "bottom": 28},
        "legend": {"right": 0, "top": 0, "textStyle": {"fontSize": 11, "color": text}},
        "tooltip": {"trigger": "axis", "confine": True, ":formatter": _tooltip(unit, look.tz)},
        "xAxis": {"type": "time", "min": start_ms, "max": end_ms, "splitNumber": 4,
                  "axisLabel": {"hideOverlap": True, ":formatter": _time_label(look.tz, end_ms - start_ms)}},
        "yAxis": {"type": "value", "axisLabel": {":formatter": _axis_label(unit)},  # labels carry the unit
                  **({"min": 0, "max": 100} if unit == "%" else {})},
    }


def chart_options(spec: ChartSpec, tier: str, rows: list[HistoryRow], bands: list, start_ms: int, end_ms: int,
                  interval_s: float | None, look: ChartLook = ChartLook()) -> dict:
    """ECharts options of one metric chart (average per point; the maximum too for rollup tiers)."""
    opts = _base(spec.title, spec.unit, start_ms, end_ms, look)
    step = gap_ms(tier, interval_s)
    series = []
    for metric, label in spec.series:
        series.append({"type": "line", "name": label, "showSymbol": False, "connectNulls": False,
                       "data": series_points(rows, metric, step), "lineStyle": {"width": 1.5}})
        if tier != "raw" and spec.key in ("cpu", "net"):
            series.append({"type": "line", "name": f"{label} max", "showSymbol": False, "connectNulls": False,
                           "data": series_points(rows, metric, step, "max"),
                           "lineStyle": {"width": 1, "type": "dashed", "opacity": 0.6}})
    if series:
        series[0]["markArea"] = {"silent": True, "label": {"show": False}, "data": bands}
    opts["series"] = series
    return opts


def tokens_options(hours: list[tuple[int, int]], bands: list, start_ms: int, end_ms: int,
                   look: ChartLook = ChartLook()) -> dict:
    """ECharts options of the tokens-per-hour bar chart (UTC hour buckets)."""
    opts = _base("Tokens per hour", "tokens", start_ms, end_ms, look)
    opts["yAxis"]["min"] = 0
    opts["series"] = [{"type": "bar", "name": "tokens", "barMaxWidth": 12, "data": [[h, t] for h, t in hours],
                       "markArea": {"silent": True, "label": {"show": False}, "data": bands}}]
    return opts


def window_options(device: DeviceView, window: str, end_ms: int | None = None,
                   look: ChartLook = ChartLook()) -> tuple[str, dict[str, dict]]:
    """Every chart's options for one window: ``(tier, {chart key: options})``."""
    end = end_ms or now_ms()
    start = end - WINDOWS[window]
    tier, rows = samples_for_window(device.device_id, start, end)
    bands = status_bands(status_periods(device.device_id, start, end), start, end)
    interval = device.meta.interval_s if device.meta is not None else None
    out = {spec.key: chart_options(spec, tier, rows, bands, start, end, interval, look) for spec in CHARTS}
    out["tokens"] = tokens_options(tokens_per_hour(device.device_id, start, end), bands, start, end, look)
    return tier, out


def first_window(created_ms: int | None, now: int | None = None) -> str:
    """The window a device page opens on: the shortest that is not mostly empty for a young device
    (1 h for a device added less than 2 h ago, 6 h below 12 h), else 24 h."""
    age = (now or now_ms()) - created_ms if created_ms else None
    if age is not None and age < 2 * 3_600_000:
        return "1h"
    if age is not None and age < 12 * 3_600_000:
        return "6h"
    return "24h"


def render_history(state: FleetState, device_id: str, look: Callable[[], ChartLook] = ChartLook) -> Callable[[], None]:
    """The window switch and the charts, into the current page (redrawn live for 1 h / 6 h), drawn as
    ``look()`` says (asked at every draw). Returns the redraw (call it when the look changed)."""
    device = state.get(device_id)
    chosen = {"window": first_window(device.created_ms if device else None)}
    charts: dict[str, ui.echart] = {}

    def draw() -> None:
        device = state.get(device_id)
        if device is None:
            return
        tier, options = window_options(device, chosen["window"], look=look())
        note.text = TIER_NOTES[tier] + " · shaded: offline (red), shut down (grey), sleeping (amber)"
        for key, opts in options.items():
            if key in charts:
                charts[key].options.clear()
                charts[key].options.update(opts)
                charts[key].update()

    def switch(e: object) -> None:
        chosen["window"] = e.value  # type: ignore[attr-defined]
        draw()

    def live() -> None:
        if chosen["window"] in LIVE_WINDOWS:
            draw()

    with ui.card().classes("p-3 w-full gap-2").mark("history"):
        with ui.row().classes("items-center w-full gap-3"):
            ui.label("History").classes("text-xs uppercase text-gray-500")
            ui.toggle(list(WINDOWS), value=chosen["window"], on_change=switch).props(
                'dense no-caps data-testid="history-window"').mark("history-window")
            note = ui.label("").classes("text-xs text-gray-500")
        with ui.grid().classes("w-full gap-3 grid-cols-1 lg:grid-cols-2"):
            for key in [s.key for s in CHARTS] + ["tokens"]:
                charts[key] = ui.echart({}).classes("w-full h-56").props(f'data-testid="chart-{key}"')
    draw()
    ui.timer(LIVE_S, live)
    return draw
