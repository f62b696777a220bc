"""The wire protocol without pydantic: its bounds, and the payloads the agent builds.

Both sides use this module. :mod:`shared.schemas` (pydantic) validates what the server receives
and takes its bounds from here; the agent builds its payloads with the plain dataclasses below
(same field names and units as the models in :mod:`shared.schemas`, a test keeps them equal) and
encodes them with :func:`encode`, so the agent never imports pydantic (its models cost ~12 MB of
memory in a process that otherwise needs ~25 MB).

Units are part of the field names: ``_pct`` percent 0-100, ``_bytes`` bytes, ``_bps`` bytes per
second, ``_s`` seconds, ``_ms`` epoch milliseconds UTC, ``_tokens`` LLM tokens, ``_usd`` US
dollars. Every payload is a UTF-8 JSON object with ``"v": 1``, the sender's ``device_id`` and
``ts`` (epoch ms UTC). The dataclasses do not validate; the server does, against the bounds here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Any

from shared.version import PROTOCOL_VERSION

MAX_PAYLOAD_BYTES = 256 * 1024
"""Largest payload the server accepts on any device topic (bytes)."""

MAX_BATCH_RECORDS = 500
"""Largest number of records in one usage or logs batch."""

MIN_TS_MS = 946_684_800_000
"""Earliest timestamp of any payload: 2000-01-01 (epoch ms)."""
MAX_TS_MS = 4_102_444_800_000
"""Latest timestamp of any payload: 2100-01-01 (epoch ms)."""

MAX_BYTES = 2**60
"""Largest byte count accepted (1 EiB): memory and disk sizes."""
MAX_BPS = 1e13
"""Largest network rate accepted, bytes per second (80 Tbit/s)."""
MAX_UPTIME_S = 100 * 365 * 86_400.0
"""Largest uptime accepted, seconds (100 years)."""
MAX_LOAD = 1e6
"""Largest load average accepted."""
MAX_TOKENS = 10**12
"""Largest token count in one field of one usage record. A batch adds at most 500 x 4 x 10^12,
so rollup sums stay far below 2^63 for any realistic history (and sums are computed so that they
cannot overflow anyway, see ``fleet_server.store.usage.ledger``)."""
MAX_COST_USD = 1e6
"""Largest cost of one usage record, USD."""
MAX_SHORT_STR = 200
"""Longest short text field (host name, agent id, model, subsystem, ...), characters."""
MAX_LOG_MESSAGE = 4000
"""Longest log record message, characters (the agent truncates to it)."""
MAX_RUN_ERROR = 500
"""Longest error text of a run record, characters (the agent truncates to it)."""
MAX_COUNT = 10**9
"""Largest count in one run record (messages, retries, tool calls)."""
MAX_DURATION_S = 366 * 86_400.0
"""Longest duration of a tool call, seconds."""
RUN_STATUSES = ("running", "ok", "failed", "aborted")
"""A run's state: ``running`` (no final reply yet), ``ok`` (it ended with a reply), ``failed`` (it ended
with a model-call error and no reply), ``aborted`` (stopped by the user or the gateway)."""

SAMPLE_WINDOW_MS = (30 * 86_400_000, 10 * 60_000)
"""A telemetry sample's ``ts`` must lie within (30 days before, 10 minutes after) the server's
clock: it is the sample's time in the history. A device whose clock is off by more gets its
samples rejected with reason ``ts_out_of_window`` (fix its clock, e.g. NTP)."""
RECORD_MIN_TS_MS = 1_577_836_800_000  # 2020-01-01
"""Usage and log records may be old (OpenClaw transcripts are read again after an outage), but
not older than 2020-01-01."""
MAX_AHEAD_MS = 86_400_000
"""Any other timestamp (status, meta, batch envelopes, boot time, records) may be at most one day
ahead of the server's clock."""

