"""The Alerts page's rules tab: the rules, and an editor that shows how often the rule would have
fired over the last 7 days (replayed over the stored history, :mod:`fleet_server.alerts.preview`)
while it is being written, before it is saved."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import tzinfo

from nicegui import run, ui

from fleet_server.alerts.preview import Preview, preview
from fleet_server.alerts.rules import METRICS, RuleDef, RuleError, parse_duration, save_rule, validate
from fleet_server.alerts.views import rule_rows
from fleet_server.auth.accounts import admin_only, current_user
from fleet_server.dashboard.parts.format import date_time_h
from fleet_server.jobs.alerts import AlertJobs
from fleet_server.state import FleetState
from fleet_server.store import audit
from fleet_server.store.alert_models import AlertChannel, AlertRule
from shared.clock import now_ms

KIND_LABELS = {"offline": "Device offline", "metric": "Metric threshold", "gateway": "OpenClaw gateway down",
               "error_new": "New error (log fingerprint)", "error_rate": "Error rate", "budget": "Token / cost budget",
               "server": "Fleet server"}
FIELDS: dict[str, list[tuple[str, str, str, object]]] = {
    "offline": [("for_s", "For (e.g. 5m)", "duration", "5m"), ("clear_s", "Back for, before it resolves", "duration",
                                                                "30s"),
                ("include_planned", "Also a planned shutdown or sleep", "bool", False)],
    "metric": [("metric", "Metric", "choice:" + ",".join(METRICS), "disk"),
               ("op", "When", "choice:above,below", "above"),
               ("value", "Value", "number", 90), ("clear", "Clears at (hysteresis, optional)", "number", None),
               ("for_s", "For (e.g. 10m)", "duration", "10m")],
    "gateway": [("for_s", "For (e.g. 5m)", "duration", "5m"), ("clear_s", "Back for, before it resolves", "duration",
                                                                "30s")],
    "error_new": [("per_device", "New to that device (not only new to the fleet)", "bool", False)],
    "error_rate": [("per_hour", "More than … per hour", "number", 10), ("clear", "Clears at (optional)", "number",
                                                                         None)],
    "budget": [("unit", "Unit", "choice:tokens,usd", "tokens"), ("amount", "Amount", "number", 1_000_000),
               ("period", "Per", "choice:day,month", "day"), ("zone", "Time zone (IANA)", "text", "UTC"),
               ("steps", "Warn at % (comma-separated)", "steps", "80,90,100"),
               ("per_device", "Each device separately", "bool", False)],
    "server": [("check", "Check", "choice:broker,ingest,disk", "disk"), ("value", "Disk % (disk check)", "number", 90),
               ("for_s", "For (e.g. 1m)", "duration", "1m")],
}
"""The editor's fields per kind: (setting, label, input type, default)."""
DAY_NAMES = ("-6d", "-5d", "-4d", "-3d", "-2d", "-1d", "today")


def _actor() -> str:
    user = current_user()
    return user.username if user else "?"


def render_rules(state: FleetState, alerts: AlertJobs | None, tz: Callable[[], tzinfo]) -> None:
    """The rules list and the "New rule" editor (the preview's times in ``tz()``)."""
    with ui.row().classes("items-center gap-2 w-full"):
        ui.label("A device rule overrides a tag rule, which overrides a fleet rule of the same kind and "
                 "severity. A new install watches offline devices, full disks and the OpenClaw gateway.").classes(
            "text-sm text-gray-600 grow")
        ui.button("New rule", icon="add", on_click=lambda: open_editor(None)).mark("new-rule")

    @ui.refreshable
    def listing() -> None:
        rows = rule_rows()
        if not rows:
            ui.label("No rules.").classes("text-gray-500")
        names = dict(AlertChannel.select(AlertChannel.id, AlertChannel.name).tuples())
        for r in rows:
            with ui.card().classes("w-full p-3 gap-1").mark("rule"):
                with ui.row().classes("items-center gap-2 w-full"):
                    ui.switch(value=r["enabled"], on_change=lambda e, i=r["id"]: toggle(i, e.value)).props("dense")
                    ui.label(r["name"]).classes("font-medium")
                    ui.badge(r["severity"], color="negative" if r["severity"] == "critical" else "orange")
                    ui.label(r["scope"]).classes("text-xs text-gray-500")
                    ui.space()
                    ui.button(icon="edit", on_click=lambda _e, row=r: open_editor(row)).props("flat dense round").mark(
                        "edit-rule")
                    ui.button(icon="delete", on_click=lambda _e, i=r["id"], n=r["name"]: delete(i, n)).props(
                        "flat dense round color=negative")
                chans = ", ".join(names.get(c, f"#{c}") for c in r["channels"]) or "all channels"
                remind = f" · reminder every {r['reminder_s'] // 60} min" if r["reminder_s"] else ""
                ui.label(f"{r['describe']} · {chans}{remind}").classes("text-sm text-gray-600")

    @admin_only
    def toggle(rule_id: int, on: bool) -> None:
        AlertRule.update(enabled=on, updated_ms=now_ms()).where(AlertRule.id == rule_id).execute()
        audit.record(_actor(), "alert_rule.enable" if on else "alert_rule.disable", target=f"rule {rule_id}")
        _reload(alerts)

    @admin_only
    def delete(rule_id: int, name: str) -> None:
        AlertRule.delete_by_id(rule_id)
        audit.record(_actor(), "alert_rule.delete", target=f"rule {rule_id}", detail=name)
        _reload(alerts)
        listing.refresh()

    def open_editor(row: dict | None) -> None:
        RuleEditor(state, alerts, row, on_saved=listing.refresh, tz=tz).dialog.open()

    listing()


