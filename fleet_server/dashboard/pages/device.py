"""Device page (``/device/{id}``): one device's status, meta, latest sample, token totals, latest
error and the messages the server rejected from it (count, last time and last error per reason).

Reads the in-memory :class:`fleet_server.state.FleetState` plus the device's few
``RejectCount`` rows; redraws when the cache changes (checked every second).
"""

from __future__ import annotations

import time
from zoneinfo import ZoneInfo

from nicegui import app, ui

from fleet_server.auth.accounts import current_user, user_settings
from fleet_server.dashboard.pages.devices import status_badge
from fleet_server.dashboard.pages.overview.rows import STALE_ERROR_MS
from fleet_server.dashboard.pages.sessions import sessions_link
from fleet_server.dashboard.parts.agent_update import render_agent_update
from fleet_server.dashboard.parts.availability import render_availability_live
from fleet_server.dashboard.parts.charts import ChartLook, render_history
from fleet_server.dashboard.parts.format import (
    NA,
    ago_h,
    bytes_h,
    date_time_h,
    duration_h,
    pct_h,
    rate_h,
    status_words,
    token_breakdown,
)
from fleet_server.dashboard.parts.frame import ON_DARK_CHANGE
from fleet_server.dashboard.parts.live import redraw_on_change
from fleet_server.dashboard.parts.timezone import Viewer, follow_browser_zone, initial_zone, zone_note
from fleet_server.dashboard.parts.usage_view import devices_today_and_total
from fleet_server.releases.actions import ReleaseActions
from fleet_server.state import DeviceView, FleetState
from fleet_server.store.models import RejectCount
from fleet_server.store.usage.sums import UsageSums


def _fields(title: str, rows: list[tuple[str, str]]) -> None:
    with ui.card().classes("p-3 min-w-0 w-full sm:w-auto sm:min-w-72 gap-1"):
        ui.label(title).classes("text-xs uppercase text-gray-500")
        with ui.grid(columns="auto 1fr").classes("gap-x-4 gap-y-1"):
            for k, v in rows:
                ui.label(k).classes("text-sm text-gray-600")
                ui.label(v).classes("text-sm")


def _meta_rows(d: DeviceView, tz: ZoneInfo) -> list[tuple[str, str]]:
    m = d.meta
    if m is None:
        return [("", "no meta data received yet")]
    return [("Host", m.hostname), ("OS", f"{m.os} {m.os_version}".strip()), ("Arch", m.arch or "–"),
            ("CPUs", str(m.cpu_count)), ("Memory", bytes_h(m.mem_total_bytes)), ("Disk", bytes_h(m.disk_total_bytes)),
            ("Agent", m.agent_version), ("OpenClaw", m.openclaw_version or "not installed"),
            ("Agents", ", ".join(m.agents) or "–"), ("Booted", date_time_h(m.boot_time_ms, tz))]


def _telemetry_rows(d: DeviceView, tz: ZoneInfo) -> list[tuple[str, str]]:
    t = d.telemetry
    if t is None:
        return [("", "no sample received yet")]
    rows = [("Sample", f"{date_time_h(t.ts, tz)} ({ago_h(t.ts)})"), ("CPU", pct_h(t.cpu_pct)),
            ("Memory", f"{pct_h(t.mem_pct)} · {bytes_h(t.mem_used_bytes)} of {bytes_h(t.mem_total_bytes)}"),
            ("Disk", f"{pct_h(t.disk_pct)} · {bytes_h(t.disk_used_bytes)} of {bytes_h(t.disk_total_bytes)}"),
            ("Swap", pct_h(t.swap_pct)), ("Net ↓ / ↑", f"{rate_h(t.net_rx_bps)} / {rate_h(t.net_tx_bps)}"),
            ("Load", " ".join(f"{x:.2f}" for x in t.load_avg) if t.load_avg else NA),
            ("Uptime", duration_h(t.uptime_s))]
    if t.openclaw is not None:
        oc = t.openclaw
        if not oc.installed and not oc.up:
            rows.append(("OpenClaw", "not installed"))
        else:
            rows.append(("OpenClaw", ("gateway up" if oc.up else "gateway down") + (f" · port {oc.port}" if oc.port
                                                                                    else "")
                         + (f" · {oc.version}" if oc.version else "")))
    return rows


def _rejects(device_id: str, counts: dict[str, int]) -> None:
    rows = {r.reason: r for r in RejectCount.select().where(RejectCount.device == device_id)}
    with ui.card().classes("p-3 w-full gap-1"):
        ui.label("Rejected messages").classes("text-xs uppercase text-gray-500")
        if not rows and not counts:
            ui.label("none").classes("text-sm text-gray-600").mark("rejects-none")
            return
        with ui.element("div").classes("w-full overflow-x-auto"), ui.grid(columns="auto auto auto 1fr").classes(
                "gap-x-4 gap-y-1 w-full min-w-[32rem]"):
            for col in ("Reason", "Count", "Last", "Last error"):
                ui.label(col).classes("text-xs uppercase text-gray-500")
            for reason in sorted(set(rows) | set(counts)):
                r = rows.get(reason)
                ui.label(reason).classes("font-mono text-sm").mark(f"reject-{reason}")
                ui.label(str(max(counts.get(reason, 0), r.count if r else 0))).classes("text-sm")
                ui.label(ago_h(r.last_ms) if r else "–").classes("text-sm")
                ui.label(r.last_error if r else "").classes("text-sm break-all")


