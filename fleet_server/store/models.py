"""peewee models: one per table. Timestamps are epoch milliseconds UTC (BigInteger).

The database is bound at run time through :data:`db` (a proxy), so the same models serve
SQLite (default) and PostgreSQL.
"""

from __future__ import annotations

import time

from peewee import (
    BigIntegerField,
    BooleanField,
    CharField,
    CompositeKey,
    DatabaseProxy,
    FloatField,
    IntegerField,
    Model,
    TextField,
)

db = DatabaseProxy()


class BaseModel(Model):
    class Meta:
        database = db
        legacy_table_names = False


class Device(BaseModel):
    """An enrolled device. ``id`` is the device id (= MQTT username and client id).

    The API key itself is never stored: ``key_hash`` is its SHA-256 (hex; keys are 256-bit random,
    so a slow hash adds nothing) and ``key_hint`` its last four characters.
    """

    id = CharField(primary_key=True, max_length=63)
    name = CharField(max_length=200)
    tags = CharField(max_length=500, default="")
    key_hash = CharField(max_length=64)
    key_hint = CharField(max_length=8)
    created_ms = BigIntegerField()
    revoked_ms = BigIntegerField(null=True)
    # latest known state, kept by ingest (the dashboard reads the in-memory cache instead)
    status = CharField(max_length=16, default="unknown")
    status_reason = CharField(max_length=200, null=True)
    status_ms = BigIntegerField(null=True)
    last_seen_ms = BigIntegerField(null=True)
    meta_json = TextField(null=True)


def _now_ms() -> int:
    return int(time.time() * 1000)


class Sample(BaseModel):
    """One telemetry sample of one device. Units as in :class:`shared.schemas.Telemetry`.

    ``received_ms`` is when the server stored the row (epoch ms; the store's clock, see
    :mod:`fleet_server.store.history.receive_clock`): the rollup job follows it, so a sample that
    arrives late (a device clock that jumped, a resend after an outage) still reaches the rollups.
    NULL only on rows stored before schema version 5 (those were rolled up by then).
    """

    device = CharField(max_length=63)
    ts = BigIntegerField()
    cpu_pct = FloatField()
    mem_used_bytes = BigIntegerField()
    mem_total_bytes = BigIntegerField()
    mem_pct = FloatField()
    disk_used_bytes = BigIntegerField()
    disk_total_bytes = BigIntegerField()
    disk_pct = FloatField()
    swap_pct = FloatField()
    net_rx_bps = FloatField()
    net_tx_bps = FloatField()
    load1 = FloatField(null=True)
    load5 = FloatField(null=True)
    load15 = FloatField(null=True)
    uptime_s = FloatField()
    openclaw_up = BooleanField(null=True)
    received_ms = BigIntegerField(null=True, index=True, default=_now_ms)

    class Meta:
        primary_key = CompositeKey("device", "ts")


class StatusEvent(BaseModel):
    """An availability change reported on ``…/status`` (or decided by the server, e.g. revoked)."""

    device = CharField(max_length=63, index=True)
    ts = BigIntegerField(index=True)
    state = CharField(max_length=16)
    reason = CharField(max_length=200, null=True)


class UsageRecord(BaseModel):
    """One assistant message's token usage; ``id`` is the agent's stable record id, unique per device
    (idempotent insert; one device cannot take another's ids)."""

    device = CharField(max_length=63)
    id = CharField(max_length=64)
    ts = BigIntegerField(index=True)
    agent_id = CharField(max_length=200)
    session_id = CharField(max_length=200)
    provider = CharField(max_length=200)
    model = CharField(max_length=200)
    input_tokens = BigIntegerField()
    output_tokens = BigIntegerField()
    cache_read_tokens = BigIntegerField()
    cache_write_tokens = BigIntegerField()
    total_tokens = BigIntegerField()
    cost_usd = FloatField(null=True)
    source = CharField(max_length=16)
    failed = BooleanField(default=False)
    """Assistant message with ``stopReason: "error"`` (a failed turn; usually zero tokens)."""
    priced_usd = FloatField(null=True)
    """Cost from the matching price rule (USD); None when no rule matches (then ``cost_usd`` counts)."""

    class Meta:
        primary_key = CompositeKey("device", "id")
        indexes = ((("ts", "model"), False),)