MAX_SEQ = 2**53 - 1
"""Largest outbox sequence number (the largest integer every JSON reader keeps exact)."""
OUTBOX_ID_RE = r"^[A-Za-z0-9_-]{8,64}$"
"""What an outbox id looks like (the agent makes 16 hex digits: 64 random bits)."""
RECEIPT_CHANNELS = ("telemetry", "usage", "logs")
"""Channels whose messages carry an outbox sequence number and are confirmed by receipts."""
MAX_RECEIPT_RANGES = 32
"""Most ranges above the watermark one receipt lists per channel (the lowest ones are kept)."""


@dataclass(slots=True, kw_only=True)
class OpenClawState:
    """The ``openclaw`` block of a telemetry sample (:class:`shared.schemas.OpenClawState`)."""

    installed: bool = False
    up: bool = False
    ready: bool | None = None
    port: int | None = None
    version: str | None = None
    pid: int | None = None


@dataclass(slots=True, kw_only=True)
class Status:
    """``…/status`` (:class:`shared.schemas.Status`): ``state`` is online, offline, sleeping, shutdown or
    paused (reporting paused on purpose)."""

    v: int = PROTOCOL_VERSION
    device_id: str
    ts: int
    state: str
    reason: str | None = None


UPDATE_STATES = ("downloading", "installing", "installed", "confirmed", "failed", "refused", "rolled-back")
"""An agent's self-update, as it reports it: fetching the package; handing it to the OS installer;
installed and waiting for the new version to report; the new version reported (done); it went
wrong (``failed``), the package was not accepted (``refused``: bad signature, hash, version), or the
new version did not report in time and the previous one runs again (``rolled-back``)."""
MAX_UPDATE_DETAIL = 300
"""Longest ``detail`` of an update state, characters."""
MIN_ROLLBACK_S, MAX_ROLLBACK_S = 30, 86_400
"""Bounds of an update command's ``rollback_after_s``, seconds."""


@dataclass(slots=True, kw_only=True)
class UpdateInfo:
    """The ``update`` block of ``meta`` (:class:`shared.schemas.UpdateInfo`): the agent's last self-update."""

    state: str
    version: str | None = None
    detail: str | None = None
    ts: int


@dataclass(slots=True, kw_only=True)
class Meta:
    """``…/meta`` (:class:`shared.schemas.Meta`): what the device is."""

    v: int = PROTOCOL_VERSION
    device_id: str
    ts: int
    hostname: str
    os: str
    os_version: str = ""
    arch: str = ""
    agent_version: str
    cpu_count: int
    mem_total_bytes: int
    disk_total_bytes: int
    boot_time_ms: int
    openclaw_version: str | None = None
    agents: list[str] = field(default_factory=list)
    interval_s: float | None = None
    update: UpdateInfo | None = None


@dataclass(slots=True, kw_only=True)
class Telemetry:
    """``…/telemetry`` (:class:`shared.schemas.Telemetry`): one sample of system state."""

    v: int = PROTOCOL_VERSION
    device_id: str
    ts: int
    cpu_pct: float
    mem_used_bytes: int
    mem_total_bytes: int
    mem_pct: float
    disk_used_bytes: int
    disk_total_bytes: int
    disk_pct: float
    swap_pct: float
    net_rx_bps: float
    net_tx_bps: float
    load_avg: tuple[float, float, float] | None = None
    uptime_s: float
    openclaw: OpenClawState | None = None
    outbox: str | None = None
    seq: int | None = None
    seq_floor: int | None = None


@dataclass(slots=True, kw_only=True)
class UsageRecord:
    """One assistant message's token usage (:class:`shared.schemas.UsageRecord`).

    ``total_tokens`` is set to the sum of the four parts on construction, as the server does.
    """

    id: str
    ts: int
    agent_id: str = "main"
    session_id: str = ""
    provider: str = ""
    model: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    total_tokens: int = 0
    cost_usd: float | None = None
    source: str = "transcript"
    failed: bool = False

    def __post_init__(self) -> None:
        self.total_tokens = self.input_tokens + self.output_tokens + self.cache_read_tokens + self.cache_write_tokens