def _body(state: FleetState, d: DeviceView, viewer: Viewer, releases: ReleaseActions | None = None) -> None:
    tz = viewer.tz
    with ui.row().classes("items-center gap-3"):
        ui.label(d.name).classes("text-2xl font-semibold")
        status_badge(d)
        reason = status_words(d.display_status, d.status_reason)[1]
        if reason:
            ui.label(reason).classes("text-sm text-gray-600").mark("status-reason")
    ui.label(f"{d.device_id} · tags {d.tags or '–'} · key …{d.key_hint or '?'} · last seen {ago_h(d.last_seen_ms)}"
             f" · status since {date_time_h(d.status_since_ms or d.status_ms, tz)}").classes("text-sm text-gray-600")
    with ui.row().classes("w-full gap-4 items-stretch"):  # wraps: one card per line on a phone
        _fields("Machine", _meta_rows(d, tz))
        render_agent_update(d, releases)  # releases: version, last self-update, "Update agent"
        _fields("Latest sample", _telemetry_rows(d, tz))
        days, totals = devices_today_and_total(state, tz, [d.device_id])
        today, total = days.get(d.device_id, UsageSums()), totals.get(d.device_id, UsageSums())
        _fields("Tokens", [("Today", f"{today.total_tokens:,} tokens"), ("", token_breakdown(today)),
                           ("All time", f"{total.total_tokens:,} tokens"), ("", token_breakdown(total))])
    with ui.row().classes("gap-4 text-sm"):  # what the device's agents did: sessions, turns, tool calls
        ui.link("Sessions of this device", sessions_link(device=d.device_id)).mark("device-sessions")
        ui.link("most expensive first", sessions_link(device=d.device_id, sort="cost"))
        ui.link("tool calls", f"/tools?device={d.device_id}")
    with ui.card().classes("p-3 w-full gap-1"):
        ui.label("Latest error").classes("text-xs uppercase text-gray-500")
        e = d.latest_error
        if e is None:
            ui.label("none").classes("text-sm text-gray-600")
        else:
            ui.label(f"{date_time_h(e.ts, tz)} ({ago_h(e.ts)}) · {e.level} · {e.subsystem}").classes(
                "text-sm text-gray-600")
            old = time.time() * 1000 - e.ts > STALE_ERROR_MS
            ui.label(e.message[:2000]).classes("text-sm whitespace-pre-wrap break-all " + (
                "text-gray-500" if old else "text-red-700"))
            ui.link("all logs of this device", f"/logs?device={d.device_id}").classes("text-xs")
    _rejects(d.device_id, d.rejects)


def render_device(state: FleetState, device_id: str, releases: ReleaseActions | None = None) -> None:
    """Build the page of ``device_id`` into the current page (a notice when there is no such device);
    ``releases``: the server's agent updates (None: no update button)."""
    with ui.row().classes("px-4 pt-2 gap-4"):
        ui.link("← Devices", "/devices")
        user = current_user()
        if user is not None and user.is_admin:
            ui.label("rename, rotate, revoke or delete on the devices page").classes("text-xs text-gray-500")

    viewer = {"zone": initial_zone()}
    redraws: list = []

    def dark() -> bool:
        who = current_user()
        return bool(who and user_settings(who.username).dark_mode)

    def redraw_all() -> None:
        body.refresh()
        for redraw in redraws:
            redraw()

    @ui.refreshable
    def body() -> None:
        d = state.get(device_id)
        if d is None:
            ui.label(f"No device {device_id!r}. It may have been deleted.").classes("text-gray-600")
            ui.link("Back to the fleet overview", "/").mark("go-overview")
            return
        _body(state, d, viewer["zone"], releases)

    with ui.column().classes("w-full p-4 gap-3"):
        note = ui.label(zone_note(viewer["zone"])).classes("text-xs text-gray-500").mark("zone-note")
        body()
        if state.get(device_id) is not None:  # history: charts and availability (not redrawn with the body)
            charts = render_history(state, device_id, lambda: ChartLook(viewer["zone"].tz.key, dark()))
            redraws.append(charts)
            app.storage.client.setdefault(ON_DARK_CHANGE, []).append(charts)
            redraws.append(render_availability_live(device_id, lambda: viewer["zone"].tz))
    redraw_on_change(state, body, device_id=device_id)
    follow_browser_zone(viewer, redraw_all, note)
