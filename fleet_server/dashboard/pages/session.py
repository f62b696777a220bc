"""One session's page (``/session/{device}/{agent}/{session id}``): what the session is, its sums, and its
run timeline -- every turn as a bar from its user message to its final reply (green ok, red failed, amber
running, grey aborted), then a table of the turns with model, stop reason, retries, error messages, tokens,
cost, their tool calls (name, outcome, duration) and the error that ended a failed one. CSV export of the
turns. The newest :data:`TIMELINE_MAX` turns are shown.
"""

from __future__ import annotations

from datetime import tzinfo
from html import escape as esc
from urllib.parse import quote

from nicegui import ui

from fleet_server.dashboard.pages.sessions import cost_h, session_name, sessions_link, sub_nav
from fleet_server.dashboard.parts.format import date_time_h, duration_h, tokens_h
from fleet_server.dashboard.parts.html_table import TABLE_END, table_start
from fleet_server.dashboard.parts.table_csv import table_csv
from fleet_server.dashboard.parts.timezone import follow_browser_zone, initial_zone, zone_note
from fleet_server.store.sessions import queries

TIMELINE_MAX = 500
STATUS_COLORS = {"ok": "#16a34a", "failed": "#dc2626", "running": "#d97706", "aborted": "#6b7280"}
RUN_CSV = ("device", "agent_id", "session_id", "id", "run_id", "started_ms", "ended_ms", "duration_s", "status",
           "stop_reason", "provider", "model", "messages", "error_messages", "retries", "tool_calls", "tool_errors",
           "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "total_tokens", "cost", "error")


def timeline_options(runs: list[dict], tz: tzinfo) -> dict:
    """ECharts options of the run timeline: one horizontal bar per turn on a seconds axis from the first
    turn's start (a transparent bar carries each one to its start), coloured by status."""
    t0 = runs[0]["started_ms"] if runs else 0
    span = max((r["ended_ms"] - t0 for r in runs), default=0) / 1000
    shortest = max(0.05, span / 200)  # a sub-second turn still shows as a bar
    labels = [f"#{i + 1} {date_time_h(r['started_ms'], tz, '%H:%M:%S')}" for i, r in enumerate(runs)]
    return {
        "animation": False,
        "tooltip": {"trigger": "item"},
        "grid": {"left": 110, "right": 24, "top": 8, "bottom": 36},
        "xAxis": {"type": "value", "name": "seconds since the first turn", "nameLocation": "middle", "nameGap": 24},
        "yAxis": {"type": "category", "data": labels, "inverse": True, "axisLabel": {"fontSize": 10}},
        "series": [
            {"type": "bar", "stack": "t", "silent": True, "itemStyle": {"color": "transparent"},
             "data": [round((r["started_ms"] - t0) / 1000, 3) for r in runs]},
            {"type": "bar", "stack": "t", "name": "turn", "barMinWidth": 3,
             "data": [{"value": max(round(r["duration_s"], 3), shortest),
                       "name": f"{r['status']} · {r['model'] or '?'} · {tokens_h(r['total_tokens'])} tokens"
                               + (f" · {r['error'][:80]}" if r["error"] else ""),
                       "itemStyle": {"color": STATUS_COLORS.get(r["status"], "#6b7280")}} for r in runs]},
        ],
    }


def _runs_html(runs: list[dict], tz: tzinfo) -> str:
    head = ("#", "Started", "Duration", "Status", "Model", "Stop reason", "Retries", "Error msgs", "Tools",
            "Tokens", "Cost", "Error")
    out = [table_start("runs-table", head)]
    for i, r in enumerate(runs):
        color = STATUS_COLORS.get(r["status"], "#6b7280")
        tools = " ".join(f'<span class="whitespace-nowrap" title="{esc(date_time_h(t["ts"], tz))}">'
                         f'{esc(t["tool"])}{"✗" if t["error"] else "✓" if t["error"] is False else "?"}'
                         f'{" " + esc(duration_h(t["duration_s"])) if t["duration_s"] is not None else ""}</span>'
                         for t in r["tools"][:30])
        failed_tools = f"({r['tool_errors']} failed) " if r["tool_errors"] else ""
        cost = cost_h(r["cost"], r["total_tokens"] if r["cost"] is None else 0)
        out.append(
            f'<tr class="border-t align-top" data-testid="run-row"><td class="px-2 py-1">{i + 1}</td>'
            f'<td class="px-2 py-1 whitespace-nowrap">{esc(date_time_h(r["started_ms"], tz))}</td>'
            f'<td class="px-2 py-1 whitespace-nowrap">{esc(duration_h(r["duration_s"]))}</td>'
            f'<td class="px-2 py-1 font-semibold" style="color:{color}">{esc(r["status"])}</td>'
            f'<td class="px-2 py-1 text-xs break-all">{esc(r["provider"] + "/" if r["provider"] else "")}'
            f'{esc(r["model"])}</td><td class="px-2 py-1">{esc(r["stop_reason"] or "–")}</td>'
            f'<td class="px-2 py-1 text-right">{r["retries"]}</td>'
            f'<td class="px-2 py-1 text-right">{r["error_messages"]}</td>'
            f'<td class="px-2 py-1 text-xs">{r["tool_calls"]} {failed_tools}{tools}</td>'
            f'<td class="px-2 py-1 whitespace-nowrap" title="{r["total_tokens"]:,}">'
            f'{esc(tokens_h(r["total_tokens"]))}</td><td class="px-2 py-1 whitespace-nowrap">{esc(cost)}</td>'
            f'<td class="px-2 py-1 text-xs text-red-700 break-all">{esc(r["error"][:300])}</td></tr>')
    out.append(TABLE_END)
    return "".join(out)


def _facts(s: dict, tz: tzinfo) -> list[tuple[str, str]]:
    return [("Session key", s["session_key"] or "–"), ("Session id", s["session_id"]), ("Label", s["label"] or "–"),
            ("Channel", s["channel"] or "–"), ("OpenClaw status", s["status"] or "–"),
            ("First activity", date_time_h(s["first_ms"], tz)), ("Last activity", date_time_h(s["last_ms"], tz)),
            ("Models", s["models"].replace(",", ", ") or "–"),
            ("Turns", f"{s['turns']:,} ({s['failed_turns']:,} failed; {s['error_messages']:,} error messages, "
                      f"{s['retries']:,} retries)"),
            ("Tool calls", f"{s['tool_calls']:,} ({s['tool_errors']:,} failed)"),
            ("Tokens", f"{s['total_tokens']:,} (input {s['input_tokens']:,}, output {s['output_tokens']:,}, cache read "
                       f"{s['cache_read_tokens']:,}, cache write {s['cache_write_tokens']:,})"),
            ("Cost", cost_h(s["cost"], s["unpriced_tokens"])), ("Latest error", s["latest_error"] or "none")]


def render_session(device: str, agent_id: str, session_id: str) -> None:
    """Build one session's page (a notice when the session is not known); times in the viewer's zone."""
    viewer = {"zone": initial_zone()}
    with ui.column().classes("w-full p-4 gap-3"):
        with ui.row().classes("items-center gap-4 w-full"):
            ui.link("← Sessions", sessions_link(device=device))
            sub_nav("")
            ui.space()
            note = ui.label(zone_note(viewer["zone"])).classes("text-xs text-gray-500").mark("zone-note")
        body = ui.column().classes("w-full gap-3")

    def draw() -> None:
        body.clear()
        with body:
            _body(device, agent_id, session_id, viewer["zone"].tz)

    draw()
    follow_browser_zone(viewer, draw, note)


def _body(device: str, agent_id: str, session_id: str, tz: tzinfo) -> None:
    """The page body (drawn again when the viewer's zone becomes known)."""
    s = queries.session(device, agent_id, session_id)
    if s is None:
        ui.label(f"No session {session_id!r} of agent {agent_id!r} on {device!r}.").classes("text-gray-600")
        return
    ui.label(session_name(s)).classes("text-2xl font-semibold break-all")
    with ui.row().classes("gap-2 text-sm"):
        ui.link(device, f"/device/{quote(device)}")
        ui.label(f"agent {agent_id}").classes("text-gray-600")
    with ui.card().classes("p-3 w-full gap-1"):
        with ui.grid(columns="auto 1fr").classes("gap-x-4 gap-y-1"):
            for k, v in _facts(s, tz):
                ui.label(k).classes("text-sm text-gray-600")
                ui.label(v).classes("text-sm break-all")
    runs = queries.session_timeline(device, agent_id, session_id, TIMELINE_MAX)
    with ui.card().classes("p-3 w-full gap-2"):
        with ui.row().classes("items-center w-full"):
            ui.label(f"Run timeline · {len(runs)} turns" + (" (the newest)" if len(runs) == TIMELINE_MAX else "")
                     ).classes("text-xs uppercase text-gray-500")
            ui.space()
            ui.button("Export CSV", on_click=lambda: ui.download.content(
                table_csv(RUN_CSV, runs), f"clawfleet-runs-{session_id[:8]}.csv", "text/csv")).props(
                'flat dense icon=download data-testid="runs-csv"')
        if runs:
            ui.echart(timeline_options(runs, tz)).classes("w-full").style(
                f"height: {min(900, 60 + 22 * len(runs))}px").props('data-testid="run-timeline"')
            ui.html(_runs_html(runs, tz)).classes("w-full")
        else:
            ui.label("No turns stored for this session (its agent may predate run reporting).").classes(
                "text-sm text-gray-500")