@dataclass(slots=True, kw_only=True)
class LogRecord:
    """One OpenClaw warning or error (:class:`shared.schemas.LogRecord`); ``level`` trace … fatal,
    ``source`` ``gateway-log`` or ``transcript``."""

    id: str
    ts: int
    level: str
    subsystem: str = ""
    message: str
    fingerprint: str = ""
    source: str = "gateway-log"
    agent_id: str | None = None
    session_id: str | None = None
    session_key: str | None = None
    run_id: str | None = None


@dataclass(slots=True, kw_only=True)
class SessionRecord:
    """One OpenClaw session from the agent's session index (:class:`shared.schemas.SessionRecord`)."""

    agent_id: str = "main"
    session_id: str
    session_key: str = ""
    channel: str = ""
    chat_type: str = ""
    label: str = ""
    status: str = ""
    started_ms: int | None = None
    updated_ms: int


@dataclass(slots=True, kw_only=True)
class RunRecord:
    """One turn: a user message and everything up to the final reply (:class:`shared.schemas.RunRecord`).

    ``total_tokens`` is set to the sum of the four parts on construction, as the server does.
    """

    id: str
    agent_id: str = "main"
    session_id: str = ""
    run_id: str = ""
    started_ms: int
    ended_ms: int
    status: str = "running"
    stop_reason: str = ""
    provider: str = ""
    model: str = ""
    messages: int = 0
    error_messages: int = 0
    retries: int = 0
    tool_calls: int = 0
    tool_errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    total_tokens: int = 0
    cost_usd: float | None = None
    error: str = ""
    rev: int = 0

    def __post_init__(self) -> None:
        self.total_tokens = self.input_tokens + self.output_tokens + self.cache_read_tokens + self.cache_write_tokens


@dataclass(slots=True, kw_only=True)
class ToolCallRecord:
    """One tool call a model asked for, with its outcome (:class:`shared.schemas.ToolCallRecord`)."""

    id: str
    agent_id: str = "main"
    session_id: str = ""
    run: str = ""
    ts: int
    tool: str
    error: bool | None = None
    duration_s: float | None = None
    source: str = "transcript"


@dataclass(slots=True, kw_only=True)
class UsageBatch:
    """``…/usage`` (:class:`shared.schemas.UsageBatch`): at most :data:`MAX_BATCH_RECORDS` records, and as many
    sessions, runs and tool calls (the agent sends those in messages of their own)."""

    v: int = PROTOCOL_VERSION
    device_id: str
    ts: int
    records: list[UsageRecord]
    sessions: list[SessionRecord] = field(default_factory=list)
    runs: list[RunRecord] = field(default_factory=list)
    tool_calls: list[ToolCallRecord] = field(default_factory=list)
    outbox: str | None = None
    seq: int | None = None
    seq_floor: int | None = None


@dataclass(slots=True, kw_only=True)
class LogBatch:
    """``…/logs`` (:class:`shared.schemas.LogBatch`): at most :data:`MAX_BATCH_RECORDS` records."""

    v: int = PROTOCOL_VERSION
    device_id: str
    ts: int
    records: list[LogRecord]
    outbox: str | None = None
    seq: int | None = None
    seq_floor: int | None = None


@dataclass(slots=True, kw_only=True)
class SnoozeRequest:
    """``…/snooze`` (:class:`shared.schemas.SnoozeRequest`): no alert notifications about this device
    until ``until_ms``."""

    v: int = PROTOCOL_VERSION
    device_id: str
    ts: int
    until_ms: int
    reason: str | None = None


@dataclass(slots=True, frozen=True)
class Command:
    """``…/cmd`` (:class:`shared.schemas.Command`), server -> agent."""

    ts: int
    command: str
    v: int = PROTOCOL_VERSION
    version: str | None = None
    """``update``: the agent version to install (from the server's package manifest)."""
    rollback_after_s: int | None = None
    """``update``: go back to the running version when the new one has not reported after this long."""


@dataclass(slots=True, frozen=True)
class ServerStatus:
    """``clawfleet/v1/_server/status`` (:class:`shared.schemas.ServerStatus`): ``online`` / ``offline``;
    ``receipts``: the server publishes delivery receipts (:class:`Receipt`); absent (False) from a
    server that does not, whose agents delete a message once the broker acknowledged it."""

    ts: int
    state: str
    v: int = PROTOCOL_VERSION
    receipts: bool = False


