"""Response models of the REST API (``/api/v1``): what the OpenAPI document shows.

Field names and units follow ``shared.schemas``: ``_ms`` epoch milliseconds UTC, ``_tokens`` LLM
tokens, ``_usd`` US dollars, ``_pct`` percent 0-100, ``_bytes`` bytes, ``_bps`` bytes per second.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class LatestErrorOut(BaseModel):
    """The newest error of a device that says what failed (never an OpenClaw CLI hint line)."""

    ts: int = Field(description="epoch ms UTC")
    level: str
    subsystem: str
    message: str


class TokensOut(BaseModel):
    """Token sums (tokens) and cost (USD of priced messages; ``unpriced_tokens`` have no price)."""

    messages: int = Field(description="assistant messages")
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    total_tokens: int
    failed_turns: int = Field(description="turns (runs started in the range) that ended without a reply, counted "
                                          "once; 0 from agents that report no runs")
    error_messages: int = Field(description='assistant messages with stopReason "error" (one per failed attempt)')
    cost_usd: float | None = Field(description="USD of priced messages; None when none was priced (unpriced, not $0)")
    priced_messages: int
    unpriced_tokens: int = Field(description="tokens with no price rule and no cost recorded by OpenClaw")


class DeviceOut(BaseModel):
    """A device and its latest known state."""

    device_id: str
    name: str
    status: str = Field(description="online | offline | sleeping | shutdown | paused | unknown | revoked")
    status_reason: str | None
    status_ms: int | None = Field(description="when the status last changed, epoch ms UTC")
    last_seen_ms: int | None = Field(description="when the server last received any message from the device "
                                                 "(server clock), epoch ms UTC")
    tags: list[str]
    created_ms: int | None
    revoked_ms: int | None
    meta: dict[str, Any] | None = Field(description="as shared.schemas.Meta")
    telemetry: dict[str, Any] | None = Field(description="latest sample, as shared.schemas.Telemetry")
    latest_error: LatestErrorOut | None
    tokens_total: TokensOut = Field(description="all-time token sums")
    rejects: dict[str, int] = Field(description="messages the server rejected, by reason")


class StatusEventOut(BaseModel):
    """One availability change."""

    ts: int = Field(description="epoch ms UTC")
    state: str
    reason: str | None


class SamplesOut(BaseModel):
    """Telemetry samples over a window (oldest first)."""

    device_id: str
    window: str
    tier: str = Field(description="'raw' samples or a rollup tier")
    since_ms: int
    samples: list[dict[str, Any]]


class UsageRowOut(TokensOut):
    """Usage of one group; the group key fields (device, agent, model, session, day) come first. An
    agent is a device's agent: rows grouped by agent or session carry ``device`` too."""

    model_config = {"extra": "allow"}


class UsageOut(BaseModel):
    """``GET /api/v1/usage``: rows and the range they cover."""

    group_by: list[str]
    since_ms: int | None
    until_ms: int | None
    tz: str
    rows: list[UsageRowOut]


class LogOut(BaseModel):
    """One OpenClaw warning or error."""

    id: str
    device: str
    ts: int = Field(description="epoch ms UTC")
    level: str
    subsystem: str
    message: str
    fingerprint: str
    source: str = Field(description="gateway-log | transcript")
    agent_id: str | None
    session_id: str | None
    session_key: str | None = Field(default=None, description="e.g. agent:main:planning, when the line names it")
    run_id: str | None = Field(default=None, description="OpenClaw run id, when the line names it")


class LogPageOut(BaseModel):
    """A page of logs, newest first; pass ``next_cursor`` as ``cursor`` for the next page."""

    rows: list[LogOut]
    next_cursor: str | None


class FingerprintOut(BaseModel):
    """Log records of one fingerprint (the message with its variable parts removed)."""

    fingerprint: str
    count: int
    first_ms: int
    last_ms: int
    devices: int = Field(description="distinct devices affected")
    level: str
    subsystem: str
    sample: str = Field(description="the newest message")


# --- sessions, runs, tool calls, versions (fleet_server.api.sessions) ---

class SessionOut(BaseModel):
    """One OpenClaw session of one device's agent: its index entry and the sums of its turns."""

    device: str
    agent_id: str
    session_id: str
    session_key: str = Field(description="e.g. 'agent:main:planning' ('' when the index has none)")
    channel: str
    chat_type: str
    label: str
    status: str = Field(description="OpenClaw's session status: running, done, failed, killed, timeout or ''")
    started_ms: int | None
    updated_ms: int | None = Field(description="when OpenClaw last updated its index entry, epoch ms UTC")
    first_ms: int | None = Field(description="first activity, epoch ms UTC")
    last_ms: int | None = Field(description="newest activity, epoch ms UTC")
    turns: int = Field(description="runs: a user message and everything up to the final reply")
    failed_turns: int = Field(description="turns that ended with a failed model call and no reply")
    error_messages: int = Field(description='assistant messages with stopReason "error" (one per failed attempt)')
    retries: int
    tool_calls: int
    tool_errors: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    total_tokens: int
    cost: float | None = Field(description="USD of the priced turns; None when tokens were used and none was priced")
    unpriced_tokens: int
    models: str = Field(description="comma-separated provider/model ids the turns used")
    latest_error: str
    latest_error_ms: int | None


class SessionPageOut(BaseModel):
    """A page of sessions; pass ``next_cursor`` as ``cursor`` for the next page."""

    rows: list[SessionOut]
    next_cursor: str | None


class RunOut(BaseModel):
    """One turn (an OpenClaw run)."""

    device: str
    id: str
    agent_id: str
    session_id: str
    run_id: str = Field(description="OpenClaw's run id")
    started_ms: int = Field(description="the user message, epoch ms UTC")
    ended_ms: int = Field(description="the newest entry (the final reply once it ended), epoch ms UTC")
    duration_s: float
    status: str = Field(description="running | ok | failed | aborted")
    stop_reason: str
    provider: str
    model: str
    messages: int
    error_messages: int
    retries: int
    tool_calls: int
    tool_errors: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    total_tokens: int
    cost: float | None = Field(description="USD: the price rule's, else OpenClaw's; None unpriced")
    error: str


class RunPageOut(BaseModel):
    """A page of runs, newest first."""

    rows: list[RunOut]
    next_cursor: str | None


class ToolCallOut(BaseModel):
    """One tool call."""

    device: str
    id: str
    agent_id: str
    session_id: str
    run: str = Field(description="id of its run ('' unknown)")
    ts: int = Field(description="when the model asked for it, epoch ms UTC")
    tool: str
    error: bool | None = Field(description="the result was an error; None when no result was seen")
    duration_s: float | None
    source: str = Field(description="transcript | plugin")


class ToolPageOut(BaseModel):
    """A page of tool calls, newest first."""

    rows: list[ToolCallOut]
    next_cursor: str | None


class ToolSummaryOut(BaseModel):
    """Calls of one tool (per device/agent when grouped), the most failing first."""

    model_config = {"extra": "allow"}

    tool: str
    calls: int
    errors: int
    unanswered: int = Field(description="calls with no result seen")
    error_pct: float | None = Field(description="errors / answered calls, 0-100")
    avg_duration_s: float | None
    max_duration_s: float | None
    last_ms: int | None
