"""Logs page (``/logs``): OpenClaw warnings and errors of the fleet, newest first.

Filters: device, level (and above), time range, text. Paging is server-side with a cursor (keyset
on ``(ts, id)``, :mod:`fleet_server.store.logs`), fast on a million rows. The grouped view shows one
row per fingerprint (count, first/last seen, devices affected, a sample) and clicks through to
its occurrences. OpenClaw's CLI hint lines ("Help: openclaw --help" …) are shown muted: the line
that says what failed is the one before them.
"""

from __future__ import annotations

import time
from html import escape as esc
from urllib.parse import quote, urlencode

from nicegui import ui

from fleet_server.dashboard.parts.format import ago_h, date_time_h
from fleet_server.dashboard.parts.timezone import follow_browser_zone, initial_zone, zone_note
from fleet_server.state import FleetState
from fleet_server.store import logs as log_store

PAGE_SIZE = 50
RANGES = {"1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400, "all": None}
HINT_TITLE = ' title="OpenClaw CLI hint line; the reason is the line before it"'
LEVEL_COLORS = {"fatal": "text-red-900", "error": "text-red-700", "warn": "text-amber-700"}


def logs_url(**params: str | None) -> str:
    """``/logs?…`` with the given filters (empty ones left out): the address of a view of this page."""
    query = urlencode({k: v for k, v in params.items() if v})
    return "/logs" + (f"?{query}" if query else "")


def render_logs(state: FleetState, device: str = "", level: str = "", text: str = "", fingerprint: str = "",
                view: str = "", since: str = "7d") -> None:
    """Build the logs page. Arguments are the initial filters (from the URL query); ``since`` is one of
    :data:`RANGES`."""
    f = {"device": device or None, "level": level if level in log_store.LEVELS else None, "text": text,
         "range": since if since in RANGES else "7d", "fingerprint": fingerprint or None,
         "view": "groups" if view == "groups" else "list"}
    cursors: list[str | None] = [None]  # cursor of each page shown so far (first page: None)
    viewer = {"zone": initial_zone()}

    def _time(ts_ms: int) -> str:
        return date_time_h(ts_ms, viewer["zone"].tz)

    with ui.column().classes("w-full p-4 gap-3"):
        with ui.row().classes("items-center w-full gap-3"):
            ui.label("Logs").classes("text-2xl font-semibold")
            ui.space()
            note = ui.label(zone_note(viewer["zone"])).classes("text-xs text-gray-500").mark("zone-note")
        with ui.row().classes("items-end gap-3 w-full"):
            devices = {"": "all devices", **{d.device_id: d.name for d in state.snapshot()}}
            dev = ui.select(devices, value=f["device"] or "", label="Device").classes("w-48").props(
                'data-testid="log-device"')
            lvl = ui.select({"": "any level", "warn": "warn and above", "error": "error and above", "fatal": "fatal"},
                            value=f["level"] or "", label="Level").classes("w-44").props('data-testid="log-level"')
            rng = ui.select({k: ("all time" if k == "all" else f"last {k}") for k in RANGES}, value=f["range"],
                            label="Time").classes("w-32")
            search = ui.input("Text contains", value=text).props('clearable data-testid="log-text"').classes("w-64")
            ui.toggle({"list": "Newest first", "groups": "Grouped"}, value=f["view"],
                      on_change=lambda e: (f.update(view=e.value), reset())).props('dense data-testid="log-view"')
        fp_row = ui.row().classes("items-center gap-2")
        box = ui.column().classes("w-full gap-1")

    def current() -> log_store.LogFilter:
        secs = RANGES.get(f["range"])
        return log_store.LogFilter(device=f["device"], min_level=f["level"], text=(f["text"] or "").strip() or None,
                                   since_ms=None if secs is None else int((time.time() - secs) * 1000),
                                   fingerprint=f["fingerprint"])

    def address() -> str:
        return logs_url(device=f["device"], level=f["level"], q=(f["text"] or "").strip(),
                        fingerprint=f["fingerprint"], view="groups" if f["view"] == "groups" else None,
                        range=f["range"] if f["range"] != "7d" else None)

    def reset() -> None:
        del cursors[1:]
        ui.run_javascript(f"history.replaceState(null, '', {address()!r})")  # the filters stay in the address
        show()

    def set_filter(**kw: object) -> None:
        f.update(kw)
        reset()

    dev.on_value_change(lambda e: set_filter(device=e.value or None))
    lvl.on_value_change(lambda e: set_filter(level=e.value or None))
    rng.on_value_change(lambda e: set_filter(range=e.value))
    search.on("keydown.enter", lambda: set_filter(text=search.value or ""))
    search.on("clear", lambda: set_filter(text=""))

    def _rows_html(rows: list[dict]) -> str:
        """All rows of a page as one HTML block (one element instead of ~8 per row: fast paging)."""
        out = []
        for r in rows:
            hint = log_store.is_hint(r["message"])
            who = ""
            if r.get("agent_id"):
                session = r.get("session_key") or (r["session_id"][:8] if r.get("session_id") else "")
                who = f"agent {esc(r['agent_id'])}" + (f" · session {esc(session)}" if session else "")
            dev = esc(r["device"])
            out.append(
                '<div class="w-full border-b py-1" data-testid="log-row">'
                '<div class="flex flex-wrap gap-x-3 items-baseline text-xs">'
                f'<span class="font-mono text-gray-600" title="{esc(ago_h(r["ts"]))}">{esc(_time(r["ts"]))}</span>'
                f'<span class="font-semibold uppercase {LEVEL_COLORS.get(r["level"], "")}">{esc(r["level"])}</span>'
                f'<a class="text-blue-700 underline" href="/device/{quote(r["device"])}">{dev}</a>'
                f'<span class="text-gray-600">{who}</span>'
                f'<span class="font-mono text-gray-600">{esc(r["subsystem"])}</span></div>'
                f'<div class="text-sm break-all {"text-gray-400" if hint else ""}"{HINT_TITLE if hint else ""}>'
                f'{esc(r["message"][:1500])}</div></div>')
        return "".join(out)

    def show() -> None:
        fp_row.clear()
        if f["fingerprint"]:
            with fp_row:
                ui.label(f"occurrences of one fingerprint ({f['fingerprint'][:12]}…)").classes("text-sm")
                ui.button("show all", on_click=lambda: set_filter(fingerprint=None)).props("flat dense")
        box.clear()
        with box:
            try:
                flt = current()
                if f["view"] == "groups":
                    _groups(flt)
                else:
                    _list(flt)
            except log_store.LogQueryError as exc:
                ui.label(str(exc)).classes("text-red-700")

    def _list(flt: log_store.LogFilter) -> None:
        page = log_store.logs_page(flt, cursors[-1], PAGE_SIZE)
        if not page.rows:
            ui.label("No log records match." if len(cursors) == 1 else "No older records.").classes("text-gray-500")
        ui.html(_rows_html(page.rows)).classes("w-full")  # every field escaped, and DOMPurify on the client
        with ui.row().classes("gap-2 pt-2"):
            if len(cursors) > 1:
                ui.button("Newest", on_click=reset).props("flat dense")
                ui.button("← Newer", on_click=lambda: (cursors.pop(), show())).props("flat dense")
            if page.next_cursor:
                ui.button("Older →", on_click=lambda: (cursors.append(page.next_cursor), show())).props(
                    'flat dense data-testid="log-older"')
            ui.label(f"page {len(cursors)} · {PAGE_SIZE} per page").classes("text-xs text-gray-500 self-center")

    def _groups(flt: log_store.LogFilter) -> None:
        groups = log_store.fingerprint_groups(flt, 100)
        if not groups:
            ui.label("No log records match.").classes("text-gray-500")
            return
        with ui.grid(columns="auto auto auto auto auto 1fr").classes("w-full gap-x-4 gap-y-1 items-baseline"):
            for h in ("Count", "Devices", "Level", "First seen", "Last seen", "Sample"):
                ui.label(h).classes("text-xs uppercase text-gray-500")
            for g in groups:
                occurrences = logs_url(device=f["device"], level=f["level"], q=(f["text"] or "").strip(),
                                       fingerprint=g["fingerprint"], range=f["range"] if f["range"] != "7d" else None)
                ui.link(f"{g['count']:,}", occurrences).classes("text-sm font-semibold").props('data-testid="fp-count"')
                ui.label(str(g["devices"])).classes("text-sm")
                ui.label(g["level"]).classes(f"text-xs uppercase {LEVEL_COLORS.get(g['level'], '')}")
                ui.label(ago_h(g["first_ms"])).classes("text-sm").tooltip(_time(g["first_ms"]))
                ui.label(ago_h(g["last_ms"])).classes("text-sm").tooltip(_time(g["last_ms"]))
                ui.link(g["sample"][:300], occurrences).classes("text-sm break-all no-underline text-inherit").props(
                    'data-testid="fp-sample"')

    show()
    follow_browser_zone(viewer, show, note)
