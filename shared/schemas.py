"""Payload schemas of the ClawFleet wire protocol (protocol version 1).

Every payload is a UTF-8 JSON object with ``"v": 1``, the sender's ``device_id`` (equal to
the one in the topic) and ``ts``, a timestamp in epoch milliseconds UTC. Units are part of the
field names: ``_pct`` percent 0-100, ``_bytes`` bytes, ``_bps`` bytes per second, ``_s``
seconds, ``_ms`` epoch milliseconds UTC, ``_tokens`` LLM tokens, ``_usd`` US dollars. Each
field also declares its unit in ``json_schema_extra["unit"]`` so the schema documents itself.

Unknown extra fields are ignored (a newer agent may send more); missing or out-of-range
fields raise :class:`PayloadError`.

Every device is untrusted, so the bounds are tight enough that nothing valid can break the
store or a page: numbers are finite (JSON ``NaN``/``Infinity`` and overflowing literals such as
``1e999`` are refused), integers fit the database's 64-bit columns with room for sums (bytes
≤ 2^60, tokens ≤ 10^12 per field of a record, see the ``MAX_*`` constants), strings have a
length limit and no NUL character, JSON nesting is at most 200 levels deep and numbers at most
4300 digits long (limits of the ``pydantic_core`` parser). :func:`decode` also checks
timestamps against the server's clock (:data:`SAMPLE_WINDOW_MS`, :data:`RECORD_MIN_TS_MS`,
:data:`MAX_AHEAD_MS`); building a model in code (the agent does) checks only the fixed
2000-2100 range.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError, from_json

from shared.packages import VERSION_RE
from shared.payloads import (  # the bounds live in the dependency-free module; re-exported here
    MAX_AHEAD_MS,
    MAX_BATCH_RECORDS,
    MAX_BPS,
    MAX_BYTES,
    MAX_COST_USD,
    MAX_COUNT,
    MAX_DURATION_S,
    MAX_LOAD,
    MAX_LOG_MESSAGE,
    MAX_PAYLOAD_BYTES,
    MAX_ROLLBACK_S,
    MAX_RUN_ERROR,
    MAX_SEQ,
    MAX_SHORT_STR,
    MAX_TOKENS,
    MAX_UPDATE_DETAIL,
    MAX_UPTIME_S,
    MIN_ROLLBACK_S,
    OUTBOX_ID_RE,
    RECORD_MIN_TS_MS,
    SAMPLE_WINDOW_MS,
)
from shared.payloads import MAX_TS_MS as _MAX_TS_MS
from shared.payloads import MIN_TS_MS as _MIN_TS_MS
from shared.topics import DEVICE_ID_RE, Channel
from shared.version import PROTOCOL_VERSION


class PayloadError(ValueError):
    """A payload that is not valid protocol-v1 JSON; ``reason`` is a short machine-readable tag.

    Reasons: ``too_large``, ``not_json``, ``not_object``, ``bad_version``, ``invalid``,
    ``ts_out_of_window``, ``device_mismatch``, ``bad_channel``.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _unit(unit: str, description: str, **kw: Any) -> Any:
    return Field(description=description, json_schema_extra={"unit": unit}, **kw)


_NO_NUL = r"^[^\x00]*$"  # PostgreSQL text cannot hold NUL
Pct = Annotated[float, Field(ge=0, le=100)]
Bytes = Annotated[int, Field(ge=0, le=MAX_BYTES)]
Tokens = Annotated[int, Field(ge=0, le=MAX_TOKENS)]
EpochMs = Annotated[int, Field(ge=_MIN_TS_MS, le=_MAX_TS_MS)]
LoadAvg = Annotated[float, Field(ge=0, le=MAX_LOAD)]  # checked by pydantic-core, no Python validator
ShortStr = Annotated[str, Field(max_length=MAX_SHORT_STR, pattern=_NO_NUL)]
_STRICT = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False)
_OUTBOX_ID = re.compile(OUTBOX_ID_RE)


