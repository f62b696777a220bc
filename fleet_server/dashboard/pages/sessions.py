"""Sessions page (``/sessions``): every OpenClaw session of the fleet, per device and agent.

Each row: session key (or label, or id), device and agent, channel, models, first and last activity,
turns, failed turns, error messages, tokens by type, cost and the latest error; a click opens the session
with its run timeline (:mod:`.session`). Filters: device, agent, model, status (OpenClaw's, or "with failed
turns"), activity range, text (key, label or id); sortable by newest activity, cost, tokens, turns or failed
turns; keyset paging (:mod:`fleet_server.store.sessions.queries`). Above the list: the most expensive
sessions of the range (runs started in it). CSV export of the filtered list (formula-safe).
"""

from __future__ import annotations

import time
from datetime import tzinfo
from html import escape as esc
from urllib.parse import quote, urlencode

from nicegui import run, ui

from fleet_server.dashboard.parts.format import ago_h, date_time_h, tokens_h, usd_h
from fleet_server.dashboard.parts.html_table import TABLE_END, table_start
from fleet_server.dashboard.parts.table_csv import table_csv
from fleet_server.dashboard.parts.timezone import follow_browser_zone, initial_zone, zone_note
from fleet_server.state import FleetState
from fleet_server.store.sessions import queries
from fleet_server.store.sql import QueryError

