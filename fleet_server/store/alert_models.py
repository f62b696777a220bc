"""peewee models of alerting (:mod:`fleet_server.alerts`): rules, channels, incidents, the
notification queue and log, silences, seen log fingerprints, settings.

Timestamps are epoch milliseconds UTC. A rule's kind-specific settings are a JSON object
(``params_json``) validated by :mod:`fleet_server.alerts.rules`; a channel's Apprise URL is stored
encrypted (:mod:`fleet_server.alerts.channels`), never in clear.
"""

from __future__ import annotations

from peewee import BigIntegerField, BooleanField, CharField, CompositeKey, FloatField, IntegerField, TextField

from fleet_server.store.models import BaseModel


class AlertRule(BaseModel):
    """One alert rule. ``kind``: offline, metric, gateway, error_new, error_rate, budget, server.

    ``scope`` is ``fleet``, ``tag:<tag>`` or ``device:<id>`` (a device rule overrides a tag rule
    overrides a fleet rule of the same kind, subject and severity). ``channels`` is a
    comma-separated list of channel ids; empty means every channel. ``reminder_s`` 0 = no reminders.
    """

    name = CharField(max_length=100)
    kind = CharField(max_length=16)
    scope = CharField(max_length=120, default="fleet")
    severity = CharField(max_length=8, default="warning")
    params_json = TextField(default="{}")
    channels = CharField(max_length=500, default="")
    reminder_s = IntegerField(default=0)
    enabled = BooleanField(default=True)
    created_ms = BigIntegerField()
    updated_ms = BigIntegerField()


class AlertChannel(BaseModel):
    """Where notifications go: one Apprise URL (``url_secret``: encrypted, see
    :mod:`fleet_server.alerts.channels`; ``url_masked``: what may be shown). Quiet hours
    ``quiet_start``/``quiet_end`` are ``HH:MM`` in ``quiet_zone`` (empty: none)."""

    name = CharField(max_length=100, unique=True)
    url_secret = TextField()
    url_masked = CharField(max_length=500)
    service = CharField(max_length=60, default="")
    enabled = BooleanField(default=True)
    quiet_start = CharField(max_length=5, default="")
    quiet_end = CharField(max_length=5, default="")
    quiet_zone = CharField(max_length=64, default="UTC")
    created_ms = BigIntegerField()
    created_by = CharField(max_length=100, default="")


class AlertIncident(BaseModel):
    """One rule × subject episode: ``state`` pending → firing → resolved (a pending one that clears
    is deleted: it never fired). ``subject`` is a device id, ``fleet``, ``tag:<tag>`` or ``server``.

    ``value``/``threshold`` are in the rule's unit; ``period`` is a budget's period key
    (``2026-03-29`` or ``2026-03``) and ``level`` the highest budget step (percent) notified.
    ``notified`` is True once a firing message was queued (then the resolve sends a recovery).
    """

    rule = IntegerField(index=True)
    subject = CharField(max_length=120)
    state = CharField(max_length=10, index=True)
    severity = CharField(max_length=8)
    started_ms = BigIntegerField()
    fired_ms = BigIntegerField(null=True)
    resolved_ms = BigIntegerField(null=True, index=True)
    value = FloatField(null=True)
    threshold = FloatField(null=True)
    summary = CharField(max_length=500, default="")
    period = CharField(max_length=16, default="")
    level = IntegerField(default=0)
    notified = BooleanField(default=False)
    last_notified_ms = BigIntegerField(null=True)
    acked_by = CharField(max_length=100, null=True)
    acked_ms = BigIntegerField(null=True)
    silenced = BooleanField(default=False)

    class Meta:
        indexes = ((("rule", "subject", "state"), False), (("fired_ms",), False))


class AlertEvent(BaseModel):
    """An incident change waiting to be turned into notifications (the grouping window collects
    these): ``kind`` firing, resolved, reminder or budget. Written in the transaction of the change,
    deleted when its notifications are queued, so a restart neither loses nor repeats one.
    ``headline`` is one line (``web-1 offline for 5 min``), ``text`` the details; ``channels`` the
    rule's channel ids (empty: every channel)."""

    incident = IntegerField()
    rule = IntegerField()
    kind = CharField(max_length=10)
    severity = CharField(max_length=8)
    created_ms = BigIntegerField(index=True)
    subject = CharField(max_length=200)
    headline = CharField(max_length=300)
    text = CharField(max_length=1500)
    channels = CharField(max_length=500, default="")


class AlertDelivery(BaseModel):
    """One message to one channel: the notification log. ``state`` queued, deferred (quiet hours),
    sent, failed (retrying), gave_up. ``incidents`` lists the incident ids it covers."""

    channel = IntegerField(index=True)
    created_ms = BigIntegerField(index=True)
    kind = CharField(max_length=10)
    severity = CharField(max_length=8)
    title = CharField(max_length=300)
    body = TextField()
    incidents = TextField(default="")
    state = CharField(max_length=10, index=True)
    attempts = IntegerField(default=0)
    next_ms = BigIntegerField(default=0)
    sent_ms = BigIntegerField(null=True)
    error = CharField(max_length=1000, default="")


class AlertAttempt(BaseModel):
    """One try of sending one delivery: ``ok``, how long it took, the error (secrets removed)."""

    delivery = IntegerField(index=True)
    ts_ms = BigIntegerField()
    ok = BooleanField()
    duration_ms = IntegerField()
    error = CharField(max_length=1000, default="")


class AlertSilence(BaseModel):
    """No notifications for a scope while active. ``kind`` snooze (``start_ms``..``end_ms``) or
    maintenance (one-off the same; recurring: ``weekdays`` ``0,1,…`` Monday = 0, local ``at`` HH:MM,
    ``duration_s``, in ``zone``). ``scope``: ``fleet``, ``tag:<t>``, ``device:<id>`` or ``rule:<id>``."""

    kind = CharField(max_length=12)
    scope = CharField(max_length=120)
    start_ms = BigIntegerField()
    end_ms = BigIntegerField(null=True)
    weekdays = CharField(max_length=20, default="")
    at = CharField(max_length=5, default="")
    duration_s = IntegerField(default=0)
    zone = CharField(max_length=64, default="UTC")
    reason = CharField(max_length=300, default="")
    created_by = CharField(max_length=100)
    created_ms = BigIntegerField()


class AlertFingerprint(BaseModel):
    """A log fingerprint already seen, fleet-wide (``device`` = ``""``) or on one device."""

    device = CharField(max_length=63)
    fingerprint = CharField(max_length=64)
    first_ms = BigIntegerField()

    class Meta:
        primary_key = CompositeKey("device", "fingerprint")


class AlertSetting(BaseModel):
    """Alerting settings, ``key`` → text value (e.g. ``dashboard_url``, ``defaults_seeded``)."""

    key = CharField(primary_key=True, max_length=64)
    value = TextField()


ALERT_MODELS = [AlertRule, AlertChannel, AlertIncident, AlertEvent, AlertDelivery, AlertAttempt, AlertSilence,
                AlertFingerprint, AlertSetting]
"""Every alerting table (created by migration 5)."""