def _window(info: ValidationInfo, ts: int, earliest_ms: int | None, ahead_ms: int = MAX_AHEAD_MS) -> int:
    """Check ``ts`` against the server clock in the validation context (``{"now_ms": …}``), if any."""
    now = (info.context or {}).get("now_ms")
    if now is None:
        return ts
    if earliest_ms is not None and ts < earliest_ms:
        raise PydanticCustomError("ts_window", "{ts} is too far in the past (earliest accepted: {earliest})",
                                  {"ts": ts, "earliest": earliest_ms})
    if ts > now + ahead_ms:
        raise PydanticCustomError("ts_window", "{ts} is {ahead} s ahead of the server's clock (limit {limit} s)",
                                  {"ts": ts, "ahead": (ts - now) // 1000, "limit": ahead_ms // 1000})
    return ts


class _Payload(BaseModel):
    model_config = _STRICT

    v: Literal[1] = _unit("", "protocol version", default=PROTOCOL_VERSION)
    device_id: str = _unit("", "sender's device id, equal to the topic's", pattern=DEVICE_ID_RE.pattern,
                           max_length=63)
    ts: EpochMs = _unit("epoch_ms", "when the payload was produced, epoch milliseconds UTC")

    @field_validator("ts")
    @classmethod
    def _ts_window(cls, v: int, info: ValidationInfo) -> int:
        return _window(info, v, None)


class _Delivered(_Payload):
    """A payload the agent keeps in its outbox until a receipt confirms it. The three fields come
    together (agents before receipts send none of them: nothing is confirmed, nothing changes)."""

    outbox: str | None = _unit("", "id of the agent's outbox (new when the outbox file is recreated)", default=None,
                               pattern=OUTBOX_ID_RE)
    seq: int | None = _unit("count", "sequence number of this message in its channel of that outbox", default=None,
                            ge=1, le=MAX_SEQ)
    seq_floor: int | None = _unit("count", "lowest sequence number of the channel the outbox still holds "
                                           "(everything below is settled or was dropped by the agent)",
                                  default=None, ge=1, le=MAX_SEQ)


class Status(_Payload):
    """``…/status`` (retained): availability of a device. The last will carries ``offline``."""

    state: Literal["online", "offline", "sleeping", "shutdown", "paused"] = _unit(
        "", "availability; paused: reporting paused on purpose (the tray's Pause reporting)")
    reason: ShortStr | None = _unit("", "why the state changed, e.g. 'last-will', 'revoked'", default=None)


class OpenClawState(BaseModel):
    """The ``openclaw`` block of a telemetry sample: is the local gateway up."""

    model_config = _STRICT

    installed: bool = _unit("", "OpenClaw state dir or CLI found on this machine", default=False)
    up: bool = _unit("", "gateway answered GET /health", default=False)
    ready: bool | None = _unit("", "GET /readyz said ready (None: not asked)", default=None)
    port: int | None = _unit("", "gateway TCP port", default=None, ge=1, le=65535)
    version: ShortStr | None = _unit("", "OpenClaw version, e.g. '2026.9.6'", default=None)
    pid: int | None = _unit("", "gateway process id from its lock file", default=None, ge=0, le=2**32)


class UpdateInfo(BaseModel):
    """The ``update`` block of ``meta``: the last self-update (states: :data:`shared.payloads.UPDATE_STATES`)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    state: Literal["downloading", "installing", "installed", "confirmed", "failed", "refused", "rolled-back"] = (
        _unit("", "where the update is"))
    version: ShortStr | None = _unit("", "the version being installed (or refused, or rolled back from)",
                                     default=None)
    detail: str | None = _unit("", "what happened, one line", default=None, max_length=MAX_UPDATE_DETAIL,
                               pattern=_NO_NUL)
    ts: EpochMs = _unit("epoch_ms", "when the update reached this state")


class Meta(_Payload):
    """``…/meta`` (retained): what the device is; sent on connect and when it changes."""

    hostname: ShortStr = _unit("", "host name")
    os: ShortStr = _unit("", "operating system family: Linux, Darwin, Windows")
    os_version: ShortStr = _unit("", "OS release string", default="")
    arch: ShortStr = _unit("", "machine architecture, e.g. x86_64, arm64", default="")
    agent_version: ShortStr = _unit("", "clawfleet agent version")
    cpu_count: int = _unit("count", "logical CPUs", ge=1, le=1_000_000)
    mem_total_bytes: Bytes = _unit("bytes", "physical memory")
    disk_total_bytes: Bytes = _unit("bytes", "size of the system volume")
    boot_time_ms: EpochMs = _unit("epoch_ms", "when the machine booted")
    openclaw_version: ShortStr | None = _unit("", "OpenClaw version, None when not installed", default=None)
    agents: list[ShortStr] = _unit("", "OpenClaw agent ids", default_factory=list, max_length=200)
    interval_s: float | None = _unit("seconds", "sample interval (None: older agent)", default=None, ge=1, le=3600)
    update: UpdateInfo | None = _unit("", "the agent's last self-update (None: none since it was installed)",
                                      default=None)

    @field_validator("boot_time_ms")
    @classmethod
    def _boot_window(cls, v: int, info: ValidationInfo) -> int:
        return _window(info, v, None)


class Telemetry(_Delivered):
    """``…/telemetry`` (retained): one sample of system state."""

    cpu_pct: Pct = _unit("percent", "CPU busy over the last interval, all cores, 0-100")
    mem_used_bytes: Bytes = _unit("bytes", "memory in use (total - available)")
    mem_total_bytes: Bytes = _unit("bytes", "physical memory")
    mem_pct: Pct = _unit("percent", "memory in use, 0-100")
    disk_used_bytes: Bytes = _unit("bytes", "used on the system volume")
    disk_total_bytes: Bytes = _unit("bytes", "size of the system volume")
    disk_pct: Pct = _unit("percent", "system volume used, 0-100")
    swap_pct: Pct = _unit("percent", "swap in use, 0-100 (0 when there is no swap)")
    net_rx_bps: float = _unit("bytes_per_second", "received over the last interval, all NICs but loopback", ge=0,
                              le=MAX_BPS)
    net_tx_bps: float = _unit("bytes_per_second", "sent over the last interval, all NICs but loopback", ge=0,
                              le=MAX_BPS)
    load_avg: tuple[LoadAvg, LoadAvg, LoadAvg] | None = _unit(
        "", "1, 5 and 15 minute load average (None where the OS has none)", default=None)
    uptime_s: float = _unit("seconds", "time since boot", ge=0, le=MAX_UPTIME_S)
    openclaw: OpenClawState | None = _unit("", "local OpenClaw gateway state", default=None)

    @field_validator("ts")
    @classmethod
    def _ts_window(cls, v: int, info: ValidationInfo) -> int:
        return _window(info, v, _now(info) - SAMPLE_WINDOW_MS[0], SAMPLE_WINDOW_MS[1])



class UsageRecord(BaseModel):
    """One assistant message's token usage, from an OpenClaw transcript or the local bridge.

    ``id`` is stable: a hash of (device, agent id, session id, transcript entry id), so the
    same message seen twice is one record. ``total_tokens`` is always the sum of the four parts
    (a different value sent by the device is replaced by the sum), so totals and breakdowns agree.
    """

    model_config = _STRICT

    id: str = _unit("", "stable record id", min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    ts: EpochMs = _unit("epoch_ms", "when the assistant message was written")
    agent_id: ShortStr = _unit("", "OpenClaw agent id", default="main")
    session_id: ShortStr = _unit("", "OpenClaw session id", default="")
    provider: ShortStr = _unit("", "LLM provider id", default="")
    model: ShortStr = _unit("", "model id", default="")
    input_tokens: Tokens = _unit("tokens", "input tokens, excluding cache reads", default=0)
    output_tokens: Tokens = _unit("tokens", "output tokens", default=0)
    cache_read_tokens: Tokens = _unit("tokens", "input tokens read from the prompt cache", default=0)
    cache_write_tokens: Tokens = _unit("tokens", "input tokens written to the prompt cache", default=0)
    total_tokens: int = _unit("tokens", "input + output + cache read + cache write (recomputed)", default=0, ge=0,
                              validate_default=True)
    cost_usd: float | None = _unit("usd", "cost computed by OpenClaw; None when the model has no price",
                                   default=None, ge=0, le=MAX_COST_USD)
    source: Literal["transcript", "bridge"] = _unit("", "where the agent read it", default="transcript")
    failed: bool = _unit("", 'a failed turn: assistant message with stopReason "error" (usually zero tokens)',
                         default=False)

    @field_validator("total_tokens")
    @classmethod
    def _total_is_the_sum(cls, v: int, info: ValidationInfo) -> int:
        parts = [info.data.get(k) for k in ("input_tokens", "output_tokens", "cache_read_tokens",
                                             "cache_write_tokens")]
        return sum(parts) if all(isinstance(p, int) for p in parts) else v  # type: ignore[misc]

    @field_validator("ts")
    @classmethod
    def _ts_window(cls, v: int, info: ValidationInfo) -> int:
        return _window(info, v, RECORD_MIN_TS_MS)


class LogRecord(BaseModel):
    """One OpenClaw warning or error, from the gateway log or a failed transcript turn."""

    model_config = _STRICT

    id: str = _unit("", "stable record id", min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    ts: EpochMs = _unit("epoch_ms", "when it was logged")
    level: Literal["trace", "debug", "info", "warn", "error", "fatal"] = _unit("", "log level")
    subsystem: ShortStr = _unit("", "OpenClaw subsystem logger name", default="")
    message: str = _unit("", "log text, truncated to 4000 characters", max_length=MAX_LOG_MESSAGE, pattern=_NO_NUL)
    fingerprint: str = _unit("", "hash of the message with variable parts removed", max_length=64, default="",
                             pattern=_NO_NUL)
    source: Literal["gateway-log", "transcript"] = _unit("", "where the agent read it", default="gateway-log")
    agent_id: ShortStr | None = _unit("", "OpenClaw agent id, when the line or turn names one", default=None)
    session_id: ShortStr | None = _unit("", "OpenClaw session id, when the line or turn names one", default=None)
    session_key: ShortStr | None = _unit("", "OpenClaw session key (agent:main:planning), when the line names one",
                                         default=None)
    run_id: ShortStr | None = _unit("", "OpenClaw run id, when the line or turn names one", default=None)

    @field_validator("ts")
    @classmethod
    def _ts_window(cls, v: int, info: ValidationInfo) -> int:
        return _window(info, v, RECORD_MIN_TS_MS)


Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]
_RECORD_ID = {"min_length": 8, "max_length": 64, "pattern": r"^[A-Za-z0-9_-]+$"}


class SessionRecord(BaseModel):
    """One OpenClaw session as its session index describes it (``session_windows``/``session_nodes`` in
    the SQLite store, ``sessions.json`` before it). Stored per (device, agent, session id); a record with
    an older ``updated_ms`` than the stored one changes nothing."""

    model_config = _STRICT

    agent_id: ShortStr = _unit("", "OpenClaw agent id", default="main")
    session_id: ShortStr = _unit("", "OpenClaw session id", min_length=1)
    session_key: ShortStr = _unit("", "OpenClaw session key, e.g. 'agent:main:planning'", default="")
    channel: ShortStr = _unit("", "channel the session talks on (telegram, discord, …; '' when none)", default="")
    chat_type: ShortStr = _unit("", "direct, group or channel ('' when unknown)", default="")
    label: ShortStr = _unit("", "the session's display name or label", default="")
    status: ShortStr = _unit("", "OpenClaw's session status: running, done, failed, killed, timeout ('' unknown)",
                             default="")
    started_ms: EpochMs | None = _unit("epoch_ms", "when the session started", default=None)
    updated_ms: EpochMs = _unit("epoch_ms", "when OpenClaw last updated the session's index entry")

    @field_validator("updated_ms", "started_ms")
    @classmethod
    def _ts_window(cls, v: int | None, info: ValidationInfo) -> int | None:
        return v if v is None else _window(info, v, RECORD_MIN_TS_MS)


class RunRecord(BaseModel):
    """One turn (an OpenClaw run): a user message and everything up to the final reply, from the transcript.

    ``id`` is stable per run, so the agent sends a run again as it progresses: a stored run is replaced by a
    record with an equal or higher ``rev``. ``total_tokens`` is always the sum of the four parts.
    """

    model_config = _STRICT

    id: str = _unit("", "stable run record id", **_RECORD_ID)
    agent_id: ShortStr = _unit("", "OpenClaw agent id", default="main")
    session_id: ShortStr = _unit("", "OpenClaw session id", default="")
    run_id: ShortStr = _unit("", "OpenClaw's run id ('' when the transcript names none)", default="")
    started_ms: EpochMs = _unit("epoch_ms", "when the user message was written")
    ended_ms: EpochMs = _unit("epoch_ms", "newest entry of the run (the final reply once it ended)")
    status: Literal["running", "ok", "failed", "aborted"] = _unit("", "running, ok, failed or aborted",
                                                                  default="running")
    stop_reason: ShortStr = _unit("", "stopReason of the newest assistant message", default="")
    provider: ShortStr = _unit("", "LLM provider id of the newest assistant message", default="")
    model: ShortStr = _unit("", "model id of the newest assistant message", default="")
    messages: Count = _unit("count", "assistant messages", default=0)
    error_messages: Count = _unit("count", 'assistant messages with stopReason "error" (failed model calls)',
                                  default=0)
    retries: Count = _unit("count", "model-call attempts after the first", default=0)
    tool_calls: Count = _unit("count", "tool calls the model asked for", default=0)
    tool_errors: Count = _unit("count", "tool calls whose result was an error", default=0)
    input_tokens: Tokens = _unit("tokens", "input tokens, excluding cache reads", default=0)
    output_tokens: Tokens = _unit("tokens", "output tokens", default=0)
    cache_read_tokens: Tokens = _unit("tokens", "input tokens read from the prompt cache", default=0)
    cache_write_tokens: Tokens = _unit("tokens", "input tokens written to the prompt cache", default=0)
    total_tokens: int = _unit("tokens", "input + output + cache read + cache write (recomputed)", default=0, ge=0,
                              validate_default=True)
    cost_usd: float | None = _unit("usd", "cost computed by OpenClaw; None when no message had a price",
                                   default=None, ge=0, le=MAX_COST_USD)
    error: str = _unit("", "the newest error message of the run (truncated)", default="",
                       max_length=MAX_RUN_ERROR, pattern=_NO_NUL)
    rev: Count = _unit("count", "transcript entries folded into this record (only grows)", default=0)

    @field_validator("total_tokens")
    @classmethod
    def _total_is_the_sum(cls, v: int, info: ValidationInfo) -> int:
        parts = [info.data.get(k) for k in ("input_tokens", "output_tokens", "cache_read_tokens",
                                             "cache_write_tokens")]
        return sum(parts) if all(isinstance(p, int) for p in parts) else v  # type: ignore[misc]

    @field_validator("started_ms", "ended_ms")
    @classmethod
    def _ts_window(cls, v: int, info: ValidationInfo) -> int:
        return _window(info, v, RECORD_MIN_TS_MS)


class ToolCallRecord(BaseModel):
    """One tool call a model asked for, and its outcome (a tool-result entry, or the plugin's
    ``after_tool_call``). ``id`` is stable per call: the same call from both sources is one record."""

    model_config = _STRICT

    id: str = _unit("", "stable tool call record id", **_RECORD_ID)
    agent_id: ShortStr = _unit("", "OpenClaw agent id", default="main")
    session_id: ShortStr = _unit("", "OpenClaw session id", default="")
    run: str = _unit("", "id of the run record it belongs to ('' unknown)", default="", max_length=64,
                     pattern=r"^[A-Za-z0-9_-]*$")
    ts: EpochMs = _unit("epoch_ms", "when the model asked for the call")
    tool: ShortStr = _unit("", "tool name", min_length=1)
    error: bool | None = _unit("", "the result was an error (None: no result seen)", default=None)
    duration_s: float | None = _unit("seconds", "from the call to its result (None: unknown)", default=None, ge=0,
                                     le=MAX_DURATION_S)
    source: Literal["transcript", "plugin"] = _unit("", "where the agent read it", default="transcript")

    @field_validator("ts")
    @classmethod
    def _ts_window(cls, v: int, info: ValidationInfo) -> int:
        return _window(info, v, RECORD_MIN_TS_MS)


class UsageBatch(_Delivered):
    """``…/usage`` (QoS 1, not retained): a batch of token-usage records, and (newer agents, in messages
    of their own) OpenClaw sessions, runs and tool calls. A server that predates those lists ignores them."""

    records: list[UsageRecord] = _unit("", "records", max_length=MAX_BATCH_RECORDS)
    sessions: list[SessionRecord] = _unit("", "sessions whose index entry changed", default_factory=list,
                                          max_length=MAX_BATCH_RECORDS)
    runs: list[RunRecord] = _unit("", "runs (turns) that are new or changed", default_factory=list,
                                  max_length=MAX_BATCH_RECORDS)
    tool_calls: list[ToolCallRecord] = _unit("", "tool calls", default_factory=list, max_length=MAX_BATCH_RECORDS)


class LogBatch(_Delivered):
    """``…/logs`` (QoS 1, not retained): a batch of log records."""

    records: list[LogRecord] = _unit("", "records", max_length=MAX_BATCH_RECORDS)


class Command(BaseModel):
    """``…/cmd`` (server -> agent, QoS 1): something the agent should do now: ``report_now``, or
    ``update`` to ``version`` (rolled back when it has not reported after ``rollback_after_s``)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    v: Literal[1] = PROTOCOL_VERSION
    ts: EpochMs
    command: Literal["report_now", "update"]
    version: str | None = _unit("", "update: agent version to install", default=None, pattern=VERSION_RE.pattern)
    rollback_after_s: int | None = _unit("seconds", "update: roll back when the new version has not reported "
                                         "after this long", default=None, ge=MIN_ROLLBACK_S, le=MAX_ROLLBACK_S)

    @model_validator(mode="after")
    def _update_names_a_version(self) -> Command:
        if self.command == "update" and not self.version:
            raise ValueError("an update command needs a version")
        return self


class SnoozeRequest(_Payload):
    """``…/snooze`` (agent -> server, QoS 1, not retained): no alert notifications about this device
    until ``until_ms`` (the tray's "Snooze alerts for this machine"). The broker lets a device
    publish only on its own topic; the server caps the length."""

    until_ms: EpochMs = _unit("epoch_ms", "end of the snooze, epoch milliseconds UTC")
    reason: ShortStr | None = _unit("", "shown on the Alerts page", default=None)


class Availability(BaseModel):
    """``…/availability`` (server, retained, QoS 1): the server's own verdict about a device, for
    integrations (Home Assistant's availability topic). ``state``: online, offline, stale (no data
    for 3 intervals although connected), paused, sleeping, shutdown, revoked or unknown."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    v: Literal[1] = PROTOCOL_VERSION
    device_id: str
    ts: EpochMs = _unit("epoch_ms", "when the server published it")
    state: str = _unit("", "online | offline | stale | paused | sleeping | shutdown | revoked | unknown")
    online: bool = _unit("", "state == online (what a binary sensor needs)")
    since_ms: int | None = _unit("epoch_ms", "when this state began", default=None)
    reason: str | None = _unit("", "why, e.g. 'last-will', 'no data for 3 intervals'", default=None)


class ServerStatus(BaseModel):
    """``clawfleet/v1/_server/status`` (retained): server birth ``online`` / will ``offline``."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    v: Literal[1] = PROTOCOL_VERSION
    ts: EpochMs
    state: Literal["online", "offline"]
    receipts: bool = False


SCHEMA_BY_CHANNEL: dict[Channel, type[_Payload]] = {
    Channel.STATUS: Status,
    Channel.META: Meta,
    Channel.TELEMETRY: Telemetry,
    Channel.USAGE: UsageBatch,
    Channel.LOGS: LogBatch,
    Channel.SNOOZE: SnoozeRequest,
}


def encode(payload: BaseModel) -> bytes:
    """Serialise a payload model to compact UTF-8 JSON bytes (None fields left out)."""
    return payload.model_dump_json(exclude_none=True).encode()


def decode(channel: Channel, raw: bytes, expected_device_id: str | None = None,
           now_ms: int | None = None) -> _Payload:
    """Parse and validate a device payload received on ``channel``.

    Never raises anything but :class:`PayloadError`, whatever ``raw`` holds (the ingest path
    depends on it: it runs in the MQTT client's network thread).

    Args:
        channel: the topic's channel (``status``, ``meta``, ``telemetry``, ``usage``, ``logs``).
        raw: the MQTT payload bytes (UTF-8 JSON, at most :data:`MAX_PAYLOAD_BYTES`).
        expected_device_id: the device id from the topic; the payload's must equal it.
        now_ms: the server's clock, epoch ms, for the timestamp windows; None = check only the
            fixed 2000-2100 range.

    Returns:
        The validated model (:class:`Status`, :class:`Meta`, :class:`Telemetry`,
        :class:`UsageBatch` or :class:`LogBatch`).

    Raises:
        PayloadError: with ``reason`` one of ``too_large``, ``not_json``, ``not_object``,
            ``bad_version``, ``invalid``, ``ts_out_of_window``, ``device_mismatch``, ``bad_channel``.
    """
    try:
        return _decode(channel, raw, expected_device_id, now_ms)
    except PayloadError:
        raise
    except Exception as exc:  # a parser or validator bug must not become a crash of the caller
        raise PayloadError("invalid", f"payload could not be validated: {type(exc).__name__}: {exc}"[:500]) from None


def _decode(channel: Channel, raw: bytes, expected_device_id: str | None, now_ms: int | None) -> _Payload:
    schema = SCHEMA_BY_CHANNEL.get(channel)
    if schema is None:
        raise PayloadError("bad_channel", f"devices do not publish on {channel.value!r}")
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise PayloadError("too_large", f"payload is {len(raw)} bytes; the limit is {MAX_PAYLOAD_BYTES}")
    raw = bytes(raw)
    context = None if now_ms is None else {"now_ms": now_ms}
    model = _fast_decode(schema, raw, expected_device_id, context)
    if model is not None:
        return model
    return _reference_decode(schema, raw, expected_device_id, context)


def _fast_decode(schema: type[_Payload], raw: bytes, expected_device_id: str | None,
                 context: dict | None) -> _Payload | None:
    """The hot path: parse and validate the bytes in one pass (pydantic-core's ``model_validate_json``,
    same Rust parser and limits). Returns the model only when :func:`_reference_decode` would accept
    the payload too, else None (then the reference path runs and names the reason): the bytes hold
    no ``NaN``/``Infinity`` literal (``model_validate_json`` would let one pass in an ignored extra
    field), ``v`` was sent (not defaulted), and the device id matches."""
    if b"NaN" in raw or b"Infinity" in raw:
        return None
    try:
        model = schema.model_validate_json(raw, context=context)
    except Exception:  # any failure: the reference path decides and explains
        return None
    if "v" not in model.model_fields_set or (expected_device_id is not None and model.device_id != expected_device_id):
        return None
    return model


def _reference_decode(schema: type[_Payload], raw: bytes, expected_device_id: str | None,
                      context: dict | None) -> _Payload:
    """Parse, then validate step by step, raising :class:`PayloadError` with the precise reason."""
    try:  # Rust parser: nesting <= 200 levels, numbers <= 4300 digits, no NaN/Infinity, valid UTF-8
        data = from_json(raw, allow_inf_nan=False, cache_strings=False)
    except ValueError as exc:
        raise PayloadError("not_json", f"payload is not UTF-8 JSON: {exc}") from None
    if not isinstance(data, dict):
        raise PayloadError("not_object", f"payload must be a JSON object, got {type(data).__name__}")
    if data.get("v") != PROTOCOL_VERSION:
        raise PayloadError("bad_version", f"protocol version {repr(data.get('v'))[:20]} is not supported "
                                          "(expected 1)")
    try:
        model = schema.model_validate(data, context=context)
    except ValidationError as exc:
        windows = any(e["type"] == "ts_window" for e in exc.errors())
        raise PayloadError("ts_out_of_window" if windows else "invalid", _summarise(exc)) from None
    if expected_device_id is not None and model.device_id != expected_device_id:
        raise PayloadError(
            "device_mismatch",
            f"payload device_id {model.device_id!r} differs from the topic's {expected_device_id!r}",
        )
    return model


def delivery_fields(raw: bytes) -> tuple[str, int, int] | None:
    """``(outbox, seq, seq_floor)`` of a device payload that :func:`decode` refused, read leniently
    (the JSON object's top-level fields, each checked alone; a missing ``seq_floor`` is 1, one above
    ``seq`` is capped at it), so a rejected message still counts as received. None when the bytes are
    no JSON object or the fields are missing or malformed. Never raises."""
    try:
        data = from_json(raw, allow_inf_nan=False, cache_strings=False)
        if not isinstance(data, dict):
            return None
        outbox, seq, floor = data.get("outbox"), data.get("seq"), data.get("seq_floor", 1)
        if not isinstance(outbox, str) or not _OUTBOX_ID.fullmatch(outbox):
            return None
        if any(type(x) is not int or not 1 <= x <= MAX_SEQ for x in (seq, floor)):
            return None
        return outbox, seq, min(floor, seq)
    except Exception:  # whatever the bytes hold: no delivery fields
        return None


def _now(info: ValidationInfo) -> int:
    return (info.context or {}).get("now_ms") or 0


def _summarise(exc: ValidationError, limit: int = 3) -> str:
    parts = []
    for err in exc.errors(include_url=False, include_input=False)[:limit]:
        loc = ".".join(str(p) for p in err["loc"])[:80] or "(payload)"
        parts.append(f"{loc}: {err['msg'][:200]}")
    more = exc.error_count() - limit
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")
