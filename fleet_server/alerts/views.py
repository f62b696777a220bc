"""Read-only queries the Alerts page, the header badge, the CLI and the REST API share: incidents
with their notifications, rules, channels (masked), silences and the notification log. Plain dicts
(JSON-ready); times epoch ms UTC."""

from __future__ import annotations

import json

from peewee import fn

from fleet_server.alerts.rules import RuleError, duration_text, to_def
from fleet_server.alerts.silences import active_until
from fleet_server.store.alert_models import AlertChannel, AlertDelivery, AlertIncident, AlertRule, AlertSilence
from shared.clock import now_ms


def firing_counts() -> dict[str, int]:
    """``{"critical": n, "warning": m}`` of firing incidents (one small GROUP BY on an index)."""
    out = {"critical": 0, "warning": 0}
    for sev, n in (AlertIncident.select(AlertIncident.severity, fn.COUNT(AlertIncident.id))
                   .where(AlertIncident.state == "firing").group_by(AlertIncident.severity).tuples()):
        out[sev] = out.get(sev, 0) + int(n)
    return out


def _rule_names() -> dict[int, tuple[str, str]]:
    return {r: (n, k) for r, n, k in AlertRule.select(AlertRule.id, AlertRule.name, AlertRule.kind).tuples()}


def _notifications(ids: set[int], since_ms: int) -> dict[int, int]:
    """Messages sent per incident id (from the log rows since ``since_ms``)."""
    out: dict[int, int] = {}
    if not ids:
        return out
    q = (AlertDelivery.select(AlertDelivery.incidents).where((AlertDelivery.created_ms >= since_ms)
                                                              & (AlertDelivery.state == "sent")).tuples())
    for (text,) in q:
        for part in text.strip(",").split(","):
            if part.isdigit() and int(part) in ids:
                out[int(part)] = out.get(int(part), 0) + 1
    return out


def incident_rows(history: bool = False, limit: int = 50, subject: str | None = None, state: str | None = None,
                  before_ms: int | None = None, now: int | None = None) -> list[dict]:
    """Firing incidents, newest first, then (with ``history``) resolved ones by end time, newest
    first; at most ``limit`` in all. ``state`` picks one state (pending, firing, resolved);
    ``subject`` one subject; ``before_ms`` pages resolved ones by end time."""
    now = now_ms() if now is None else now
    rows: list[AlertIncident] = []
    want = [state] if state else (["firing", "pending"] + (["resolved"] if history else []))
    for st in want:
        q = AlertIncident.select().where(AlertIncident.state == st)
        if subject:
            q = q.where(AlertIncident.subject == subject)
        if st == "resolved":
            if before_ms is not None:
                q = q.where(AlertIncident.resolved_ms < before_ms)
            q = q.order_by(AlertIncident.resolved_ms.desc())
        else:
            q = q.order_by(AlertIncident.started_ms.desc())
        rows += list(q.limit(max(0, limit - len(rows))))
    names = _rule_names()
    since = min((r.started_ms for r in rows), default=now)
    sent = _notifications({r.id for r in rows}, since)
    out = []
    for r in rows:
        name, kind = names.get(r.rule, (f"rule {r.rule} (deleted)", ""))
        end = r.resolved_ms if r.resolved_ms is not None else now
        out.append({"id": r.id, "rule_id": r.rule, "rule_name": name, "kind": kind, "severity": r.severity,
                    "state": r.state, "subject": r.subject, "device_id": device_of(r.subject),
                    "started_ms": r.started_ms, "fired_ms": r.fired_ms, "resolved_ms": r.resolved_ms,
                    "duration_s": max(0, end - r.started_ms) // 1000, "duration": duration_text((end - r.started_ms)
                                                                                                / 1000),
                    "value": r.value, "threshold": r.threshold, "summary": r.summary, "period": r.period or None,
                    "level_pct": r.level or None, "acked_by": r.acked_by, "acked_ms": r.acked_ms,
                    "silenced": r.silenced, "notifications": sent.get(r.id, 0)})
    return out


