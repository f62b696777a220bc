"""Hostile payload strategies (hypothesis) and checks that stored or decoded values respect the
schema's bounds. Used by ``tests/fuzz/``."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path
from typing import Any

from hypothesis import strategies as st
from payload_helpers import (
    activity_batch,
    batch,
    log_record,
    meta,
    now_ms,
    run_record,
    session_record,
    status,
    telemetry,
    tool_call,
    usage_record,
)

from shared import schemas
from shared.topics import DEVICE_PUBLISH_CHANNELS, Channel

INT64 = 2**63

HOSTILE_NUMBERS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([2**63, 2**63 - 1, -(2**63), 2**64, 10**18, 10**12 + 1, -1, 0]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e308, -0.0, 5e-324, 1e19]),
)
HOSTILE_STRINGS = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["\x00", "a\x00b", "\ud7ff", "🛰️" * 100, "x" * 5000, "", "online", "last-will"]),
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | HOSTILE_NUMBERS | HOSTILE_STRINGS,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=20,
)
POISON = st.sampled_from([
    b"[" * 100_000, b"{\"a\":" * 50_000, b'{"v":1,"x":' + b"9" * 5000 + b"}", b'{"v":1,"x":1' + b"0" * 5000 + b".5}",
    b'{"v":1,"x":NaN}', b'{"v":1,"x":Infinity}', b'{"v":1,"x":-Infinity}', b'{"v":1,"x":1e999}',
    b"\xff\xfe\xfd", b'{"v":1,"x":"\\ud800"}', b"null", b"[]", b'"v"', b"1", b"", b" ",
    b'{"v":1}' + b" " * (schemas.MAX_PAYLOAD_BYTES + 1),
])


def valid_payload(channel: Channel, device_id: str, activity: bool = False) -> dict[str, Any]:
    """A valid payload of ``channel`` as a dict (a starting point for mutations); ``activity``: a usage batch
    with a session, a run and a tool call instead of a usage record."""
    if channel is Channel.TELEMETRY:
        return telemetry(device_id)
    if channel is Channel.STATUS:
        return status(device_id, "online")
    if channel is Channel.META:
        return meta(device_id)
    if channel is Channel.USAGE:
        if activity:
            return activity_batch(device_id, sessions=[session_record()], runs=[run_record()], tool_calls=[tool_call()])
        return batch(device_id, [usage_record()])
    if channel is Channel.SNOOZE:
        return {"v": 1, "device_id": device_id, "ts": now_ms(), "until_ms": now_ms() + 3_600_000}
    return batch(device_id, [log_record()])


_EDGE_INTS = [0, 1, 100, 101, schemas.MAX_TOKENS, schemas.MAX_TOKENS + 1, schemas.MAX_BYTES, schemas.MAX_BYTES + 1,
              2**62, 2**63 - 1, 2**63, -1]
_EDGE_FLOATS = [0.0, 100.0, 100.000001, schemas.MAX_BPS, schemas.MAX_BPS * 1.01, schemas.MAX_UPTIME_S, 1e300, -0.0]


def near_bounds(value: Any) -> st.SearchStrategy[Any]:
    """A value of the same JSON type as ``value``, often at or just past a schema bound."""
    if isinstance(value, bool):
        return st.booleans()
    if isinstance(value, int):
        return st.sampled_from(_EDGE_INTS) | st.integers(0, 2**64) | st.integers(-1000, 10**6).map(lambda d: value + d)
    if isinstance(value, float):
        return st.sampled_from(_EDGE_FLOATS) | st.floats(0, 1e14) | st.floats(allow_nan=True, allow_infinity=True)
    if isinstance(value, str):
        return st.text(max_size=250) | st.sampled_from(["", "x" * 200, "x" * 201, "a\x00b", "last-will"])
    return JSON_VALUES


@st.composite
def mutated(draw: st.DrawFn, channel: Channel, device_id: str) -> bytes:
    """A valid payload with one or two fields (top level or in the first record) set to hostile
    values: of the same type and near a bound, or anything at all. Serialised with Python's json
    (which writes NaN/Infinity literals)."""
    data = valid_payload(channel, device_id, activity=draw(st.booleans()))
    lists = [k for k in ("records", "sessions", "runs", "tool_calls") if data.get(k)]
    target = data[draw(st.sampled_from(lists))][0] if lists and draw(st.booleans()) else data
    keys = sorted(k for k in target if k not in ("v", "device_id"))
    for _ in range(draw(st.integers(1, 2))):
        key = draw(st.sampled_from(keys + ["extra", "device_id"]))
        target[key] = draw(JSON_VALUES if draw(st.integers(0, 3)) == 0 else near_bounds(target.get(key)))
    return json.dumps(data).encode()


def hostile_payloads(device_id: str) -> st.SearchStrategy[tuple[Channel, bytes]]:
    """``(channel, payload)`` pairs: random bytes, random JSON, poison, mutated valid payloads."""
    channels = st.sampled_from(DEVICE_PUBLISH_CHANNELS)
    raw = st.one_of(st.binary(max_size=500), JSON_VALUES.map(lambda v: json.dumps(v).encode()), POISON)
    edited = channels.flatmap(lambda ch: st.tuples(st.just(ch), mutated(ch, device_id)))
    return st.one_of(st.tuples(channels, raw), edited, edited)


# ---- bounds -----------------------------------------------------------------------------------

def model_violations(model: Any) -> list[str]:
    """What in a decoded model breaks the store's bounds (empty list: nothing)."""
    bad: list[str] = []

    def walk(v: Any, where: str) -> None:
        if isinstance(v, bool) or v is None:
            return
        if isinstance(v, int) and not -INT64 <= v < INT64:
            bad.append(f"{where}: integer {v} does not fit 64 bits")
        elif isinstance(v, float) and not math.isfinite(v):
            bad.append(f"{where}: {v} is not finite")
        elif isinstance(v, str) and "\x00" in v:
            bad.append(f"{where}: NUL in a string")
        elif isinstance(v, dict):
            for k, x in v.items():
                walk(x, f"{where}.{k}")
        elif isinstance(v, list | tuple):
            for n, x in enumerate(v):
                walk(x, f"{where}[{n}]")

    walk(model.model_dump(), type(model).__name__)
    if isinstance(model, schemas.UsageBatch):
        for r in [*model.records, *model.runs]:
            parts = r.input_tokens + r.output_tokens + r.cache_read_tokens + r.cache_write_tokens
            if r.total_tokens != parts:
                bad.append(f"usage/run {r.id}: total {r.total_tokens} != parts {parts}")
    return bad


