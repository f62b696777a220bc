"""Audit log page (``/audit``, admins only): newest first, 50 per page, filter by action."""

from __future__ import annotations

from datetime import tzinfo
from typing import Any

from nicegui import ui
from nicegui.events import ValueChangeEventArguments

from fleet_server.auth.accounts import require_admin
from fleet_server.dashboard.parts.format import date_time_h
from fleet_server.dashboard.parts.timezone import UTC, follow_browser_zone, initial_zone, zone_note
from fleet_server.store import audit

PER_PAGE = 50
ALL_ACTIONS = "all actions"
COLUMNS = [
    {"name": "time", "label": "Time", "field": "time", "align": "left"},
    {"name": "actor", "label": "Actor", "field": "actor", "align": "left"},
    {"name": "action", "label": "Action", "field": "action", "align": "left"},
    {"name": "target", "label": "Target", "field": "target", "align": "left"},
    {"name": "detail", "label": "Detail", "field": "detail", "align": "left"},
]


def audit_rows(page: int, action: str | None, tz: tzinfo = UTC) -> tuple[list[dict], int]:
    """Table rows of one page (dicts keyed like :data:`COLUMNS`, plus ``id``; times in ``tz``) and the
    page count (≥ 1)."""
    result = audit.query(page=page, per_page=PER_PAGE, action=action)
    rows = [{"id": e.id, "time": date_time_h(e.ts_ms, tz), "actor": e.actor, "action": e.action,
             "target": e.target, "detail": e.detail} for e in result.rows]
    return rows, max(1, -(-result.total // PER_PAGE))


def render_audit() -> None:
    """The page body; shows "admins only" to viewers."""
    if not require_admin():
        return
    state: dict[str, Any] = {"page": 1, "action": None, "zone": initial_zone()}
    with ui.column().classes("w-full p-4 gap-2"):
        with ui.row().classes("items-center gap-4"):
            ui.label("Audit log").classes("text-xl font-semibold")
            note = ui.label(zone_note(state["zone"])).classes("text-xs text-gray-500").mark("zone-note")
            action_select = ui.select([ALL_ACTIONS, *audit.actions()], value=ALL_ACTIONS, label="Action").classes(
                "min-w-48")
            ui.button(icon="refresh", on_click=lambda: refresh()).props("flat round").tooltip("reload")
        table = ui.table(rows=[], columns=COLUMNS, row_key="id").classes("w-full").props("dense flat bordered")
        pager = ui.pagination(1, 1, direction_links=True, value=1)

    def refresh() -> None:
        rows, pages = audit_rows(state["page"], state["action"], state["zone"].tz)
        table.rows = rows
        pager.max = pages
        options = [ALL_ACTIONS, *audit.actions()]
        if options != action_select.options:
            action_select.set_options(options, value=action_select.value if action_select.value in options
                                      else ALL_ACTIONS)

    def on_filter(e: ValueChangeEventArguments) -> None:
        action = None if e.value in (None, ALL_ACTIONS) else e.value
        if action == state["action"]:
            return
        state["action"] = action
        state["page"] = 1
        pager.value = 1
        refresh()

    def on_page(e: ValueChangeEventArguments) -> None:
        if e.value and e.value != state["page"]:
            state["page"] = e.value
            refresh()

    action_select.on_value_change(on_filter)
    pager.on_value_change(on_page)
    refresh()
    follow_browser_zone(state, refresh, note)