class _UsageSumColumns(BaseModel):
    """The sums of a usage rollup (:class:`fleet_server.store.usage.sums.UsageSums` reads them;
    ``records`` are its ``messages``, ``priced_records`` its ``priced_messages``)."""

    records = IntegerField(default=0)
    input_tokens = BigIntegerField(default=0)
    output_tokens = BigIntegerField(default=0)
    cache_read_tokens = BigIntegerField(default=0)
    cache_write_tokens = BigIntegerField(default=0)
    total_tokens = BigIntegerField(default=0)
    failed_turns = BigIntegerField(default=0)
    """Assistant messages with ``stopReason: "error"``."""
    cost_usd = FloatField(default=0.0)
    priced_records = IntegerField(default=0)
    unpriced_tokens = BigIntegerField(default=0)
    """Tokens of records that have neither a price rule nor a cost recorded by OpenClaw."""


class UsageHourly(_UsageSumColumns):
    """Token-usage rollup per device and UTC hour (``hour_ms`` = start of the hour, epoch ms).

    Kept by ingest in the same transaction as the records it adds, so it never double counts.
    Hours (not days) so "today" can be summed in the viewer's time zone.
    """

    device = CharField(max_length=63)
    hour_ms = BigIntegerField(index=True)

    class Meta:
        primary_key = CompositeKey("device", "hour_ms")


class UsageTotal(_UsageSumColumns):
    """All-time token-usage sums per device: the running total of its hourly rollup, kept by ingest
    in the same transaction (and by re-pricing), so "all time" is one row per device."""

    device = CharField(primary_key=True, max_length=63)


class LogRecord(BaseModel):
    """One OpenClaw warning or error; ``id`` is the agent's stable record id, unique per device
    (idempotent insert)."""

    device = CharField(max_length=63)
    id = CharField(max_length=64)
    ts = BigIntegerField(index=True)
    level = CharField(max_length=8)
    subsystem = CharField(max_length=200)
    message = TextField()
    fingerprint = CharField(max_length=64, index=True)
    source = CharField(max_length=16)
    agent_id = CharField(max_length=200, null=True)
    session_id = CharField(max_length=200, null=True)
    session_key = CharField(max_length=200, null=True)
    run_id = CharField(max_length=200, null=True)

    class Meta:
        primary_key = CompositeKey("device", "id")
        indexes = (
            (("ts", "device", "id"), False),  # newest-first keyset paging
            (("device", "ts", "id"), False),
            (("fingerprint", "ts", "device", "id"), False),  # one group's occurrences
        )


class RejectCount(BaseModel):
    """Messages the server rejected, per device (``""`` when the topic had none) and reason."""

    device = CharField(max_length=63)
    reason = CharField(max_length=32)
    count = IntegerField(default=0)
    last_ms = BigIntegerField()
    last_error = CharField(max_length=500)

    class Meta:
        primary_key = CompositeKey("device", "reason")


# --- sessions, runs, tool calls, version changes (fleet_server.store.sessions) ---

class AgentSession(BaseModel):
    """One OpenClaw session of one device's agent: its index entry (key, channel, label, OpenClaw's status)
    and the sums of its runs, kept by ingest in the same transaction as the runs (tokens, USD, epoch ms)."""

    device = CharField(max_length=63)
    agent_id = CharField(max_length=200)
    session_id = CharField(max_length=200)
    session_key = CharField(max_length=200, default="")
    channel = CharField(max_length=200, default="")
    chat_type = CharField(max_length=200, default="")
    label = CharField(max_length=200, default="")
    status = CharField(max_length=200, default="")
    started_ms = BigIntegerField(null=True)
    updated_ms = BigIntegerField(null=True)
    first_ms = BigIntegerField(null=True)
    last_ms = BigIntegerField(null=True)
    turns = IntegerField(default=0)
    failed_turns = IntegerField(default=0)
    error_messages = IntegerField(default=0)
    retries = IntegerField(default=0)
    tool_calls = IntegerField(default=0)
    tool_errors = IntegerField(default=0)
    input_tokens = BigIntegerField(default=0)
    output_tokens = BigIntegerField(default=0)
    cache_read_tokens = BigIntegerField(default=0)
    cache_write_tokens = BigIntegerField(default=0)
    total_tokens = BigIntegerField(default=0)
    cost_usd = FloatField(default=0.0)
    priced_turns = IntegerField(default=0)
    unpriced_tokens = BigIntegerField(default=0)
    models = CharField(max_length=500, default="")
    latest_error = CharField(max_length=500, default="")
    latest_error_ms = BigIntegerField(null=True)

    class Meta:
        primary_key = CompositeKey("device", "agent_id", "session_id")
        indexes = ((("device", "last_ms"), False), (("last_ms",), False), (("device", "cost_usd"), False))


