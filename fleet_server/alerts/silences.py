"""Silences: snoozes and maintenance windows (no notifications for a scope while active), quiet
hours per channel (non-critical messages wait until they end), and acknowledgements.

A silence's scope is ``fleet``, ``tag:<tag>``, ``device:<id>`` or ``rule:<id>``. A snooze and a
one-off maintenance window run from ``start_ms`` to ``end_ms``; a recurring maintenance window
starts at local time ``at`` (``HH:MM``) on each of ``weekdays`` (Monday = 0) in ``zone`` and lasts
``duration_s``. Incidents still open and close while silenced (the Alerts page shows them); only
their notifications are held back, and a firing incident still firing when its silence ends is
notified then. Every change is audited (``alert.snooze``, ``alert.maintenance``, ``alert.unsilence``,
``alert.ack``).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fleet_server.alerts.rules import RuleError, parse_scope
from fleet_server.store import audit
from fleet_server.store.alert_models import AlertChannel, AlertIncident, AlertSilence

MAX_SNOOZE_S = 30 * 86400
DEVICE_SNOOZE_MAX_S = 36 * 3600
"""Longest snooze a device may ask for from its tray ("until tomorrow" is at most this far)."""
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def _now() -> int:
    return int(time.time() * 1000)


def check_zone(name: str) -> ZoneInfo:
    """The zone of an IANA name, or :class:`RuleError` naming the fix."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise RuleError(f"unknown time zone {name!r}: use an IANA name such as Europe/Berlin or UTC") from None


def check_hhmm(text: str, what: str) -> str:
    """``HH:MM`` (24 h) or :class:`RuleError`."""
    if not _HHMM.match(text or ""):
        raise RuleError(f"{what} {text!r}: use HH:MM (24 hours), e.g. 22:00")
    return text


def _silence_scope(scope: str) -> str:
    if scope.startswith("rule:"):
        if not scope[5:].isdigit():
            raise RuleError(f"scope {scope!r}: use rule:<rule id>")
        return scope
    return str(parse_scope(scope))


def snooze(scope: str, seconds: int, actor: str, reason: str = "", now: int | None = None,
           max_s: int = MAX_SNOOZE_S) -> AlertSilence:
    """No notifications for ``scope`` for ``seconds`` from now. Raises :class:`RuleError`."""
    scope = _silence_scope(scope)
    if not 60 <= seconds <= max_s:
        raise RuleError(f"snooze: between 1 minute and {max_s // 86400 or 1} days")
    now = _now() if now is None else now
    row = AlertSilence.create(kind="snooze", scope=scope, start_ms=now, end_ms=now + seconds * 1000,
                              reason=reason[:300], created_by=actor[:100], created_ms=now)
    audit.record(actor, "alert.snooze", target=scope, detail=f"for {seconds // 60} min" + (f": {reason}" if reason
                                                                                            else ""))
    return row


def device_snooze(device_id: str, until_ms: int, reason: str, now: int) -> AlertSilence | None:
    """A device's own snooze request (from its tray, over MQTT): no notifications about it until
    ``until_ms``, at most :data:`DEVICE_SNOOZE_MAX_S` from now; a time not in the future ends the
    device's own snoozes instead. Runs inside ingest's transaction; audited as ``device:<id>``."""
    actor = f"device:{device_id}"
    scope = f"device:{device_id}"
    if until_ms <= now:
        n = AlertSilence.delete().where((AlertSilence.scope == scope) & (AlertSilence.created_by == actor)
                                        & (AlertSilence.end_ms > now)).execute()
        if n:
            audit.record(actor, "alert.unsilence", target=scope, detail="from the device's tray")
        return None
    end = min(until_ms, now + DEVICE_SNOOZE_MAX_S * 1000)
    row = AlertSilence.create(kind="snooze", scope=scope, start_ms=now, end_ms=end, reason=(reason or "from the "
                              "device's tray")[:300], created_by=actor, created_ms=now)
    audit.record(actor, "alert.snooze", target=scope, detail=f"for {(end - now) // 60_000} min from the device's tray")
    return row


def maintenance(scope: str, actor: str, *, start_ms: int | None = None, end_ms: int | None = None,
                weekdays: list[int] | None = None, at: str = "", duration_s: int = 0, zone: str = "UTC",
                reason: str = "") -> AlertSilence:
    """A maintenance window: one-off (``start_ms``..``end_ms``) or recurring (``weekdays`` + ``at``
    + ``duration_s`` in ``zone``). Raises :class:`RuleError`."""
    scope = _silence_scope(scope)
    check_zone(zone)
    now = _now()
    if weekdays:
        if any(d < 0 or d > 6 for d in weekdays):
            raise RuleError("weekdays: 0 (Monday) to 6 (Sunday)")
        check_hhmm(at, "at")
        if not 60 <= duration_s <= 7 * 86400:
            raise RuleError("duration: between 1 minute and 7 days")
        row = AlertSilence.create(kind="maintenance", scope=scope, start_ms=now, end_ms=None,
                                  weekdays=",".join(str(d) for d in sorted(set(weekdays))), at=at,
                                  duration_s=duration_s, zone=zone, reason=reason[:300], created_by=actor[:100],
                                  created_ms=now)
        detail = f"every {row.weekdays} at {at} {zone} for {duration_s // 60} min"
    else:
        if start_ms is None or end_ms is None or end_ms <= start_ms:
            raise RuleError("maintenance: give a start and an end after it, or weekdays + at + duration")
        row = AlertSilence.create(kind="maintenance", scope=scope, start_ms=start_ms, end_ms=end_ms, zone=zone,
                                  reason=reason[:300], created_by=actor[:100], created_ms=now)
        detail = f"{start_ms} to {end_ms}"
    audit.record(actor, "alert.maintenance", target=scope, detail=detail + (f": {reason}" if reason else ""))
    return row