@dataclass(slots=True, frozen=True)
class Coverage:
    """What the server holds of one channel of one outbox: every sequence number up to ``upto``
    (stored, or rejected for good), and the closed ranges ``(first, last)`` above it, ascending and
    apart (so ``upto + 1`` is missing)."""

    upto: int = 0
    ranges: tuple[tuple[int, int], ...] = ()

    def covers(self, seq: int) -> bool:
        """True when ``seq`` is confirmed."""
        return seq <= self.upto or any(lo <= seq <= hi for lo, hi in self.ranges)


def merge_coverage(upto: int, ranges: Iterable[tuple[int, int]], limit: int | None = None) -> Coverage:
    """Everything up to ``upto`` plus the closed ``ranges`` (any order, may overlap), normalised: ranges
    above ``upto``, merged, ascending and apart, a range reaching ``upto + 1`` folded into ``upto``.
    ``limit``: keep at most that many ranges (the lowest; forgetting some only makes a sender repeat them)."""
    spans = sorted((max(lo, upto + 1), hi) for lo, hi in ranges if hi > upto and lo <= hi)
    out: list[tuple[int, int]] = []
    for lo, hi in spans:
        if lo <= upto + 1:
            upto = max(upto, hi)
        elif out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return Coverage(upto, tuple(out if limit is None else out[:limit]))


@dataclass(slots=True, frozen=True)
class Receipt:
    """``clawfleet/v1/<device_id>/receipt`` (server -> agent, retained, QoS 0): what the server has
    committed of the outbox ``outbox``, per channel name (:data:`RECEIPT_CHANNELS`)."""

    ts: int
    outbox: str
    channels: dict[str, Coverage]
    v: int = PROTOCOL_VERSION


COMMANDS = ("report_now", "update")
"""Commands a server may send."""
SERVER_STATES = ("online", "offline")


def to_dict(payload: Any) -> Any:
    """A payload dataclass (or a list/tuple of them) as JSON-ready dicts, ``None`` fields left out
    (as :func:`shared.schemas.encode` does)."""
    if isinstance(payload, (list, tuple)):
        return [to_dict(p) for p in payload]
    if not hasattr(payload, "__dataclass_fields__"):
        return payload
    out = {}
    for f in fields(payload):
        value = getattr(payload, f.name)
        if value is not None:
            out[f.name] = to_dict(value)
    return out