def stored_violations(db_path: Path, device_id: str) -> list[str]:
    """Rows of ``device_id`` in the SQLite file that break the schema's bounds (raw values, as stored)."""
    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    bad: list[str] = []
    now = now_ms()
    try:
        for row in con.execute("SELECT ts, cpu_pct, mem_pct, disk_pct, swap_pct, mem_used_bytes, mem_total_bytes, "
                               "disk_used_bytes, disk_total_bytes, net_rx_bps, net_tx_bps, uptime_s, load1, load5, "
                               "load15 FROM sample WHERE device = ?", (device_id,)):
            ts, *pcts = row[:5]
            if not now - schemas.SAMPLE_WINDOW_MS[0] - 60_000 <= ts <= now + schemas.SAMPLE_WINDOW_MS[1]:
                bad.append(f"sample ts {ts} outside the window")
            bad += [f"sample percent {p}" for p in pcts if not (isinstance(p, int | float) and 0 <= p <= 100)]
            bad += [f"sample bytes {b}" for b in row[5:9] if not (type(b) is int and 0 <= b <= schemas.MAX_BYTES)]
            bad += [f"sample rate {r}" for r in row[9:11] if not 0 <= r <= schemas.MAX_BPS]
            bad += [f"sample uptime {row[11]}" for _ in [0] if not 0 <= row[11] <= schemas.MAX_UPTIME_S]
            bad += [f"sample load {x}" for x in row[12:] if x is not None and not 0 <= x <= schemas.MAX_LOAD]
        for row in con.execute("SELECT id, ts, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, "
                               "total_tokens, cost_usd, agent_id, model FROM usage_record WHERE device = ?",
                               (device_id,)):
            rid, ts, *tokens = row[:7]
            if not schemas.RECORD_MIN_TS_MS <= ts <= now + schemas.MAX_AHEAD_MS:
                bad.append(f"usage {rid} ts {ts}")
            if not all(type(t) is int and 0 <= t <= schemas.MAX_TOKENS for t in tokens[:4]):
                bad.append(f"usage {rid} tokens {tokens}")
            if tokens[4] != sum(tokens[:4]):
                bad.append(f"usage {rid} total {tokens[4]} != parts")
            if row[7] is not None and not 0 <= row[7] <= schemas.MAX_COST_USD:
                bad.append(f"usage {rid} cost {row[7]}")
            bad += [f"usage {rid} text {t!r:.40}" for t in row[8:] if "\x00" in t or len(t) > 200]
        for rid, ts, message in con.execute("SELECT id, ts, message FROM log_record WHERE device = ?", (device_id,)):
            if not schemas.RECORD_MIN_TS_MS <= ts <= now + schemas.MAX_AHEAD_MS or len(message) > 4000 \
                    or "\x00" in message:
                bad.append(f"log {rid} out of bounds")
        bad += _activity_violations(con, device_id, now)
        for (meta_json,) in con.execute("SELECT meta_json FROM device WHERE id = ? AND meta_json IS NOT NULL",
                                        (device_id,)):
            try:
                schemas.Meta.model_validate_json(meta_json)
            except ValueError as exc:
                bad.append(f"meta does not validate: {exc}")
    finally:
        con.close()
    return bad


def _activity_violations(con: sqlite3.Connection, device_id: str, now: int) -> list[str]:
    """Stored runs, tool calls and sessions of ``device_id`` that break the schema's bounds."""
    bad = []
    ahead = now + schemas.MAX_AHEAD_MS
    for rid, t0, t1, *nums in con.execute(
            "SELECT id, started_ms, ended_ms, messages, retries, input_tokens, total_tokens, cost_usd FROM agent_run "
            "WHERE device = ?", (device_id,)):
        if not (schemas.RECORD_MIN_TS_MS <= t0 <= ahead and schemas.RECORD_MIN_TS_MS <= t1 <= ahead):
            bad.append(f"run {rid} times {t0} {t1}")
        if not all(x is None or (0 <= x < INT64 and math.isfinite(x)) for x in nums):
            bad.append(f"run {rid} numbers {nums}")
    for cid, ts, dur, tool in con.execute("SELECT id, ts, duration_s, tool FROM tool_call WHERE device = ?",
                                          (device_id,)):
        if not schemas.RECORD_MIN_TS_MS <= ts <= ahead or (dur is not None and not 0 <= dur <= schemas.MAX_DURATION_S) \
                or "\x00" in tool or len(tool) > 200:
            bad.append(f"tool call {cid} out of bounds")
    for sid, turns, tokens, cost in con.execute("SELECT session_id, turns, total_tokens, cost_usd FROM agent_session "
                                                "WHERE device = ?", (device_id,)):
        if turns < 0 or not 0 <= tokens < INT64 or not math.isfinite(cost) or "\x00" in sid:
            bad.append(f"session {sid!r:.40} sums out of bounds")
    return bad