def remove_silence(silence_id: int, actor: str) -> None:
    """End a snooze or delete a maintenance window. Raises :class:`RuleError`."""
    row = AlertSilence.get_or_none(AlertSilence.id == silence_id)
    if row is None:
        raise RuleError(f"no silence {silence_id}")
    row.delete_instance()
    audit.record(actor, "alert.unsilence", target=row.scope, detail=f"{row.kind} {silence_id}")


def acknowledge(incident_id: int, actor: str, now: int | None = None) -> AlertIncident:
    """Acknowledge a firing incident: no more reminders; the page shows who. Raises :class:`RuleError`."""
    row = AlertIncident.get_or_none(AlertIncident.id == incident_id)
    if row is None or row.state != "firing":
        raise RuleError(f"incident {incident_id} is not firing")
    now = _now() if now is None else now
    AlertIncident.update(acked_by=actor[:100], acked_ms=now).where(AlertIncident.id == incident_id).execute()
    audit.record(actor, "alert.ack", target=f"incident {incident_id}", detail=row.summary[:200])
    return AlertIncident.get_by_id(incident_id)


@dataclass(frozen=True)
class Window:
    """An active silence, as matched: its id, kind, scope and when it ends (epoch ms)."""

    id: int
    kind: str
    scope: str
    end_ms: int


def active_until(row: AlertSilence, now: int) -> int | None:
    """End (epoch ms) of ``row``'s window that contains ``now``, or None when it is not active."""
    if not row.weekdays:
        return row.end_ms if row.start_ms <= now < (row.end_ms or 0) else None
    try:
        zone = ZoneInfo(row.zone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return None
    days = {int(d) for d in row.weekdays.split(",") if d.strip().isdigit()}
    hh, mm = (int(x) for x in row.at.split(":"))
    local = datetime.fromtimestamp(now / 1000, zone)
    for back in range(0, 8):  # a window that started up to 7 days ago may still run
        day = (local - timedelta(days=back)).date()
        if day.weekday() not in days:
            continue
        start = datetime(day.year, day.month, day.day, hh, mm, tzinfo=zone)
        start_ms = int(start.timestamp() * 1000)
        if start_ms <= now < start_ms + row.duration_s * 1000:
            return start_ms + row.duration_s * 1000
        if start_ms + 7 * 86400_000 < now:
            break
    return None


class SilenceBook:
    """The silences in force, re-read by :meth:`refresh` (a few rows), matched per incident."""

    def __init__(self) -> None:
        self.rows: list[AlertSilence] = []

    def refresh(self, now: int) -> None:
        """Read the silences that are or may become active (recurring ones, and one-offs not ended)."""
        self.rows = list(AlertSilence.select().where(AlertSilence.end_ms.is_null() | (AlertSilence.end_ms > now)))

    def match(self, rule_id: int, device_id: str | None, tags: tuple[str, ...], subject: str, now: int
              ) -> Window | None:
        """The first active silence covering this rule and subject (a device and its tags, or an
        aggregate subject such as ``fleet`` or ``tag:<t>``), else None."""
        for row in self.rows:
            end = active_until(row, now)
            if end is None:
                continue
            s = row.scope
            if (s == "fleet" or s == f"rule:{rule_id}" or (device_id and s == f"device:{device_id}")
                    or (s.startswith("tag:") and (s[4:] in tags or subject == s))):
                return Window(row.id, row.kind, s, end)
        return None


def quiet_until(channel: AlertChannel, now: int) -> int | None:
    """If ``channel`` is in its quiet hours at ``now``, when they end (epoch ms); else None.
    Quiet hours may cross midnight (``22:00``-``07:00``)."""
    if not channel.quiet_start or not channel.quiet_end or channel.quiet_start == channel.quiet_end:
        return None
    try:
        zone = ZoneInfo(channel.quiet_zone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return None
    local = datetime.fromtimestamp(now / 1000, zone)
    (sh, sm), (eh, em) = ((int(x) for x in t.split(":")) for t in (channel.quiet_start, channel.quiet_end))
    for back in (1, 0):
        day = (local - timedelta(days=back)).date()
        start = datetime(day.year, day.month, day.day, sh, sm, tzinfo=zone)
        end_day = day if (eh, em) > (sh, sm) else day + timedelta(days=1)
        end = datetime(end_day.year, end_day.month, end_day.day, eh, em, tzinfo=zone)
        if start <= local < end:
            return int(end.timestamp() * 1000)
    return None