def encode(payload: Any) -> bytes:
    """Serialise a payload dataclass to compact UTF-8 JSON bytes (None fields left out).

    Raises:
        ValueError: a float field holds NaN or infinity (JSON has no such numbers).
    """
    return json.dumps(to_dict(payload), separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def _object(raw: bytes | str) -> dict:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"not UTF-8 JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"not a JSON object: {type(data).__name__}")
    if data.get("v") != PROTOCOL_VERSION:
        raise ValueError(f"protocol version {str(data.get('v'))[:20]!r} is not supported (expected 1)")
    ts = data.get("ts")
    if type(ts) is not int or not MIN_TS_MS <= ts <= MAX_TS_MS:
        raise ValueError(f"ts: {str(ts)[:30]!r} is not epoch ms between 2000 and 2100")
    return data


def parse_command(raw: bytes | str) -> Command:
    """Parse a ``…/cmd`` payload from the server (unknown extra fields are ignored).

    Raises:
        ValueError: not JSON, not an object, another protocol version, a bad ``ts``, or an
            unknown ``command`` (the message says which).
    """
    data = _object(raw)
    command = data.get("command")
    if command not in COMMANDS:
        raise ValueError(f"command: {str(command)[:40]!r} is not one of {', '.join(COMMANDS)}")
    version, rollback = data.get("version"), data.get("rollback_after_s")
    if command == "update":
        from shared.packages import VERSION_RE

        if not isinstance(version, str) or not VERSION_RE.fullmatch(version):
            raise ValueError(f"version: {str(version)[:40]!r} is not a version (MAJOR.MINOR.PATCH)")
        if rollback is not None and (type(rollback) is not int or not MIN_ROLLBACK_S <= rollback <= MAX_ROLLBACK_S):
            raise ValueError(f"rollback_after_s: must be a whole number of seconds, {MIN_ROLLBACK_S}-{MAX_ROLLBACK_S}")
    else:
        version = rollback = None
    return Command(ts=data["ts"], command=command, version=version, rollback_after_s=rollback)


def parse_server_status(raw: bytes | str) -> ServerStatus:
    """Parse the server's retained birth/will payload (``receipts`` other than ``true``: False).

    Raises:
        ValueError: as :func:`parse_command`, or a ``state`` other than online/offline.
    """
    data = _object(raw)
    state = data.get("state")
    if state not in SERVER_STATES:
        raise ValueError(f"state: {str(state)[:40]!r} is not online or offline")
    return ServerStatus(ts=data["ts"], state=state, receipts=data.get("receipts") is True)


def _seq(value: object, what: str) -> int:
    if type(value) is not int or not 0 <= value <= MAX_SEQ:
        raise ValueError(f"{what}: {str(value)[:30]!r} is not a sequence number 0-{MAX_SEQ}")
    return value


def parse_receipt(raw: bytes | str) -> Receipt:
    """Parse a receipt from the server (``{"v": 1, "ts", "outbox", "channels": {"usage": {"upto": 41,
    "ranges": [[43, 50]]}, …}}``; unknown channels and fields are ignored).

    Raises:
        ValueError: as :func:`parse_command`, or a missing/malformed ``outbox``, ``upto`` or range
            (ranges must be ascending, apart and above ``upto``; at most :data:`MAX_RECEIPT_RANGES`).
    """
    data = _object(raw)
    outbox = data.get("outbox")
    if not isinstance(outbox, str) or not re.fullmatch(OUTBOX_ID_RE, outbox):
        raise ValueError(f"outbox: {str(outbox)[:70]!r} is not an outbox id")
    channels = data.get("channels")
    if not isinstance(channels, dict):
        raise ValueError("channels: not a JSON object")
    out: dict[str, Coverage] = {}
    for name in RECEIPT_CHANNELS:
        entry = channels.get(name)
        if entry is None:
            continue
        if not isinstance(entry, dict):
            raise ValueError(f"channels.{name}: not a JSON object")
        upto = _seq(entry.get("upto", 0), f"channels.{name}.upto")
        ranges = entry.get("ranges", [])
        if not isinstance(ranges, list) or len(ranges) > MAX_RECEIPT_RANGES:
            raise ValueError(f"channels.{name}.ranges: not a list of at most {MAX_RECEIPT_RANGES} ranges")
        parsed, last = [], upto + 1
        for r in ranges:
            if not isinstance(r, list) or len(r) != 2:
                raise ValueError(f"channels.{name}.ranges: {str(r)[:40]!r} is not [first, last]")
            lo, hi = _seq(r[0], f"channels.{name}.ranges"), _seq(r[1], f"channels.{name}.ranges")
            if not last < lo <= hi:
                raise ValueError(f"channels.{name}.ranges: [{lo}, {hi}] is not ascending and apart above {last - 1}")
            parsed.append((lo, hi))
            last = hi + 1
        out[name] = Coverage(upto, tuple(parsed))
    return Receipt(ts=data["ts"], outbox=outbox, channels=out)


def stamp(payload: bytes, outbox: str, seq: int, seq_floor: int) -> bytes:
    """``payload`` (a JSON object as :func:`encode` makes it, without delivery fields) with the
    delivery fields added: ``outbox`` (the outbox's id), ``seq`` (the message's sequence number in
    its channel) and ``seq_floor`` (the lowest sequence number of that channel the outbox still
    holds: the server may consider everything below it settled)."""
    body = payload.rstrip()
    if not body.endswith(b"}"):
        raise ValueError("not a JSON object")
    sep = b"" if body[:-1].rstrip().endswith(b"{") else b","
    return body[:-1] + sep + (b'"outbox":"%s","seq":%d,"seq_floor":%d}' % (outbox.encode(), seq, seq_floor))
