"""``clawfleet-server alerts …``: alert rules, incidents, silences and settings.

Works next to a running server (same data dir or database URL): the server picks up rule and
setting changes within 30 seconds, silences and acknowledgements at once. Channels are in
:mod:`fleet_server.cli.alert_channels` (``alerts channel …``). Every change is audited with the
actor ``cli:<os user>``.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated

import typer

from fleet_server.cli.alert_channels import channel_app
from fleet_server.cli.options import DataDirOpt, DbUrlOpt, default_data_dir, fail

alerts_app = typer.Typer(help="Alert rules, incidents, snoozes, maintenance windows and notification channels.",
                         no_args_is_help=True)
rule_app = typer.Typer(help="Alert rules: list, add, edit, delete, preview (7 days of history).", no_args_is_help=True)
alerts_app.add_typer(rule_app, name="rule")
alerts_app.add_typer(channel_app, name="channel")

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
SetOpt = Annotated[list[str] | None, typer.Option("--set", metavar="KEY=VALUE", help="a rule setting (repeatable), "
                   "e.g. metric=disk, value=90, clear=85, unit=usd, amount=50, period=day, zone=Europe/Berlin, "
                   "per_device=true, include_planned=true; see docs/alerts.md")]


def open_db(data_dir: Path | None, database_url: str | None) -> Path:
    """Open the database (a new one gets the default rules); returns the data dir (it holds the
    channel key)."""
    from fleet_server.alerts.rules import ensure_default_rules
    from fleet_server.store.db import open_database

    path = data_dir or default_data_dir()
    open_database(path, database_url)
    ensure_default_rules()
    return path


def when(ms: int | None) -> str:
    """``2026-03-29 14:02 UTC`` or ``-``."""
    return "-" if ms is None else datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _actor() -> str:
    from fleet_server.store import audit

    return audit.cli_actor()


def _value(key: str, text: str) -> object:
    from fleet_server.alerts.rules import parse_duration

    if key.endswith("_s"):
        return parse_duration(text, key)
    try:
        return json.loads(text)
    except ValueError:
        return text


def settings_of(items: list[str] | None, for_: str | None, clear_for: str | None) -> dict:
    """``--set`` pairs (and ``--for``/``--clear-for``) as a settings dict. Fails on a malformed pair."""
    from fleet_server.alerts.rules import RuleError, parse_duration

    out: dict = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            fail(f"--set {item!r}: use KEY=VALUE, e.g. --set value=90")
        try:
            out[key.strip()] = _value(key.strip(), text.strip())
        except RuleError as exc:
            fail(str(exc))
    try:
        if for_ is not None:
            out["for_s"] = parse_duration(for_, "--for")
        if clear_for is not None:
            out["clear_s"] = parse_duration(clear_for, "--clear-for")
    except RuleError as exc:
        fail(str(exc))
    return out


def device_views() -> list:
    """Every device's id, name and tags as :class:`DeviceView` (enough for scopes and previews)."""
    from fleet_server.state import DeviceView
    from fleet_server.store.models import Device

    return [DeviceView(device_id=d, name=n, tags=t) for d, n, t in Device.select(Device.id, Device.name,
                                                                                 Device.tags).tuples()]


@rule_app.command("list")
def rule_list(data_dir: DataDirOpt = None, database_url: DbUrlOpt = None) -> None:
    """List rules: id, on/off, severity, scope, what they check, channels."""
    from fleet_server.alerts.rules import RuleError, to_def
    from fleet_server.store.alert_models import AlertRule

    open_db(data_dir, database_url)
    rows = list(AlertRule.select().order_by(AlertRule.id))
    if not rows:
        typer.echo("no alert rules")
    for r in rows:
        try:
            what = to_def(r).describe()
        except RuleError as exc:
            what = f"(invalid: {exc})"
        chans = r.channels or "all"
        remind = f", remind every {r.reminder_s // 60} min" if r.reminder_s else ""
        typer.echo(f"{r.id:>4}  {'on ' if r.enabled else 'off'}  {r.severity:<8} {r.scope:<24} {r.name}\n"
                   f"      {what}; channels: {chans}{remind}")


def _save(kind: str, scope: str, severity: str, params: dict, name: str, channels: list[int] | None,
          reminder: str | None, rule_id: int | None, preview_only: bool) -> None:
    from fleet_server.alerts.preview import preview
    from fleet_server.alerts.rules import RuleDef, RuleError, parse_duration, save_rule, validate
    from fleet_server.store import audit
    from shared.clock import now_ms

    try:
        sc, model = validate(kind, scope, severity, params, name)
        remind = parse_duration(reminder, "--reminder") if reminder else 0
        p = preview(RuleDef(rule_id or 0, name, kind, sc, severity, model), device_views(), now_ms())
        typer.echo(f"preview: {p.summary()}")
        if preview_only:
            return
        row = save_rule(kind, scope, severity, params, name=name, channels=channels, reminder_s=remind,
                        rule_id=rule_id)
    except RuleError as exc:
        fail(str(exc))
    audit.record(_actor(), "alert_rule.update" if rule_id else "alert_rule.add", target=f"rule {row.id}",
                 detail=f"{row.name}: {row.kind} {row.scope} {row.severity}")
    typer.echo(f"rule {row.id} saved: {row.name}")