class AgentRun(BaseModel):
    """One turn (an OpenClaw run) as :class:`shared.schemas.RunRecord` describes it; ``priced_usd`` is the
    price rule's cost of its tokens (None: no rule; then OpenClaw's ``cost_usd`` counts)."""

    device = CharField(max_length=63)
    id = CharField(max_length=64)
    agent_id = CharField(max_length=200)
    session_id = CharField(max_length=200)
    run_id = CharField(max_length=200, default="")
    started_ms = BigIntegerField()
    ended_ms = BigIntegerField()
    status = CharField(max_length=16)
    stop_reason = CharField(max_length=200, default="")
    provider = CharField(max_length=200, default="")
    model = CharField(max_length=200, default="")
    messages = IntegerField(default=0)
    error_messages = IntegerField(default=0)
    retries = IntegerField(default=0)
    tool_calls = IntegerField(default=0)
    tool_errors = IntegerField(default=0)
    input_tokens = BigIntegerField(default=0)
    output_tokens = BigIntegerField(default=0)
    cache_read_tokens = BigIntegerField(default=0)
    cache_write_tokens = BigIntegerField(default=0)
    total_tokens = BigIntegerField(default=0)
    cost_usd = FloatField(null=True)
    priced_usd = FloatField(null=True)
    error = CharField(max_length=500, default="")
    rev = IntegerField(default=0)

    class Meta:
        primary_key = CompositeKey("device", "id")
        indexes = ((("device", "agent_id", "session_id", "started_ms"), False), (("started_ms",), False),
                   (("device", "started_ms"), False))


class ToolCall(BaseModel):
    """One tool call (:class:`shared.schemas.ToolCallRecord`): ``error`` None when no result was seen,
    ``duration_s`` seconds, ``run`` the :class:`AgentRun` id ('' unknown)."""

    device = CharField(max_length=63)
    id = CharField(max_length=64)
    agent_id = CharField(max_length=200)
    session_id = CharField(max_length=200)
    run = CharField(max_length=64, default="")
    ts = BigIntegerField()
    tool = CharField(max_length=200)
    error = BooleanField(null=True)
    duration_s = FloatField(null=True)
    source = CharField(max_length=16)

    class Meta:
        primary_key = CompositeKey("device", "id")
        indexes = ((("ts",), False), (("tool", "ts"), False), (("device", "agent_id", "session_id", "ts"), False))


class VersionChange(BaseModel):
    """A device reporting another OpenClaw or agent version (``kind``) than before; ``ts`` is when the server
    saw it (epoch ms); ``old_version`` is None for the first version a device reported."""

    device = CharField(max_length=63)
    ts = BigIntegerField()
    kind = CharField(max_length=16)
    old_version = CharField(max_length=200, null=True)
    new_version = CharField(max_length=200)

    class Meta:
        indexes = ((("device", "kind", "ts"), False), (("ts",), False))


# --- end sessions ---


# --- accounts and audit (fleet_server.auth.accounts, fleet_server.store.audit) ---


class User(BaseModel):
    """A dashboard account. ``password_hash`` is an argon2id PHC string (never the password).

    ``role`` is ``"admin"`` (may change things) or ``"viewer"`` (read-only). Sessions that logged in
    before ``password_changed_ms`` are no longer valid; a ``disabled`` user cannot log in.
    """

    username = CharField(max_length=64, unique=True)
    password_hash = CharField(max_length=255)
    role = CharField(max_length=16, default="viewer")
    created_ms = BigIntegerField()
    last_login_ms = BigIntegerField(null=True)
    password_changed_ms = BigIntegerField(null=True)
    disabled = BooleanField(default=False)
    time_zone = CharField(max_length=64, null=True)
    """IANA zone the dashboard shows this user's times in; None: the browser's."""
    dark_mode = BooleanField(null=True)
    """The dashboard's dark mode for this user; None: light."""


class AuditEvent(BaseModel):
    """Who did what, when: logins, user and device changes. ``detail`` is short text, never a secret.

    ``actor`` is a username, ``"cli:<os user>"`` for the admin CLI, or the attempted username of a
    failed login.
    """

    ts_ms = BigIntegerField(index=True)
    actor = CharField(max_length=100)
    action = CharField(max_length=64, index=True)
    target = CharField(max_length=200, default="")
    detail = CharField(max_length=500, default="")


