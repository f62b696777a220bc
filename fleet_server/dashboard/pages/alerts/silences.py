"""The Alerts page's silences tab: snooze a device, a tag, a rule or the fleet for a while, and
maintenance windows (one-off, or recurring on weekdays in a time zone); the active and coming ones."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from nicegui import run, ui

from fleet_server.alerts.rules import RuleError, parse_duration
from fleet_server.alerts.silences import maintenance, remove_silence, snooze
from fleet_server.alerts.views import silence_rows
from fleet_server.auth.accounts import admin_only, current_user, is_admin
from fleet_server.state import FleetState

DURATIONS = {"1h": "1 hour", "4h": "4 hours", "1d": "1 day", "3d": "3 days", "7d": "7 days"}
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _actor() -> str:
    user = current_user()
    return user.username if user else "?"


def render_silences(state: FleetState) -> None:
    """Snooze and maintenance forms (admins), and the list."""
    ui.label("While silenced, incidents still open and close (and show here); only their messages wait. One "
             "still firing when the silence ends is sent then.").classes("text-sm text-gray-600")
    if is_admin():
        devices = {v.device_id: v.name for v in state.snapshot()}
        with ui.card().classes("w-full p-3 gap-2"):
            ui.label("Snooze").classes("font-medium")
            with ui.row().classes("w-full gap-2 items-end"):
                kind = ui.select({"device": "Device", "tag": "Tag", "rule": "Rule id", "fleet": "Whole fleet"},
                                 value="device", label="What").classes("w-36")
                target = ui.select(devices, with_input=True, new_value_mode="add-unique", label="Device, tag or rule"
                                   ).classes("grow min-w-48").mark("snooze-target")
                length = ui.select(DURATIONS, value="1h", label="For").classes("w-32")
                reason = ui.input("Reason (optional)").classes("w-48")
                ui.button("Snooze", on_click=lambda: do_snooze()).mark("snooze")
        with ui.card().classes("w-full p-3 gap-2"):
            ui.label("Maintenance window").classes("font-medium")
            with ui.row().classes("w-full gap-2 items-end"):
                m_scope = ui.input("Scope (fleet, tag:<t>, device:<id>, rule:<id>)", value="fleet").classes("w-72")
                m_zone = ui.input("Time zone", value="UTC").classes("w-40")
                m_reason = ui.input("Reason (optional)").classes("w-48")
            with ui.row().classes("w-full gap-2 items-end"):
                m_start = ui.input("One-off from (YYYY-MM-DD HH:MM)").classes("w-56")
                m_end = ui.input("until (YYYY-MM-DD HH:MM)").classes("w-56")
                ui.label("or every").classes("text-sm")
                m_days = ui.select(dict(enumerate(WEEKDAYS)), multiple=True, label="Weekdays").classes("w-48")
                m_at = ui.input("at (HH:MM)").classes("w-28")
                m_len = ui.input("for (e.g. 2h)", value="1h").classes("w-28")
                ui.button("Add window", on_click=lambda: do_maintenance())

        @admin_only
        async def do_snooze() -> None:
            what = target.value if kind.value != "fleet" else ""
            scope = "fleet" if kind.value == "fleet" else f"{kind.value}:{(what or '').strip()}"
            try:
                await run.io_bound(snooze, scope, parse_duration(length.value, "for"), _actor(), reason.value or "")
            except RuleError as exc:
                ui.notify(str(exc), type="negative")
                return
            ui.notify(f"{scope} snoozed for {DURATIONS.get(length.value, length.value)}", type="positive")
            listing.refresh()

        @admin_only
        def do_maintenance() -> None:
            try:
                zone = ZoneInfo((m_zone.value or "UTC").strip())
            except (ValueError, KeyError):
                ui.notify("time zone: use an IANA name such as Europe/Berlin", type="negative")
                return
            try:
                if m_days.value:
                    maintenance(m_scope.value or "fleet", _actor(), weekdays=[int(d) for d in m_days.value],
                                at=(m_at.value or "").strip(), duration_s=parse_duration(m_len.value or "1h", "for"),
                                zone=zone.key, reason=m_reason.value or "")
                else:
                    ms = [int(datetime.fromisoformat((t or "").strip()).replace(tzinfo=zone).timestamp() * 1000)
                          for t in (m_start.value, m_end.value)]
                    maintenance(m_scope.value or "fleet", _actor(), start_ms=ms[0], end_ms=ms[1], zone=zone.key,
                                reason=m_reason.value or "")
            except RuleError as exc:
                ui.notify(str(exc), type="negative")
                return
            except ValueError:
                ui.notify("from/until: use YYYY-MM-DD HH:MM", type="negative")
                return
            ui.notify("maintenance window saved", type="positive")
            listing.refresh()

    @ui.refreshable
    def listing() -> None:
        rows = silence_rows()
        if not rows:
            ui.label("No snoozes or maintenance windows.").classes("text-gray-500")
        for r in rows:
            with ui.row().classes("w-full items-center gap-2 border-b py-1").mark("silence"):
                ui.badge("active" if r["active"] else "later", color="primary" if r["active"] else "grey")
                ui.label(f"{r['kind']} · {r['scope']}").classes("font-medium")
                ui.label(f"{r['when']} · by {r['created_by']}" + (f" · {r['reason']}" if r["reason"] else "")).classes(
                    "text-sm text-gray-600")
                ui.space()
                if is_admin():
                    ui.button(icon="close", on_click=lambda _e, i=r["id"]: end(i)).props("flat dense round").tooltip(
                        "end it")

    @admin_only
    def end(silence_id: int) -> None:
        try:
            remove_silence(silence_id, _actor())
        except RuleError as exc:
            ui.notify(str(exc), type="warning")
        listing.refresh()

    listing()
    ui.timer(10.0, listing.refresh)
