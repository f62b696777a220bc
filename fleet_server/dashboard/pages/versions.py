"""Versions page (``/versions``): which OpenClaw and agent versions the fleet runs, when each device changed,
and whether a change made things worse (:mod:`fleet_server.store.sessions.drift`): per change ``old -> new``
over every device that made it, and per device, the failed-turn rate, the error-fingerprint rate (distinct
error fingerprints per 100 turns) and tokens per turn in the window before the change and after it. A
worse figure after the change is shown red. CSV export of the changes (formula-safe)."""

from __future__ import annotations

import time
from datetime import tzinfo
from html import escape as esc
from urllib.parse import quote

from nicegui import ui

from fleet_server.dashboard.pages.sessions import sub_nav
from fleet_server.dashboard.parts.format import date_time_h
from fleet_server.dashboard.parts.html_table import TABLE_END, table_start
from fleet_server.dashboard.parts.table_csv import table_csv
from fleet_server.dashboard.parts.timezone import follow_browser_zone, initial_zone, zone_note
from fleet_server.state import FleetState
from fleet_server.store.sessions import drift

FIGURES = (("failed_pct", "Failed turns", "{:.1f} %"), ("fingerprints_per_100_turns", "Error fingerprints / 100 turns",
                                                          "{:.1f}"), ("tokens_per_turn", "Tokens / turn", "{:,.0f}"))
CSV_COLUMNS = ("device", "ts", "old_version", "new_version", *(f"{side}_{k}" for side in ("before", "after") for k in (
    "turns", "failed_turns", "failed_pct", "fingerprints", "fingerprints_per_100_turns", "tokens_per_turn")))


def _figure(before: dict, after: dict, key: str, fmt: str) -> str:
    b, a = before.get(key), after.get(key)
    text = f"{'–' if b is None else fmt.format(b)} → {'–' if a is None else fmt.format(a)}"
    worse = b is not None and a is not None and a > b * 1.1 + (0.5 if key != "tokens_per_turn" else 0)
    return f'<span class="{"text-red-700 font-semibold" if worse else ""}">{esc(text)}</span>'


def _changes_html(rows: list[dict], per_device: bool, tz: tzinfo) -> str:
    head = (["Device", "When"] if per_device else ["Devices", "Last change"]) + ["Change", "Turns before / after"] + [
        f[1] for f in FIGURES]
    out = [table_start("changes-table" if per_device else "transitions-table", head)]
    for r in rows:
        first = (f'<a class="text-blue-700 underline" href="/device/{quote(r["device"])}">{esc(r["device"])}</a>'
                 if per_device else f'{r["devices"]:,}')
        when = r["ts"] if per_device else r["last_ms"]
        change = f'{esc(r["old_version"] or "(first report)")} → {esc(r["new_version"])}'
        out.append(f'<tr class="border-t"><td class="px-2 py-1">{first}</td>'
                   f'<td class="px-2 py-1 whitespace-nowrap">{esc(date_time_h(when, tz))}</td>'
                   f'<td class="px-2 py-1 whitespace-nowrap font-mono">{change}</td>'
                   f'<td class="px-2 py-1">{r["before"]["turns"]:,} / {r["after"]["turns"]:,}</td>'
                   + "".join(f'<td class="px-2 py-1 whitespace-nowrap">{_figure(r["before"], r["after"], k, fmt)}</td>'
                             for k, _, fmt in FIGURES) + "</tr>")
    return "".join(out) + TABLE_END


def render_versions(state: FleetState, kind: str = "openclaw", window_days: int = 7) -> None:
    """Build the versions page (``kind``: ``openclaw`` or ``agent``; ``window_days``: each side of a change)."""
    f = {"kind": kind if kind in drift.KINDS else "openclaw", "days": max(1, min(90, window_days))}
    viewer = {"zone": initial_zone()}
    with ui.column().classes("w-full p-4 gap-3"):
        with ui.row().classes("items-center w-full gap-3"):
            ui.label("Versions").classes("text-2xl font-semibold")
            sub_nav("Versions")
            ui.space()
            note = ui.label(zone_note(viewer["zone"])).classes("text-xs text-gray-500").mark("zone-note")
        metas = [(d.device_id, d.meta.openclaw_version if d.meta else None, d.meta.agent_version if d.meta else None)
                 for d in state.snapshot()]
        now = drift.fleet_versions(metas)
        with ui.row().classes("w-full gap-4"):
            for k, title in (("openclaw", "OpenClaw now"), ("agent", "ClawFleet agent now")):
                with ui.card().classes("p-3 gap-1 min-w-64").props(f'data-testid="now-{k}"'):
                    ui.label(title).classes("text-xs uppercase text-gray-500")
                    for v in now[k]:
                        ui.label(f"{v['version'] or 'not reported'}: {v['devices']:,} device"
                                 f"{'' if v['devices'] == 1 else 's'}").classes("text-sm")
        with ui.row().classes("items-end gap-3"):
            ui.toggle({"openclaw": "OpenClaw", "agent": "Agent"}, value=f["kind"],
                      on_change=lambda e: (f.update(kind=e.value), show())).props('dense data-testid="kind"')
            days = f["days"] if f["days"] in (1, 7, 14, 30) else 7
            ui.select({d: f"{d} days each side" for d in (1, 7, 14, 30)}, value=days, label="Window",
                      on_change=lambda e: (f.update(days=e.value), show())).classes("w-44")
            ui.button("Export CSV", on_click=lambda: export()).props('flat dense icon=download data-testid="csv"')
        box = ui.column().classes("w-full gap-3")

    def changes() -> list[dict]:
        return drift.changes(f["kind"], int(time.time() * 1000), f["days"], limit=drift.MAX_CHANGES)

    def show() -> None:
        box.clear()
        data = changes()
        with box:
            trans = drift.transitions(f["kind"], int(time.time() * 1000), f["days"])
            with ui.card().classes("w-full p-3 gap-2"):
                ui.label("Per change, all devices that made it (before → after)").classes(
                    "text-xs uppercase text-gray-500")
                if trans:
                    ui.html(_changes_html(trans, False, viewer["zone"].tz)).classes("w-full")
                else:
                    ui.label("No device has changed version yet.").classes("text-sm text-gray-500")
            with ui.card().classes("w-full p-3 gap-2"):
                ui.label("Per device, newest first").classes("text-xs uppercase text-gray-500")
                if data:
                    ui.html(_changes_html(data, True, viewer["zone"].tz)).classes("w-full")
                else:
                    ui.label("No versions reported yet.").classes("text-sm text-gray-500")

    def export() -> None:
        rows = [{"device": c["device"], "ts": c["ts"], "old_version": c["old_version"], "new_version": c["new_version"],
                 **{f"{side}_{k}": c[side][k] for side in ("before", "after") for k in (
                     "turns", "failed_turns", "failed_pct", "fingerprints", "fingerprints_per_100_turns",
                     "tokens_per_turn")}} for c in changes()]
        ui.download.content(table_csv(CSV_COLUMNS, rows), f"clawfleet-versions-{f['kind']}.csv", "text/csv")

    show()
    follow_browser_zone(viewer, show, note)