@rule_app.command("add")
def rule_add(kind: Annotated[str, typer.Argument(help="offline, metric, gateway, error_new, error_rate, budget, "
                                                  "server")],
             scope: Annotated[str, typer.Option(help="fleet, tag:<tag> or device:<id>")] = "fleet",
             severity: Annotated[str, typer.Option(help="warning or critical")] = "warning",
             for_: Annotated[str | None, typer.Option("--for", help="how long the condition must hold, e.g. 10m")]
             = None,
             clear_for: Annotated[str | None, typer.Option("--clear-for", help="offline/gateway: how long it must "
                                  "be back before it resolves")] = None,
             set_: SetOpt = None, name: Annotated[str, typer.Option(help="shown in messages")] = "",
             channel: Annotated[list[int] | None, typer.Option(help="channel id to notify (repeatable; none: "
                                "all channels)")] = None,
             reminder: Annotated[str | None, typer.Option(help="repeat while firing and not acknowledged, "
                                 "e.g. 4h")] = None,
             preview: Annotated[bool, typer.Option("--preview", help="only show how often it would have fired "
                                "in the last 7 days; do not save")] = False,
             data_dir: DataDirOpt = None, database_url: DbUrlOpt = None) -> None:
    """Add a rule (prints its 7-day preview first)."""
    open_db(data_dir, database_url)
    _save(kind, scope, severity, settings_of(set_, for_, clear_for), name, channel, reminder, None, preview)


@rule_app.command("edit")
def rule_edit(rule_id: int, set_: SetOpt = None,
              for_: Annotated[str | None, typer.Option("--for")] = None,
              clear_for: Annotated[str | None, typer.Option("--clear-for")] = None,
              scope: Annotated[str | None, typer.Option()] = None,
              severity: Annotated[str | None, typer.Option()] = None,
              name: Annotated[str | None, typer.Option()] = None,
              channel: Annotated[list[int] | None, typer.Option()] = None,
              reminder: Annotated[str | None, typer.Option(help="0 turns reminders off")] = None,
              data_dir: DataDirOpt = None, database_url: DbUrlOpt = None) -> None:
    """Change a rule: the given settings replace the stored ones, the rest stay."""
    from fleet_server.store.alert_models import AlertRule

    open_db(data_dir, database_url)
    row = AlertRule.get_or_none(AlertRule.id == rule_id)
    if row is None:
        fail(f"no alert rule {rule_id} (see 'alerts rule list')")
    params = {**json.loads(row.params_json or "{}"), **settings_of(set_, for_, clear_for)}
    chans = channel if channel is not None else [int(c) for c in row.channels.split(",") if c.strip().isdigit()]
    remind = reminder if reminder is not None else f"{row.reminder_s}s"
    _save(row.kind, scope or row.scope, severity or row.severity, params, row.name if name is None else name, chans,
          remind, rule_id, False)


@rule_app.command("preview")
def rule_preview(rule_id: int, data_dir: DataDirOpt = None, database_url: DbUrlOpt = None) -> None:
    """How often a stored rule would have fired over the last 7 days, with the latest firings."""
    from fleet_server.alerts.preview import preview
    from fleet_server.alerts.rules import RuleError, to_def
    from fleet_server.store.alert_models import AlertRule
    from shared.clock import now_ms

    open_db(data_dir, database_url)
    row = AlertRule.get_or_none(AlertRule.id == rule_id)
    if row is None:
        fail(f"no alert rule {rule_id}")
    try:
        p = preview(to_def(row), device_views(), now_ms())
    except RuleError as exc:
        fail(str(exc))
    typer.echo(p.summary())
    typer.echo("per day (oldest first): " + " ".join(str(n) for n in p.per_day))
    for subject, fired, resolved in p.examples:
        typer.echo(f"  {subject:<40} fired {when(fired)}  resolved {when(resolved) if resolved else '(still)'}")


def _toggle(rule_id: int, on: bool, data_dir: Path | None, database_url: str | None) -> None:
    from fleet_server.store import audit
    from fleet_server.store.alert_models import AlertRule
    from shared.clock import now_ms

    open_db(data_dir, database_url)
    if not AlertRule.update(enabled=on, updated_ms=now_ms()).where(AlertRule.id == rule_id).execute():
        fail(f"no alert rule {rule_id}")
    audit.record(_actor(), "alert_rule.enable" if on else "alert_rule.disable", target=f"rule {rule_id}")
    typer.echo(f"rule {rule_id} {'on' if on else 'off'}")