PAGE_SIZE = 50
CSV_MAX_ROWS = 10_000
TOP_CACHE_S = 30.0
"""The most expensive sessions of a range are computed again after this long (seconds)."""
_top_cache: dict[tuple, tuple[float, list[dict]]] = {}
RANGES = {"24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400, "all": None}
SORTS = {"last": "newest activity", "cost": "cost", "tokens": "tokens", "turns": "turns", "failed": "failed turns",
         "first": "first activity"}
STATUSES = {"": "any status", "has-failed-turns": "with failed turns", **{s: s for s in queries.SESSION_STATUSES}}
CSV_COLUMNS = ("device", "agent_id", "session_id", "session_key", "label", "channel", "status", "models", "first_ms",
               "last_ms", "turns", "failed_turns", "error_messages", "retries", "tool_calls", "tool_errors",
               "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "total_tokens", "cost",
               "unpriced_tokens", "latest_error")


def session_href(device: str, agent_id: str, session_id: str) -> str:
    """URL of one session's page."""
    return f"/session/{quote(device, safe='')}/{quote(agent_id, safe='')}/{quote(session_id, safe='')}"


def session_name(r: dict) -> str:
    """What a session is called: its key, else its label, else the first 8 characters of its id."""
    return r.get("session_key") or r.get("label") or r["session_id"][:8]


def cost_h(cost: float | None, unpriced: int = 0) -> str:
    """``"$1.23"``, ``"unpriced"`` (tokens without a price; never $0) or ``"$1.23 + unpriced"``."""
    if cost is None:
        return "unpriced" if unpriced else "–"
    return usd_h(cost) + (" + unpriced" if unpriced and cost else "")


def _rows_html(rows: list[dict], tz: tzinfo) -> str:
    """The page's rows as one HTML table (every field escaped; one element for the whole page)."""
    head = ("Session", "Device · agent", "Channel", "Models", "First", "Last", "Turns", "Failed", "Errors",
            "Tokens (in / out / cache r / w)", "Cost", "Latest error")
    out = [table_start("sessions-table", head)]
    for r in rows:
        failed = f'<span class="text-red-700 font-semibold">{r["failed_turns"]:,}</span>' if r["failed_turns"] else "0"
        out.append(
            '<tr class="border-t align-top" data-testid="session-row">'
            f'<td class="px-2 py-1" style="min-width:11rem"><a class="text-blue-700 underline break-all" '
            f'href="{esc(session_href(r["device"], r["agent_id"], r["session_id"]))}">{esc(session_name(r))}</a>'
            f'<div class="text-xs text-gray-500 font-mono">{esc(r["session_id"][:8])}'
            f'{" · " + esc(r["status"]) if r["status"] else ""}</div></td>'
            f'<td class="px-2 py-1 whitespace-nowrap"><a class="text-blue-700 underline" '
            f'href="/device/{quote(r["device"])}">{esc(r["device"])}</a> · {esc(r["agent_id"])}</td>'
            f'<td class="px-2 py-1">{esc(r["channel"] or "–")}</td>'
            f'<td class="px-2 py-1 break-all text-xs">{esc(r["models"].replace(",", ", ") or "–")}</td>'
            f'<td class="px-2 py-1 whitespace-nowrap" title="{esc(date_time_h(r["first_ms"], tz))}">'
            f'{esc(ago_h(r["first_ms"]))}</td>'
            f'<td class="px-2 py-1 whitespace-nowrap" title="{esc(date_time_h(r["last_ms"], tz))}">'
            f'{esc(ago_h(r["last_ms"]))}</td>'
            f'<td class="px-2 py-1 text-right">{r["turns"]:,}</td><td class="px-2 py-1 text-right">{failed}</td>'
            f'<td class="px-2 py-1 text-right">{r["error_messages"]:,}</td>'
            f'<td class="px-2 py-1 whitespace-nowrap" title="{r["total_tokens"]:,} tokens">'
            f'<b>{esc(tokens_h(r["total_tokens"]))}</b> <span class="text-xs text-gray-500">'
            f'{esc(tokens_h(r["input_tokens"]))} / {esc(tokens_h(r["output_tokens"]))} / '
            f'{esc(tokens_h(r["cache_read_tokens"]))} / {esc(tokens_h(r["cache_write_tokens"]))}</span></td>'
            f'<td class="px-2 py-1 whitespace-nowrap">{esc(cost_h(r["cost"], r["unpriced_tokens"]))}</td>'
            f'<td class="px-2 py-1 text-xs text-red-700 break-all">{esc(r["latest_error"][:200])}</td></tr>')
    out.append(TABLE_END)
    return "".join(out)


def _top_html(rows: list[dict]) -> str:
    out = ['<ol class="text-sm list-decimal pl-5" data-testid="top-sessions">']
    for r in rows:
        href = esc(session_href(r["device"], r["agent_id"], r["session_id"]))
        failed = f' · <span class="text-red-700">{r["failed_turns"]} failed</span>' if r["failed_turns"] else ""
        out.append(f'<li><a class="text-blue-700 underline" href="{href}">{esc(session_name(r))}</a> '
                   f'<span class="text-gray-500">{esc(r["device"])} · {esc(r["agent_id"])}</span> — '
                   f'<b>{esc(cost_h(r["cost"], r["unpriced_tokens"]))}</b> · {esc(tokens_h(r["total_tokens"]))} '
                   f'tokens · {r["turns"]:,} turns{failed}</li>')
    return "".join(out) + "</ol>"


def sub_nav(active: str) -> None:
    """Links between the sessions, tools and versions pages."""
    with ui.row().classes("gap-4 text-sm"):
        for label, href in (("Sessions", "/sessions"), ("Tools", "/tools"), ("Versions", "/versions")):
            if label == active:
                ui.label(label).classes("font-semibold")
            else:
                ui.link(label, href)


def render_sessions(state: FleetState, device: str = "", agent: str = "", model: str = "", status: str = "",
                    range_: str = "7d", text: str = "", sort: str = "last") -> None:
    """Build the sessions page; the arguments are the initial filters (from the URL query)."""
    f = {"device": device or None, "agent": agent or None, "model": model or None,
         "status": status if status in STATUSES else "", "range": range_ if range_ in RANGES else "7d",
         "text": text, "sort": sort if sort in SORTS else "last"}
    cursors: list[str | None] = [None]
    viewer = {"zone": initial_zone()}
    with ui.column().classes("w-full p-4 gap-3"):
        with ui.row().classes("items-center w-full gap-3"):
            ui.label("Sessions").classes("text-2xl font-semibold")
            sub_nav("Sessions")
            ui.space()
            note = ui.label(zone_note(viewer["zone"])).classes("text-xs text-gray-500").mark("zone-note")
        with ui.row().classes("items-end gap-3 w-full"):
            devices = {"": "all devices", **{d.device_id: d.name for d in state.snapshot()}}
            dev = ui.select(devices, value=f["device"] or "", label="Device").classes("w-48").props(
                'data-testid="sessions-device"')
            ag = ui.input("Agent", value=agent).props("clearable").classes("w-28")
            mdl = ui.input("Model", value=model).props("clearable").classes("w-40")
            st = ui.select(STATUSES, value=f["status"], label="Status").classes("w-44").props(
                'data-testid="sessions-status"')
            rng = ui.select({k: ("all time" if k == "all" else f"active in the last {k}") for k in RANGES},
                            value=f["range"], label="Time").classes("w-48")
            search = ui.input("Key, label or id", value=text).props("clearable").classes("w-48")
            srt = ui.select(SORTS, value=f["sort"], label="Sort by").classes("w-40").props(
                'data-testid="sessions-sort"')
            ui.button("Export CSV", on_click=lambda: export()).props('flat dense icon=download data-testid="csv"')
        top_box = ui.column().classes("w-full")
        box = ui.column().classes("w-full gap-1")

    def since() -> int | None:
        secs = RANGES.get(f["range"])
        return None if secs is None else int((time.time() - secs) * 1000)

    def current() -> queries.SessionFilter:
        return queries.SessionFilter(f["device"], f["agent"], f["model"], f["status"] or None, since(), None,
                                     (f["text"] or "").strip() or None)

    def set_filter(**kw: object) -> None:
        f.update(kw)
        del cursors[1:]
        show()

    dev.on_value_change(lambda e: set_filter(device=e.value or None))
    st.on_value_change(lambda e: set_filter(status=e.value or ""))
    rng.on_value_change(lambda e: set_filter(range=e.value))
    srt.on_value_change(lambda e: set_filter(sort=e.value))
    for field, inp in (("agent", ag), ("model", mdl), ("text", search)):
        inp.on("keydown.enter", lambda _e, field=field, inp=inp: set_filter(**{field: inp.value or None}))
        inp.on("clear", lambda _e, field=field: set_filter(**{field: None}))

    async def fill_top(card: ui.column, key: tuple) -> None:
        """The most expensive sessions sum the range's runs (up to a million): computed off the event loop after
        the list is on screen, and kept for :data:`TOP_CACHE_S`."""
        now = time.monotonic()
        hit = _top_cache.get(key)
        if hit is None or now - hit[0] > TOP_CACHE_S:
            top = await run.io_bound(queries.top_sessions, since() or 0, int(time.time() * 1000) + 1, 10, f["device"])
            _top_cache[key] = hit = (now, top)
            for k in [k for k, v in _top_cache.items() if now - v[0] > TOP_CACHE_S]:
                del _top_cache[k]
        card.clear()
        with card:
            if hit[1]:
                ui.html(_top_html(hit[1])).classes("w-full")
            else:
                ui.label("No turns in this range.").classes("text-sm text-gray-500")

    def show() -> None:
        top_box.clear()
        box.clear()
        with top_box, ui.card().classes("w-full p-3 gap-1"):
            ui.label(f"Most expensive sessions · turns started "
                     f"{'any time' if f['range'] == 'all' else 'in the last ' + f['range']}").classes(
                "text-xs uppercase text-gray-500")
            card = ui.column().classes("w-full")
            with card:
                ui.spinner(size="sm")
            ui.timer(0.01, lambda: fill_top(card, (f["range"], f["device"])), once=True)
        with box:
            try:
                page = queries.sessions_page(current(), f["sort"], cursors[-1], PAGE_SIZE)
            except QueryError as exc:
                ui.label(str(exc)).classes("text-red-700")
                return
            if not page.rows:
                ui.label("No sessions match." if len(cursors) == 1 else "No more sessions.").classes("text-gray-500")
            else:
                ui.html(_rows_html(page.rows, viewer["zone"].tz)).classes("w-full")
            with ui.row().classes("gap-2 pt-2"):
                if len(cursors) > 1:
                    ui.button("First page", on_click=lambda: set_filter()).props("flat dense")
                    ui.button("← Previous", on_click=lambda: (cursors.pop(), show())).props("flat dense")
                if page.next_cursor:
                    ui.button("Next →", on_click=lambda: (cursors.append(page.next_cursor), show())).props(
                        'flat dense data-testid="sessions-next"')
                ui.label(f"page {len(cursors)} · {PAGE_SIZE} per page · sorted by {SORTS[f['sort']]}").classes(
                    "text-xs text-gray-500 self-center")

    def export() -> None:
        rows, cursor = [], None
        while len(rows) < CSV_MAX_ROWS:
            page = queries.sessions_page(current(), f["sort"], cursor, queries.MAX_LIMIT)
            rows += page.rows
            if (cursor := page.next_cursor) is None:
                break
        ui.download.content(table_csv(CSV_COLUMNS, rows[:CSV_MAX_ROWS]), "clawfleet-sessions.csv", "text/csv")

    show()
    follow_browser_zone(viewer, show, note)


def sessions_link(**params: str) -> str:
    """URL of the sessions page with filters (``device=…``, ``sort=cost`` …)."""
    query = urlencode({k: v for k, v in params.items() if v})
    return "/sessions" + (f"?{query}" if query else "")
