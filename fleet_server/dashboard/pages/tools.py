"""Tools page (``/tools``): tool calls per tool -- "which tool fails most" -- for the fleet, a device, or
per device and agent: calls, errors, error rate of the answered calls, calls with no result seen, average
and longest duration, last call. Most failing first. CSV export (formula-safe)."""

from __future__ import annotations

import time
from html import escape as esc

from nicegui import ui

from fleet_server.dashboard.pages.sessions import RANGES, sub_nav
from fleet_server.dashboard.parts.format import ago_h, duration_h
from fleet_server.dashboard.parts.html_table import TABLE_END, table_start
from fleet_server.dashboard.parts.table_csv import table_csv
from fleet_server.state import FleetState
from fleet_server.store.sessions import queries

GROUPS = {"": "per tool", "device": "per tool and device", "agent": "per tool, device and agent"}
CSV_COLUMNS = ("tool", "device", "agent_id", "calls", "errors", "error_pct", "unanswered", "avg_duration_s",
               "max_duration_s", "last_ms")


def _table_html(rows: list[dict], by: str) -> str:
    head = ["Tool"] + (["Device"] if by else []) + (["Agent"] if by == "agent" else []) + [
        "Calls", "Errors", "Error rate", "No result", "Avg", "Longest", "Last call"]
    out = [table_start("tools-table", head)]
    for r in rows:
        keys = [r["tool"]] + ([r["device"]] if by else []) + ([r["agent_id"]] if by == "agent" else [])
        rate = "–" if r["error_pct"] is None else f"{r['error_pct']:.1f} %"
        out.append('<tr class="border-t" data-testid="tool-row">'
                   + "".join(f'<td class="px-2 py-1 break-all">{esc(k)}</td>' for k in keys)
                   + f'<td class="px-2 py-1 text-right">{r["calls"]:,}</td>'
                   f'<td class="px-2 py-1 text-right {"text-red-700 font-semibold" if r["errors"] else ""}">'
                   f'{r["errors"]:,}</td><td class="px-2 py-1 text-right">{rate}</td>'
                   f'<td class="px-2 py-1 text-right">{r["unanswered"]:,}</td>'
                   f'<td class="px-2 py-1">{esc(duration_h(r["avg_duration_s"]))}</td>'
                   f'<td class="px-2 py-1">{esc(duration_h(r["max_duration_s"]))}</td>'
                   f'<td class="px-2 py-1 whitespace-nowrap">{esc(ago_h(r["last_ms"]))}</td></tr>')
    return "".join(out) + TABLE_END


def render_tools(state: FleetState, device: str = "", range_: str = "7d", by: str = "") -> None:
    """Build the tools page; the arguments are the initial filters."""
    f = {"device": device or None, "range": range_ if range_ in RANGES else "7d", "by": by if by in GROUPS else ""}
    with ui.column().classes("w-full p-4 gap-3"):
        with ui.row().classes("items-center w-full gap-3"):
            ui.label("Tool calls").classes("text-2xl font-semibold")
            sub_nav("Tools")
        with ui.row().classes("items-end gap-3 w-full"):
            dev = ui.select({"": "all devices", **{d.device_id: d.name for d in state.snapshot()}},
                            value=f["device"] or "", label="Device").classes("w-48")
            rng = ui.select({k: ("all time" if k == "all" else f"last {k}") for k in RANGES}, value=f["range"],
                            label="Time").classes("w-32")
            grp = ui.select(GROUPS, value=f["by"], label="Rows").classes("w-56")
            ui.button("Export CSV", on_click=lambda: export()).props('flat dense icon=download data-testid="csv"')
        box = ui.column().classes("w-full")

    def rows() -> list[dict]:
        secs = RANGES.get(f["range"])
        since = None if secs is None else int((time.time() - secs) * 1000)
        by_keys = () if not f["by"] else (f["by"],)
        return queries.tool_summary(queries.ToolFilter(device=f["device"], since_ms=since), by_keys, 500)

    def show() -> None:
        box.clear()
        with box:
            data = rows()
            if data:
                worst = next((r for r in data if r["errors"]), None)
                if worst:
                    ui.label(f"Fails most: {worst['tool']} ({worst['errors']:,} of {worst['calls']:,} calls)").classes(
                        "text-sm text-red-700").props('data-testid="fails-most"')
                ui.html(_table_html(data, f["by"])).classes("w-full")
            else:
                ui.label("No tool calls in this range.").classes("text-gray-500")

    def export() -> None:
        ui.download.content(table_csv(CSV_COLUMNS, rows()), "clawfleet-tools.csv", "text/csv")

    for sel, key in ((dev, "device"), (rng, "range"), (grp, "by")):
        sel.on_value_change(lambda e, key=key: (f.update({key: e.value or ("" if key == "by" else None)}), show()))
    show()