def _reload(alerts: AlertJobs | None) -> None:
    if alerts is not None:
        alerts.engine.request_reload()


class RuleEditor:
    """A dialog to write a rule; the preview under it follows every change (debounced)."""

    def __init__(self, state: FleetState, alerts: AlertJobs | None, row: dict | None,
                 on_saved: Callable[[], object], tz: Callable[[], tzinfo]) -> None:
        self.state, self.alerts, self.row, self.on_saved, self.tz = state, alerts, row, on_saved, tz
        self.inputs: dict[str, object] = {}
        self._timer: ui.timer | None = None
        settings = dict(row["settings"]) if row else {}
        with ui.dialog() as self.dialog, ui.card().classes("w-full max-w-2xl gap-2").mark("rule-editor"):
            ui.label("Edit rule" if row else "New rule").classes("text-lg font-semibold")
            self.name = ui.input("Name (shown in messages)", value=row["name"] if row else "").classes("w-full").mark(
                "rule-name")
            with ui.row().classes("w-full gap-2 items-end"):
                self.kind = ui.select(KIND_LABELS, value=row["kind"] if row else "offline", label="Kind",
                                      on_change=lambda: (self.fields.refresh(), self.changed())).classes("w-56").mark(
                    "rule-kind")
                self.kind.set_enabled(row is None)
                self.severity = ui.select(["warning", "critical"], value=row["severity"] if row else "warning",
                                          label="Severity", on_change=self.changed).classes("w-32")
            scope = row["scope"] if row else "fleet"
            with ui.row().classes("w-full gap-2 items-end"):
                self.scope_kind = ui.select({"fleet": "Whole fleet", "tag": "Tag", "device": "Device"},
                                            value=scope.split(":", 1)[0], label="Scope",
                                            on_change=self.changed).classes("w-40")
                self.scope_value = ui.input("Tag or device id", value=scope.split(":", 1)[1] if ":" in scope else "",
                                            on_change=self.changed).classes("grow").mark("rule-scope-value")
            self.settings = settings
            self.fields = ui.refreshable(self._fields)
            self.fields()
            channels = dict(AlertChannel.select(AlertChannel.id, AlertChannel.name).tuples())
            with ui.row().classes("w-full gap-2 items-end"):
                self.channels = ui.select(channels, multiple=True, value=list(row["channels"]) if row else [],
                                          label="Channels (none: all)").classes("grow")
                self.reminder = ui.input("Reminder while firing (e.g. 4h; empty: off)",
                                         value=f"{row['reminder_s'] // 60}m" if row and row["reminder_s"] else ""
                                         ).classes("w-64")
            self.error = ui.label("").classes("text-sm text-red-700").mark("rule-error")
            with ui.card().classes("w-full bg-gray-100 p-2 gap-1").props("flat"):
                ui.label("Last 7 days, replayed from the stored history").classes("text-xs uppercase text-gray-500")
                self.summary = ui.label("…").classes("text-sm").mark("rule-preview")
                self.bars = ui.row().classes("items-end gap-1 no-wrap")
                self.examples = ui.column().classes("gap-0")
            with ui.row().classes("w-full justify-end gap-2"):
                ui.button("Cancel", on_click=self.dialog.close).props("flat")
                ui.button("Save", on_click=self.save).mark("rule-save")
        self.changed()

    def _fields(self) -> None:
        kind = self.kind.value
        self.inputs = {}
        with ui.row().classes("w-full gap-2 items-end"):
            for key, label, typ, default in FIELDS.get(kind, []):
                value = self.settings.get(key, None) if self.row and self.row["kind"] == kind else None
                if typ == "bool":
                    w = ui.checkbox(label, value=bool(value if value is not None else default))
                elif typ.startswith("choice:"):
                    w = ui.select(typ[7:].split(","), value=value or default, label=label).classes("w-36")
                elif typ == "number":
                    w = ui.number(label, value=value if value is not None else default).classes("w-44")
                elif typ == "duration":
                    w = ui.input(label, value=f"{value}s" if value is not None else str(default)).classes("w-44")
                elif typ == "steps":
                    w = ui.input(label, value=",".join(str(s) for s in value) if value else str(default)).classes(
                        "w-52")
                else:
                    w = ui.input(label, value=value or default).classes("w-52")
                w.on_value_change(self.changed)
                w.mark(f"field-{key}")
                self.inputs[key] = (typ, w)

    def params(self) -> dict:
        """The settings as entered (raises RuleError for a bad duration or step list)."""
        out: dict = {}
        for key, (typ, w) in self.inputs.items():
            v = w.value  # type: ignore[attr-defined]
            if typ == "duration":
                out[key] = parse_duration(v or "0", key)
            elif typ == "steps":
                try:
                    out[key] = [int(s) for s in str(v).split(",") if s.strip()]
                except ValueError:
                    raise RuleError("warn at: whole percentages separated by commas, e.g. 80,90,100") from None
            elif typ == "number":
                if v is not None and v != "":
                    out[key] = float(v)
            else:
                out[key] = v
        return out

    def scope(self) -> str:
        kind = self.scope_kind.value
        return "fleet" if kind == "fleet" else f"{kind}:{(self.scope_value.value or '').strip()}"

    def definition(self) -> RuleDef:
        """The rule as entered, validated (RuleError says what is wrong)."""
        sc, model = validate(self.kind.value, self.scope(), self.severity.value, self.params(), self.name.value or "")
        return RuleDef(self.row["id"] if self.row else 0, self.name.value or "", self.kind.value, sc,
                       self.severity.value, model)

    def changed(self) -> None:
        """Re-run the preview half a second after the last change."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer = ui.timer(0.5, self.run_preview, once=True)

    async def run_preview(self) -> None:
        try:
            rule = self.definition()
        except RuleError as exc:
            self.error.set_text(str(exc))
            self.summary.set_text("(fix the rule to see its preview)")
            return
        self.error.set_text("")
        self.summary.set_text("replaying the last 7 days…")
        p: Preview = await run.io_bound(preview, rule, self.state.views(), now_ms())
        self.summary.set_text(p.summary())
        self.bars.clear()
        top = max(p.per_day) or 1
        with self.bars:
            for name, n in zip(DAY_NAMES, p.per_day, strict=True):
                with ui.column().classes("items-center gap-0 w-8"):
                    ui.element("div").classes("w-6 bg-orange-400 rounded-t").style(f"height: {int(40 * n / top)}px")
                    ui.label(f"{n}").classes("text-xs")
                    ui.label(name).classes("text-[10px] text-gray-500")
        self.examples.clear()
        with self.examples:
            for subject, fired, resolved in p.examples[:5]:
                end = date_time_h(resolved, self.tz()) if resolved else "still firing"
                ui.label(f"{subject}: {date_time_h(fired, self.tz())} → {end}").classes("text-xs text-gray-600")

    @admin_only
    async def save(self) -> None:
        try:
            rule = self.definition()
            remind = parse_duration(self.reminder.value, "reminder") if (self.reminder.value or "").strip() else 0
            row = save_rule(rule.kind, str(rule.scope), rule.severity, json.loads(rule.params.model_dump_json()),
                            name=self.name.value or "", channels=[int(c) for c in self.channels.value or []],
                            reminder_s=remind, rule_id=self.row["id"] if self.row else None)
        except RuleError as exc:
            self.error.set_text(str(exc))
            return
        audit.record(_actor(), "alert_rule.update" if self.row else "alert_rule.add", target=f"rule {row.id}",
                     detail=f"{row.name}: {row.kind} {row.scope} {row.severity}")
        _reload(self.alerts)
        ui.notify(f"rule {row.name!r} saved", type="positive")
        self.dialog.close()
        self.on_saved()