@rule_app.command("enable")
def rule_enable(rule_id: int, data_dir: DataDirOpt = None, database_url: DbUrlOpt = None) -> None:
    """Turn a rule on."""
    _toggle(rule_id, True, data_dir, database_url)


@rule_app.command("disable")
def rule_disable(rule_id: int, data_dir: DataDirOpt = None, database_url: DbUrlOpt = None) -> None:
    """Turn a rule off (its open incidents close without a message)."""
    _toggle(rule_id, False, data_dir, database_url)


@rule_app.command("delete")
def rule_delete(rule_id: int, data_dir: DataDirOpt = None, database_url: DbUrlOpt = None) -> None:
    """Delete a rule (its incident history stays)."""
    from fleet_server.store import audit
    from fleet_server.store.alert_models import AlertRule

    open_db(data_dir, database_url)
    row = AlertRule.get_or_none(AlertRule.id == rule_id)
    if row is None:
        fail(f"no alert rule {rule_id}")
    row.delete_instance()
    audit.record(_actor(), "alert_rule.delete", target=f"rule {rule_id}", detail=row.name)
    typer.echo(f"rule {rule_id} deleted")


@alerts_app.command("list")
def incidents(history: Annotated[bool, typer.Option("--history", help="also resolved incidents")] = False,
              limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
              data_dir: DataDirOpt = None, database_url: DbUrlOpt = None) -> None:
    """Firing incidents (and with --history the latest resolved ones)."""
    from fleet_server.alerts.views import incident_rows

    open_db(data_dir, database_url)
    rows = incident_rows(history=history, limit=limit)
    if not rows:
        typer.echo("nothing firing" if not history else "no incidents")
    for r in rows:
        ack = f", acknowledged by {r['acked_by']}" if r["acked_by"] else ""
        typer.echo(f"{r['id']:>6}  {r['state']:<8} {r['severity']:<8} {r['subject']:<30} {r['rule_name']}\n"
                   f"        since {when(r['started_ms'])}, duration {r['duration']}{ack}; "
                   f"{r['notifications']} notification(s); {r['summary']}")


@alerts_app.command("ack")
def ack(incident_id: int, data_dir: DataDirOpt = None, database_url: DbUrlOpt = None) -> None:
    """Acknowledge a firing incident: no more reminders (audited)."""
    from fleet_server.alerts.rules import RuleError
    from fleet_server.alerts.silences import acknowledge

    open_db(data_dir, database_url)
    try:
        acknowledge(incident_id, _actor())
    except RuleError as exc:
        fail(str(exc))
    typer.echo(f"incident {incident_id} acknowledged")


@alerts_app.command("snooze")
def snooze_cmd(scope: Annotated[str, typer.Argument(help="fleet, tag:<tag>, device:<id> or rule:<id>")],
               for_: Annotated[str, typer.Option("--for", help="e.g. 1h, 30m, 2d")] = "1h",
               reason: str = "", data_dir: DataDirOpt = None, database_url: DbUrlOpt = None) -> None:
    """No notifications for a scope for a while (incidents still open and close)."""
    from fleet_server.alerts.rules import RuleError, parse_duration
    from fleet_server.alerts.silences import snooze

    open_db(data_dir, database_url)
    try:
        row = snooze(scope, parse_duration(for_, "--for"), _actor(), reason)
    except RuleError as exc:
        fail(str(exc))
    typer.echo(f"silence {row.id}: {row.scope} snoozed until {when(row.end_ms)}")