# --- end accounts and audit ---


# --- history: sample rollup tiers, rollup watermarks, schema version (store.history.rollups, store.migrations) ---

ROLLUP_METRICS = ("cpu_pct", "mem_pct", "disk_pct", "swap_pct", "net_rx_bps", "net_tx_bps", "load1")
"""Sample columns every rollup tier keeps the average and maximum of (``<metric>_avg``, ``<metric>_max``)."""


class _SampleRollup(BaseModel):
    """One device's samples in one time bucket: ``n`` samples, avg and max of each of
    :data:`ROLLUP_METRICS` (units as in :class:`Sample`: percent 0-100, bytes per second, load).
    ``bucket_ms`` is the bucket's start (epoch ms UTC, a multiple of the tier's width)."""

    device = CharField(max_length=63)
    bucket_ms = BigIntegerField(index=True)
    n = IntegerField()
    cpu_pct_avg = FloatField()
    cpu_pct_max = FloatField()
    mem_pct_avg = FloatField()
    mem_pct_max = FloatField()
    disk_pct_avg = FloatField()
    disk_pct_max = FloatField()
    swap_pct_avg = FloatField()
    swap_pct_max = FloatField()
    net_rx_bps_avg = FloatField()
    net_rx_bps_max = FloatField()
    net_tx_bps_avg = FloatField()
    net_tx_bps_max = FloatField()
    load1_avg = FloatField(null=True)
    load1_max = FloatField(null=True)

    class Meta:
        primary_key = CompositeKey("device", "bucket_ms")


class SampleRollup5m(_SampleRollup):
    """The 5-minute rollup tier."""


class SampleRollup1h(_SampleRollup):
    """The 1-hour rollup tier."""


class RollupWatermark(BaseModel):
    """Schema versions 2-4 only (per device: the newest raw sample ``ts`` already rolled up). Read
    and dropped by migration 5; not in :data:`ALL_MODELS`."""

    device = CharField(primary_key=True, max_length=63)
    sample_ts = BigIntegerField()


class RollupMark(BaseModel):
    """How far the rollup job has got: every sample with ``received_ms`` at or below
    ``received_ms`` (epoch ms) is in every tier. One row, ``name`` = ``"samples"``."""

    name = CharField(primary_key=True, max_length=32)
    received_ms = BigIntegerField()


class JobLease(BaseModel):
    """Who runs the background jobs (:mod:`fleet_server.jobs.leader`): ``holder`` (host, pid and a
    random part) until ``expires_ms`` (epoch ms, the database's clock); renewed by the holder, taken
    over by another server process once expired. One row per lease ``name`` (``"jobs"``)."""

    name = CharField(primary_key=True, max_length=32)
    holder = CharField(max_length=200)
    expires_ms = BigIntegerField()
    acquired_ms = BigIntegerField()


class SchemaVersion(BaseModel):
    """Applied schema migrations (:mod:`fleet_server.store.migrations`), one row each."""

    version = IntegerField(primary_key=True)
    name = CharField(max_length=200)
    applied_ms = BigIntegerField()


# --- end history ---


# --- failed logins (fleet_server.auth.lockout) ---

class LoginThrottle(BaseModel):
    """Failed logins of one (username, address) pair, or of one address (``username == ""``).

    ``failures`` counts attempts since the row was made (an attempt counts from the moment it is
    let through until it succeeds); ``locked_until_ms`` is when the next attempt is allowed.
    """

    username = CharField(max_length=64)
    address = CharField(max_length=64)
    failures = IntegerField(default=0)
    last_failure_ms = BigIntegerField()
    locked_until_ms = BigIntegerField(default=0)

    class Meta:
        primary_key = CompositeKey("username", "address")


# --- prices, API tokens, MQTT integration accounts (fleet_server.store.usage.prices, fleet_server.api, broker) ---

class PriceRule(BaseModel):
    """A model price: USD per million tokens of each type, from ``effective_ms`` on.

    ``pattern`` is a shell glob (``fnmatch``, case-insensitive) matched against ``provider/model``
    and against ``model`` alone. Of the rules that match a record and took effect at or before its
    timestamp, the one with the latest ``effective_ms`` wins; ties go to the lower ``id``.
    """

    pattern = CharField(max_length=200)
    input_usd_per_mtok = FloatField(default=0.0)
    output_usd_per_mtok = FloatField(default=0.0)
    cache_read_usd_per_mtok = FloatField(default=0.0)
    cache_write_usd_per_mtok = FloatField(default=0.0)
    effective_ms = BigIntegerField(default=0)
    note = CharField(max_length=300, default="")
    created_ms = BigIntegerField()


