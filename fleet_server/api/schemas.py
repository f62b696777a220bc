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
    failed_turns: int = Field(description='assistant messages with stopReason "error"')
    cost_usd: float | None = Field(description="USD of priced messages; None when none was priced (unpriced, not $0)")
    priced_messages: int
    unpriced_tokens: int = Field(description="tokens with no price rule and no cost recorded by OpenClaw")


class DeviceOut(BaseModel):
    """A device and its latest known state."""

    device_id: str
    name: str
    status: str = Field(description="online | offline | sleeping | shutdown | unknown | revoked")
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
