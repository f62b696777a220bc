"""What the OpenClaw collectors return, and how they name records.

Every OpenClaw collector has one public method, ``collect(positions) -> CollectResult``.
``positions`` is a JSON-serialisable dict the caller persisted from the previous result (an
empty dict on the first run). The collector never writes a file and keeps no read position of
its own: the caller stores ``records + positions`` in one transaction, then passes
``positions`` back on the next call. A crash between reading and storing therefore repeats a
read (the stable record ids make the repeat harmless) and never skips one.

When a call stops early because it hit its per-call budget, the returned positions differ
from the ones passed in: call again (immediately, or on the next tick) until they stop
changing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.payloads import LogRecord, RunRecord, SessionRecord, ToolCallRecord, UsageRecord

ID_HEX_CHARS = 32
"""Length of record ids: the first 32 hex characters (128 bits) of a SHA-256."""


@dataclass
class CollectResult:
    """One collector call's output.

    Attributes:
        usage: new token-usage records (one per assistant message), oldest first per source.
        logs: new log records (gateway-log warnings/errors, failed transcript turns).
        positions: the read positions to persist together with the records and to pass to the
            next ``collect`` call; JSON-serialisable (str keys, int/str/list/dict values).
        runs: turns that are new or changed (:mod:`agent_tray.collectors.runs`).
        tool_calls: tool calls seen (:mod:`agent_tray.collectors.runs`).
        sessions: sessions whose index entry changed (:mod:`agent_tray.collectors.sessions`).
    """

    usage: list[UsageRecord] = field(default_factory=list)
    logs: list[LogRecord] = field(default_factory=list)
    positions: dict[str, Any] = field(default_factory=dict)
    runs: list[RunRecord] = field(default_factory=list)
    tool_calls: list[ToolCallRecord] = field(default_factory=list)
    sessions: list[SessionRecord] = field(default_factory=list)

    def empty(self) -> bool:
        """True when the call produced no record of any kind."""
        return not (self.usage or self.logs or self.runs or self.tool_calls or self.sessions)


def stable_id(*parts: object) -> str:
    """Stable record id: SHA-256 over the parts joined by ``0x1f``, first 32 hex chars.

    The same parts give the same id on every machine, across restarts and re-reads, so the
    server's idempotent insert turns a repeated record into a no-op.
    """
    joined = "\x1f".join(str(p) for p in parts)
    return hashlib.sha256(joined.encode("utf-8", "surrogatepass")).hexdigest()[:ID_HEX_CHARS]


def short_hash(data: bytes, n: int = 24) -> str:
    """First ``n`` hex chars of the SHA-256 of ``data`` (file identities, tail checks)."""
    return hashlib.sha256(data).hexdigest()[:n]


def iso_to_ms(value: Any) -> int | None:
    """Epoch ms UTC from an ISO 8601 string with ``Z`` or an offset; ``None`` otherwise."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return int(round(parsed.timestamp() * 1000))
