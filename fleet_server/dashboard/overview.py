"""Fleet overview page (``/``): one row per device with a status pill and the latest sample.

Reads only the in-memory :class:`fleet_server.state.FleetState`; redraws when its version
changes (checked every second), so the page updates live without a reload.
"""

from __future__ import annotations

from nicegui import ui

from fleet_server.dashboard.format import STATUS_COLORS, ago_h, bytes_h, duration_h, pct_h, rate_h
from fleet_server.state import DeviceView, FleetState

COLUMNS = ("Status", "Device", "CPU", "Memory", "Disk", "Swap", "Net ↓ / ↑", "Uptime", "Last seen")


def status_pill(status: str) -> ui.badge:
    """A colored badge for a device status."""
    return ui.badge(status, color=STATUS_COLORS.get(status, "grey")).classes("text-sm px-2").props(
        f'data-testid="status-{status}"')


def _device_row(d: DeviceView) -> None:
    t, m = d.telemetry, d.meta
    status_pill(d.status).tooltip(d.status_reason or d.status)
    with ui.column().classes("gap-0"):
        ui.label(d.name).classes("font-medium")
        sub = f"{d.device_id} · {m.os} {m.arch}" if m else d.device_id
        ui.label(sub).classes("text-xs text-gray-500")
    if t is None:
        for _ in range(len(COLUMNS) - 3):
            ui.label("–")
    else:
        ui.label(pct_h(t.cpu_pct))
        ui.label(f"{pct_h(t.mem_pct)} of {bytes_h(t.mem_total_bytes)}")
        ui.label(f"{pct_h(t.disk_pct)} of {bytes_h(t.disk_total_bytes)}")
        ui.label(pct_h(t.swap_pct))
        ui.label(f"{rate_h(t.net_rx_bps)} / {rate_h(t.net_tx_bps)}")
        ui.label(duration_h(t.uptime_s))
    ui.label(ago_h(d.last_seen_ms))


def render_overview(state: FleetState) -> None:
    """Build the overview into the current page."""
    with ui.row().classes("items-center w-full"):
        ui.label("Fleet overview").classes("text-2xl font-semibold")
        ui.space()
        summary = ui.row().classes("gap-2")

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
        with ui.grid(columns="auto 2fr 1fr 2fr 2fr 1fr 2fr 1fr 1fr").classes("w-full items-center gap-x-4 gap-y-2"):
            for col in COLUMNS:
                ui.label(col).classes("text-xs uppercase text-gray-500")
            for d in devices:
                _device_row(d)

    table()
    seen = {"version": state.version, "tick": 0}

    def refresh() -> None:
        seen["tick"] += 1
        # redraw on change, and every 10 s anyway so "last seen" stays true
        if state.version != seen["version"] or seen["tick"] % 10 == 0:
            seen["version"] = state.version
            table.refresh()

    ui.timer(1.0, refresh)