def device_of(subject: str) -> str | None:
    """The device id in an incident subject (a device, or ``<device>|<fingerprint>``), else None."""
    if subject in ("fleet", "server") or subject.startswith("tag:"):
        return None
    return subject.split("|", 1)[0]


def rule_rows() -> list[dict]:
    """Every rule with its settings and a one-line description."""
    out = []
    for r in AlertRule.select().order_by(AlertRule.id):
        try:
            what = to_def(r).describe()
        except RuleError as exc:
            what = f"invalid: {exc}"
        out.append({"id": r.id, "name": r.name, "kind": r.kind, "scope": r.scope, "severity": r.severity,
                    "settings": json.loads(r.params_json or "{}"), "describe": what,
                    "channels": [int(c) for c in r.channels.split(",") if c.strip().isdigit()],
                    "reminder_s": r.reminder_s, "enabled": r.enabled, "created_ms": r.created_ms,
                    "updated_ms": r.updated_ms})
    return out


def channel_rows() -> list[dict]:
    """Channels: masked URL only, quiet hours, and the latest message's state and time."""
    last = {}
    for ch, state, ms in (AlertDelivery.select(AlertDelivery.channel, AlertDelivery.state, AlertDelivery.created_ms)
                          .order_by(AlertDelivery.id.desc()).limit(500).tuples()):
        last.setdefault(ch, (state, ms))
    out = []
    for c in AlertChannel.select().order_by(AlertChannel.id):
        st = last.get(c.id)
        out.append({"id": c.id, "name": c.name, "service": c.service, "url_masked": c.url_masked,
                    "enabled": c.enabled, "quiet": f"{c.quiet_start}-{c.quiet_end} {c.quiet_zone}" if c.quiet_start
                    else "none", "quiet_start": c.quiet_start, "quiet_end": c.quiet_end, "quiet_zone": c.quiet_zone,
                    "last": f"{st[0]} {duration_text((now_ms() - st[1]) / 1000)} ago" if st else "never",
                    "created_by": c.created_by})
    return out


def silence_rows(now: int | None = None) -> list[dict]:
    """Snoozes and maintenance windows that are active or still to come."""
    now = now_ms() if now is None else now
    out = []
    for s in AlertSilence.select().where(AlertSilence.end_ms.is_null() | (AlertSilence.end_ms > now)).order_by(
            AlertSilence.id):
        end = active_until(s, now)
        if s.weekdays:
            days = ",".join(("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")[int(d)] for d in s.weekdays.split(","))
            text = f"every {days} {s.at} {s.zone} for {duration_text(s.duration_s)}"
        else:
            text = f"until {duration_text(max(0, (s.end_ms or now) - now) / 1000)} from now" if s.start_ms <= now \
                else f"from {s.start_ms} to {s.end_ms}"
        out.append({"id": s.id, "kind": s.kind, "scope": s.scope, "when": text, "active": end is not None,
                    "start_ms": s.start_ms, "end_ms": s.end_ms, "active_until_ms": end, "reason": s.reason,
                    "created_by": s.created_by})
    return out


def delivery_rows(limit: int = 50) -> list[dict]:
    """The notification log, newest first: channel name, state, attempts, last error (no secrets)."""
    names = dict(AlertChannel.select(AlertChannel.id, AlertChannel.name).tuples())
    out = []
    for d in AlertDelivery.select().order_by(AlertDelivery.id.desc()).limit(limit):
        out.append({"id": d.id, "channel": names.get(d.channel, f"#{d.channel} (removed)"), "channel_id": d.channel,
                    "created_ms": d.created_ms, "kind": d.kind, "severity": d.severity, "title": d.title,
                    "state": d.state, "attempts": d.attempts, "sent_ms": d.sent_ms, "error": d.error,
                    "incidents": len([p for p in d.incidents.split(",") if p])})
    return out
