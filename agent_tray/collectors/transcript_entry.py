"""One OpenClaw transcript line -> at most one usage record and one log record.

A transcript line is the same JSON object in both storage eras: a line of a legacy
``agents/<id>/sessions/<sessionId>.jsonl`` file, or ``transcript_events.event_json`` in the
2026.8+ SQLite store. The parts read here (see ``design/openclaw.md``)::

    {"type": "message", "id": "<entry id>", "timestamp": "<ISO 8601 UTC>",
     "message": {"role": "assistant", "provider": "...", "model": "...",
                 "usage": {"input": N, "output": N, "cacheRead": N, "cacheWrite": N,
                           "totalTokens": N, "cost": {"total": USD, ...}},
                 "stopReason": "stop" | "error" | ..., "timestamp": <epoch ms>,
                 "errorMessage": "...", "errorType": "...", "errorCode": "..."}}

Decisions (each one checked against what OpenClaw itself does):

* **Which messages count**: assistant messages with a ``usage`` object, except delivery
  mirrors (``provider == "openclaw"`` and ``model`` in ``delivery-mirror``/``gateway-injected``).
* **Failed turns** (``stopReason == "error"``) become an error :class:`LogRecord` (with the
  agent and session) and a usage record with ``failed=True``, so the server counts messages and
  failed turns per agent, model and day from one table. They carry zero usage in every capture;
  should one ever carry tokens (a stream cut after the provider billed it) the record keeps them,
  because OpenClaw's ``usage-cost`` counts those tokens too.
* **ts**: the message's epoch-ms ``timestamp`` (what OpenClaw 2026.9's usage rollup uses),
  else the line's ISO ``timestamp`` (what 2026.7's usage-cost cache used; they differ by up to
  ~1 s), else the caller's fallback (the SQLite row's ``created_at`` / the file's mtime).
* **cost_usd** mirrors OpenClaw's "missing cost" rule (``session-cost-usage.ts``): ``None``
  ("no price") when the usage has no ``cost`` object or no numeric ``cost.total``, and also
  when ``cost.total`` is 0 with every component 0 while tokens were used -- that is what
  OpenClaw writes for a model without a price, and its own usage-cost counts it as a missing
  cost entry. ``0.0`` is kept as a real $0 only when it cannot be "no price": zero tokens, or a
  recorded breakdown with a non-zero component. Any positive total is kept as is (USD).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from agent_tray.collectors.logs import MAX_MESSAGE_CHARS, fingerprint
from agent_tray.collectors.result import iso_to_ms, stable_id
from shared.payloads import MAX_COST_USD, MAX_SHORT_STR, MAX_TOKENS, MAX_TS_MS, MIN_TS_MS, LogRecord, UsageRecord

MIRROR_PROVIDER = "openclaw"
MIRROR_MODELS = frozenset({"delivery-mirror", "gateway-injected"})

_ALIASES: dict[str, tuple[str, ...]] = {
    "input": ("input", "inputTokens", "input_tokens", "prompt_tokens", "promptTokens"),
    "output": ("output", "outputTokens", "output_tokens", "completion_tokens", "completionTokens"),
    "cache_read": ("cacheRead", "cache_read", "cacheReadTokens", "cache_read_input_tokens",
                   "cache_read_tokens"),
    "cache_write": ("cacheWrite", "cache_write", "cacheWriteTokens", "cache_creation_input_tokens",
                    "cache_creation_tokens"),
    "total": ("totalTokens", "total_tokens", "total"),
}


@dataclass(frozen=True)
class Tokens:
    """Token counts of one assistant message (tokens; ``total`` defaults to the sum)."""

    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0
    total: int = 0


@dataclass(frozen=True)
class Entry:
    """The parts of one user/assistant transcript line that the collectors use.

    ``ts_ms`` is epoch milliseconds UTC or ``None`` when the line has no usable timestamp.
    ``tokens`` is ``None`` when the message has no ``usage`` object.
    """

    entry_id: str | None
    role: str
    ts_ms: int | None
    provider: str
    model: str
    stop_reason: str
    tokens: Tokens | None
    cost_usd: float | None
    is_mirror: bool
    error_message: str
    error_type: str
    error_code: str

    @property
    def is_error(self) -> bool:
        """A failed model call (``stopReason == "error"``)."""
        return self.role == "assistant" and self.stop_reason == "error"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                return None
        else:
            return None
    return float(value) if math.isfinite(value) else None


def _count(usage: dict[str, Any], key: str) -> int | None:
    for alias in _ALIASES[key]:
        n = _number(usage.get(alias))
        if n is not None:
            return min(MAX_TOKENS, max(0, int(n)))  # the server refuses more in one field
    return None


def normalize_usage(usage: Any) -> Tokens | None:
    """Token counts from a transcript ``usage`` object, accepting OpenClaw's aliases.

    All fields are optional; ``total`` defaults to input + output + cacheRead + cacheWrite.
    Returns ``None`` when ``usage`` is not an object.
    """
    if not isinstance(usage, dict):
        return None
    inp = _count(usage, "input") or 0
    out = _count(usage, "output") or 0
    cr = _count(usage, "cache_read") or 0
    cw = _count(usage, "cache_write") or 0
    total = _count(usage, "total")
    return Tokens(inp, out, cr, cw, inp + out + cr + cw if total is None else total)


def cost_usd(usage: Any, tokens: Tokens | None) -> float | None:
    """USD cost of one message from ``usage.cost``, ``None`` for "no price" (module docstring)."""
    if not isinstance(usage, dict) or not isinstance(usage.get("cost"), dict):
        return None
    cost = usage["cost"]
    total = _number(cost.get("total"))
    if total is None or total < 0:
        return None
    if total > 0:
        return min(total, MAX_COST_USD)
    components = (_number(cost.get(k)) for k in ("input", "output", "cacheRead", "cacheWrite"))
    if any(c for c in components):
        return 0.0  # OpenClaw's "preserve recorded zero": a provider-reconciled $0
    return 0.0 if tokens is None or tokens.total == 0 else None


def _valid_ms(value: Any) -> int | None:
    n = _number(value)
    if n is None:
        return None
    ms = int(n)
    return ms if MIN_TS_MS <= ms < MAX_TS_MS else None


def parse_entry(obj: Any) -> Entry | None:
    """Parse one transcript line (already JSON-decoded); ``None`` unless user/assistant."""
    if not isinstance(obj, dict):
        return None
    msg = obj.get("message")
    if not isinstance(msg, dict):
        return None
    role = msg.get("role")
    if role not in ("user", "assistant"):
        return None
    usage_raw = msg.get("usage", obj.get("usage"))
    tokens = normalize_usage(usage_raw)
    provider = msg.get("provider", obj.get("provider"))
    model = msg.get("model", obj.get("model"))
    provider = provider if isinstance(provider, str) else ""
    model = model if isinstance(model, str) else ""
    ts = _valid_ms(msg.get("timestamp"))
    if ts is None:
        iso = iso_to_ms(obj.get("timestamp"))
        ts = iso if iso is not None and MIN_TS_MS <= iso < MAX_TS_MS else None
    entry_id = obj.get("id")

    def text(key: str) -> str:
        value = msg.get(key)
        return value if isinstance(value, str) else ("" if value is None else str(value))

    return Entry(
        entry_id=entry_id if isinstance(entry_id, str) and entry_id else None,
        role=role,
        ts_ms=ts,
        provider=provider,
        model=model,
        stop_reason=text("stopReason"),
        tokens=tokens,
        cost_usd=cost_usd(usage_raw, tokens),
        is_mirror=provider == MIRROR_PROVIDER and model in MIRROR_MODELS,
        error_message=text("errorMessage"),
        error_type=text("errorType"),
        error_code=text("errorCode"),
    )


def usage_record_id(device_id: str, agent_id: str, session_id: str, entry_id: str) -> str:
    """Id of the usage record of one transcript entry: hash(device, agent, session, entry)."""
    return stable_id(device_id, agent_id, session_id, entry_id)


def error_record_id(device_id: str, agent_id: str, session_id: str, entry_id: str) -> str:
    """Id of the error log record of one failed turn: the usage hash with an ``err`` prefix."""
    return stable_id("err", device_id, agent_id, session_id, entry_id)


def error_message(entry: Entry, agent_id: str, session_id: str) -> str:
    """Human text for a failed turn: errorMessage plus type/code, model, agent and session."""
    main = entry.error_message or entry.error_type or entry.error_code or "model call failed"
    details = [f"{k}={v}" for k, v in (("type", entry.error_type), ("code", entry.error_code)) if v]
    if entry.provider or entry.model:
        details.append(f"model={entry.provider}/{entry.model}")
    details += [f"agent={agent_id}", f"session={session_id}"]
    return f"{main} ({', '.join(details)})"[:MAX_MESSAGE_CHARS]


def entry_records(
    entry: Entry,
    *,
    device_id: str,
    agent_id: str,
    session_id: str,
    entry_key: str,
    fallback_ts_ms: int | None,
) -> tuple[UsageRecord | None, LogRecord | None]:
    """Records for one parsed entry: (usage or None, error log or None).

    ``entry_key`` is the transcript entry id (or a stand-in the reader derived from the raw
    line when the entry has none). ``fallback_ts_ms`` (epoch ms) is used when the line has no
    timestamp; with neither, the entry yields nothing.
    """
    if entry.role != "assistant" or entry.is_mirror:
        return None, None
    ts = entry.ts_ms if entry.ts_ms is not None else _valid_ms(fallback_ts_ms)
    if ts is None:
        return None, None
    usage = log = None
    tok = entry.tokens
    if entry.is_error:
        message = error_message(entry, agent_id, session_id)
        log = LogRecord(
            id=error_record_id(device_id, agent_id, session_id, entry_key), ts=ts, level="error",
            subsystem="", message=message, fingerprint=fingerprint(message), source="transcript",
            agent_id=agent_id[:MAX_SHORT_STR], session_id=session_id[:MAX_SHORT_STR],
        )
    if entry.is_error and tok is None:
        tok = Tokens()
    if tok is not None:
        usage = UsageRecord(
            id=usage_record_id(device_id, agent_id, session_id, entry_key), ts=ts,
            agent_id=agent_id[:MAX_SHORT_STR], session_id=session_id[:MAX_SHORT_STR],
            provider=entry.provider[:MAX_SHORT_STR], model=entry.model[:MAX_SHORT_STR], input_tokens=tok.input,
            output_tokens=tok.output, cache_read_tokens=tok.cache_read, cache_write_tokens=tok.cache_write,
            total_tokens=tok.total, cost_usd=entry.cost_usd, source="transcript", failed=entry.is_error,
        )
    return usage, log
