"""One transcript line -> records: usage aliases, cost rules, timestamps, failed turns."""

from __future__ import annotations

from typing import Any

import pytest

from agent_tray.collectors.transcript_entry import (
    Tokens,
    cost_usd,
    entry_records,
    error_record_id,
    normalize_usage,
    parse_entry,
    usage_record_id,
)


def line(usage: Any = None, **msg: Any) -> dict[str, Any]:
    message = {"role": "assistant", "provider": "p", "model": "m", "timestamp": 1_795_234_253_457, **msg}
    if usage is not None:
        message["usage"] = usage
    return {"type": "message", "id": "e1", "timestamp": "2026-11-21T04:10:53.569Z", "message": message}


def records(obj: dict[str, Any], fallback: int | None = None):
    entry = parse_entry(obj)
    assert entry is not None
    return entry_records(entry, device_id="d", agent_id="main", session_id="s", entry_key=entry.entry_id or "k",
                         fallback_ts_ms=fallback)


@pytest.mark.parametrize(("usage", "expected"), [
    ({"input": 10, "output": 2, "cacheRead": 3, "cacheWrite": 4, "totalTokens": 19}, Tokens(10, 2, 3, 4, 19)),
    ({"input": 10, "output": 2, "cacheRead": 3, "cacheWrite": 4}, Tokens(10, 2, 3, 4, 19)),  # total = sum
    ({"input_tokens": 5, "output_tokens": 6, "cache_read_input_tokens": 7, "cache_creation_input_tokens": 8},
     Tokens(5, 6, 7, 8, 26)),
    ({"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11}, Tokens(5, 6, 0, 0, 11)),
    ({}, Tokens(0, 0, 0, 0, 0)),
    ({"input": -3, "output": "7", "cacheRead": None, "totalTokens": 2.0}, Tokens(0, 7, 0, 0, 2)),
])
def test_usage_aliases_and_default_total(usage: dict, expected: Tokens) -> None:
    assert normalize_usage(usage) == expected


@pytest.mark.parametrize(("usage", "expected"), [
    ({"input": 10, "cost": {"input": 0.1, "output": 0.2, "total": 0.3}}, 0.3),
    ({"input": 10}, None),  # no cost object: no price
    ({"input": 10, "cost": {"total": "n/a"}}, None),
    ({"input": 10, "cost": {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0, "total": 0}}, None),
    ({"input": 10, "cost": {"input": 0.5, "total": 0}}, 0.0),  # a recorded zero with a priced part
    ({"input": 0, "output": 0, "cost": {"total": 0}}, 0.0),  # nothing used, nothing owed
])
def test_cost_keeps_no_price_apart_from_zero(usage: dict, expected: float | None) -> None:
    assert cost_usd(usage, normalize_usage(usage)) == expected


def test_timestamp_prefers_message_epoch_ms_then_line_iso_then_fallback() -> None:
    usage = {"input": 1}
    assert records(line(usage))[0].ts == 1_795_234_253_457
    obj = line(usage)
    del obj["message"]["timestamp"]
    assert records(obj)[0].ts == 1_795_234_253_569
    del obj["timestamp"]
    assert records(obj, fallback=1_795_000_000_000)[0].ts == 1_795_000_000_000
    assert records(obj) == (None, None)


def test_failed_turn_is_an_error_log_and_a_failed_usage_record() -> None:
    zero = {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0, "totalTokens": 0, "cost": {"total": 0}}
    usage, err = records(line(zero, stopReason="error", errorMessage="429 Rate limit reached",
                              errorType="rate_limit_error", errorCode="rate_limit_exceeded"))
    assert usage is not None and usage.failed and usage.total_tokens == 0 and err is not None
    assert err.agent_id == "main" and err.session_id == "s"
    assert err.id == error_record_id("d", "main", "s", "e1") != usage_record_id("d", "main", "s", "e1") == usage.id
    assert err.level == "error" and err.source == "transcript"
    assert err.message.startswith("429 Rate limit reached (type=rate_limit_error, code=rate_limit_exceeded")
    # a failed turn that still consumed tokens keeps them (OpenClaw's usage-cost counts them too)
    usage, err = records(line({"input": 50, "output": 0}, stopReason="error", errorMessage="stream cut"))
    assert usage is not None and usage.total_tokens == 50 and err is not None


def test_user_lines_and_non_messages_give_nothing() -> None:
    assert parse_entry({"type": "session", "id": "x"}) is None
    user = line({"input": 1})
    user["message"]["role"] = "user"
    assert records(user) == (None, None)
    assert records(line(None)) == (None, None)  # assistant without usage: nothing to count