@alerts_app.command("maintenance")
def maintenance_cmd(scope: Annotated[str, typer.Argument(help="fleet, tag:<tag>, device:<id> or rule:<id>")],
                    start: Annotated[str | None, typer.Option(help="one-off: ISO time, e.g. 2026-04-01T22:00")]
                    = None,
                    end: Annotated[str | None, typer.Option(help="one-off: ISO time")] = None,
                    weekdays: Annotated[str | None, typer.Option(help="recurring: e.g. sat,sun or mon-fri")] = None,
                    at: Annotated[str, typer.Option(help="recurring: local start time HH:MM")] = "",
                    duration: Annotated[str, typer.Option(help="recurring: e.g. 2h")] = "1h",
                    zone: Annotated[str, typer.Option(help="IANA time zone of the times")] = "UTC",
                    reason: str = "", data_dir: DataDirOpt = None, database_url: DbUrlOpt = None) -> None:
    """A maintenance window (one-off --start/--end, or recurring --weekdays/--at/--duration)."""
    from zoneinfo import ZoneInfo

    from fleet_server.alerts.rules import RuleError, parse_duration
    from fleet_server.alerts.silences import check_zone, maintenance

    open_db(data_dir, database_url)
    try:
        tz = check_zone(zone)
        if weekdays:
            row = maintenance(scope, _actor(), weekdays=parse_weekdays(weekdays), at=at,
                              duration_s=parse_duration(duration, "--duration"), zone=zone, reason=reason)
        else:
            if not start or not end:
                fail("give --start and --end (one-off), or --weekdays, --at and --duration (recurring)")
            ms = [int(datetime.fromisoformat(t).replace(tzinfo=datetime.fromisoformat(t).tzinfo or ZoneInfo(zone))
                      .timestamp() * 1000) for t in (start, end)]
            row = maintenance(scope, _actor(), start_ms=ms[0], end_ms=ms[1], zone=zone, reason=reason)
    except ValueError as exc:
        fail(str(exc) if isinstance(exc, RuleError) else f"--start/--end: use ISO times such as 2026-04-01T22:00 "
             f"({exc})")
    typer.echo(f"maintenance window {row.id} for {row.scope} saved ({tz.key})")


def parse_weekdays(text: str) -> list[int]:
    """``sat,sun`` / ``mon-fri`` / ``0,6`` → weekday numbers (Monday 0). Raises RuleError."""
    from fleet_server.alerts.rules import RuleError

    out: set[int] = set()
    for part in text.lower().replace(" ", "").split(","):
        a, _, b = part.partition("-")
        try:
            lo = WEEKDAYS.index(a[:3]) if not a.isdigit() else int(a)
            hi = (WEEKDAYS.index(b[:3]) if not b.isdigit() else int(b)) if b else lo
        except ValueError:
            raise RuleError(f"weekdays {text!r}: use mon,tue,… or ranges such as mon-fri") from None
        out.update(range(lo, hi + 1))
    return sorted(out)


@alerts_app.command("silences")
def silences(data_dir: DataDirOpt = None, database_url: DbUrlOpt = None) -> None:
    """Snoozes and maintenance windows that are active or coming."""
    from fleet_server.alerts.views import silence_rows

    open_db(data_dir, database_url)
    rows = silence_rows()
    if not rows:
        typer.echo("no snoozes or maintenance windows")
    for r in rows:
        typer.echo(f"{r['id']:>4}  {r['kind']:<11} {r['scope']:<28} {r['when']}  by {r['created_by']}"
                   f"{'  (active)' if r['active'] else ''}{'  ' + r['reason'] if r['reason'] else ''}")


@alerts_app.command("unsilence")
def unsilence(silence_id: int, data_dir: DataDirOpt = None, database_url: DbUrlOpt = None) -> None:
    """End a snooze or delete a maintenance window."""
    from fleet_server.alerts.rules import RuleError
    from fleet_server.alerts.silences import remove_silence

    open_db(data_dir, database_url)
    try:
        remove_silence(silence_id, _actor())
    except RuleError as exc:
        fail(str(exc))
    typer.echo(f"silence {silence_id} removed")


@alerts_app.command("settings")
def settings(dashboard_url: Annotated[str | None, typer.Option(help="the address messages link to, e.g. "
                                      "https://fleet.example.com")] = None,
             zone: Annotated[str | None, typer.Option(help="IANA time zone of times in messages")] = None,
             data_dir: DataDirOpt = None, database_url: DbUrlOpt = None) -> None:
    """Show or change the alert settings."""
    from fleet_server.alerts.rules import RuleError
    from fleet_server.alerts.settings import DEFAULT_URL, get_setting, set_setting

    open_db(data_dir, database_url)
    try:
        if dashboard_url is not None:
            set_setting("dashboard_url", dashboard_url, _actor())
        if zone is not None:
            set_setting("zone", zone, _actor())
    except RuleError as exc:
        fail(str(exc))
    typer.echo(f"dashboard_url: {get_setting('dashboard_url') or DEFAULT_URL + ' (default)'}\n"
               f"zone: {get_setting('zone') or 'UTC (default)'}")


@alerts_app.command("log")
def log_cmd(limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
            data_dir: DataDirOpt = None, database_url: DbUrlOpt = None) -> None:
    """The notification log: the latest messages, their channel, state, attempts and last error."""
    from fleet_server.alerts.views import delivery_rows

    open_db(data_dir, database_url)
    rows = delivery_rows(limit)
    if not rows:
        typer.echo("no notifications yet")
    for r in rows:
        err = f"\n        last error: {r['error']}" if r["error"] else ""
        typer.echo(f"{r['id']:>6}  {when(r['created_ms'])}  {r['channel']:<16} {r['state']:<8} "
                   f"{r['attempts']} attempt(s)  {r['title']}{err}")