class ApiToken(BaseModel):
    """A read-only REST API / ``/metrics`` bearer token. Only its SHA-256 (hex) is stored.

    Tokens are 256-bit random (``cft_`` + URL-safe base64), so a fast hash is enough; ``hint`` is the
    last four characters. A revoked token (``revoked_ms`` set) is refused at once.
    """

    name = CharField(max_length=100)
    token_hash = CharField(max_length=64, unique=True)
    hint = CharField(max_length=8)
    created_ms = BigIntegerField()
    created_by = CharField(max_length=100)
    last_used_ms = BigIntegerField(null=True)
    revoked_ms = BigIntegerField(null=True)


class IntegrationAccount(BaseModel):
    """A read-only MQTT account for another tool (Home Assistant, Node-RED, scripts).

    ``username`` is the broker username (``integration.<name>``); the password is shown once and never stored.
    ``channels`` is a comma-separated list of the device channels it may subscribe to. Revoking deletes
    the row and the broker account.
    """

    name = CharField(max_length=63, unique=True)
    username = CharField(max_length=80, unique=True)
    channels = CharField(max_length=100)
    created_ms = BigIntegerField()
    created_by = CharField(max_length=100)


# --- end prices, API tokens, integrations ---


class JobMark(BaseModel):
    """A background job that is due: when it was last asked for (epoch ms) and which request the last
    finished run covered (its ``requested_ms``; None: none). ``job`` ``"reprice"``:
    :mod:`fleet_server.store.usage.reprice`; ``"block/<device>/<channel>"``: a channel blocked at the
    broker (:mod:`fleet_server.devices.throttle`)."""

    job = CharField(primary_key=True, max_length=120)
    requested_ms = BigIntegerField()
    finished_ms = BigIntegerField(null=True)


class ReceiptMark(BaseModel):
    """What ingest has committed of a device's outbox (delivery receipts, :mod:`fleet_server.ingest.receipts`).

    ``outbox``: the agent's outbox id; ``prev_outbox``: the one before (its late messages do not
    reset the marks); ``channels``: JSON ``{"usage": [upto, [[first, last], …]], …}`` — every
    sequence number up to ``upto`` and the ranges above it, stored or rejected for good.
    """

    device = CharField(primary_key=True, max_length=63)
    outbox = CharField(max_length=64)
    prev_outbox = CharField(max_length=64, null=True)
    channels = TextField()
    updated_ms = BigIntegerField()


class UpdatePolicy(BaseModel):
    """How agents get new versions (:mod:`fleet_server.releases.updates`). ``scope`` is ``fleet``,
    ``tag:<tag>`` or ``device:<id>`` (the most specific one applies); ``mode`` ``manual`` (an admin
    asks) or ``auto`` (the server sends the offered version inside ``window``, ``HH:MM-HH:MM`` in time
    zone ``tz``; none = any time); ``rollback_after_s``: how long a new version has to report."""

    scope = CharField(primary_key=True, max_length=120)
    mode = CharField(max_length=8, default="manual")
    window = CharField(max_length=11, null=True)
    tz = CharField(max_length=64, default="UTC")
    rollback_after_s = IntegerField(default=600)
    updated_ms = BigIntegerField()


class UpdateRequest(BaseModel):
    """The last update the server sent a device: ``version``, when (epoch ms) and who asked (an
    audit actor, or ``auto``). The device's own progress comes back in its ``meta.update``."""

    device = CharField(primary_key=True, max_length=63)
    version = CharField(max_length=60)
    requested_ms = BigIntegerField()
    actor = CharField(max_length=200)


ALL_MODELS = [Device, Sample, StatusEvent, UsageRecord, UsageHourly, UsageTotal, LogRecord, RejectCount, User,
              AuditEvent,
              SampleRollup5m, SampleRollup1h, RollupMark, JobLease,  # history, job lease
              LoginThrottle,  # failed logins
              PriceRule, ApiToken, IntegrationAccount,  # tokens and cost, API, integrations
              AgentSession, AgentRun, ToolCall, VersionChange,  # sessions
              UpdatePolicy, UpdateRequest,  # agent self-updates
              ReceiptMark,  # delivery receipts
              JobMark,  # background jobs that are due (re-pricing, channels blocked at the broker)
              SchemaVersion]  # migrations

