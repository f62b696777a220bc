"""Turns (runs), failed turns and tool calls from OpenClaw transcripts, both storage eras.

The fixture numbers are cross-checked against what the real gateway itself logged while writing them:
``transient same-model retry 7/8 … stopping same-model retries``, ``retry 9/9``, ``after 6/8 retries``.
"""

from __future__ import annotations

import json
from pathlib import Path

from fixtures_openclaw import legacy_session_file, make_latest_state, make_legacy_state

from agent_tray.collectors.runs import RunTracker, plugin_tool_call, run_status, tool_call_id
from agent_tray.collectors.usage import UsageCollector


def _final_runs(collector: UsageCollector, positions: dict | None = None, max_calls: int = 500):
    """Collect until the positions stop changing; the newest record per run id."""
    pos, runs, calls = positions or {}, {}, {}
    for _ in range(max_calls):
        res = collector.collect(pos)
        runs.update({r.id: r for r in res.runs})
        calls.update({c.id: c for c in res.tool_calls})
        if res.positions == pos:
            break
        pos = json.loads(json.dumps(res.positions))  # what the outbox stores and gives back
    return runs, calls, pos


def _summary(runs: dict) -> dict[str, list[tuple]]:
    out: dict[str, list[tuple]] = {}
    for r in sorted(runs.values(), key=lambda r: r.started_ms):
        out.setdefault(r.session_id[:8], []).append((r.status, r.messages, r.error_messages, r.retries))
    return out


def test_latest_era_one_turn_per_run_id_with_its_retries(tmp_path: Path) -> None:
    runs, _, _ = _final_runs(UsageCollector(make_latest_state(tmp_path), "dev"))
    assert _summary(runs) == {
        "948d1b46": [("ok", 1, 0, 0), ("ok", 1, 0, 0), ("ok", 1, 0, 0), ("failed", 1, 1, 9)],  # 429: retry 9/9
        "dadc4dc2": [("ok", 1, 0, 0), ("ok", 1, 0, 0), ("ok", 1, 0, 0), ("failed", 1, 1, 7)],  # 500: 7/8, stopped
        "e3400a72": [("failed", 1, 1, 6), ("ok", 1, 0, 0)],  # endpoint down: after 6/8 retries
    }
    failed = [r for r in runs.values() if r.status == "failed"]
    assert {r.run_id[:8] for r in failed} == {"ccb04595", "4e97e1e0", "d8f6e61d"}
    assert {r.error for r in failed} == {"429 Rate limit reached for stub-model (simulated)",
                                         "500 stub upstream exploded (simulated internal error)", "Connection error."}
    # tokens of the turns are the tokens of their assistant messages (design/openclaw.md's table)
    by_session = {}
    for r in runs.values():
        by_session[r.session_id[:8]] = by_session.get(r.session_id[:8], 0) + r.total_tokens
    assert by_session == {"948d1b46": 37345, "dadc4dc2": 37371, "e3400a72": 12408}


def test_legacy_era_counts_a_retried_turn_once_and_its_error_messages_apart(tmp_path: Path) -> None:
    """2026.7.35 writes the user message again for every attempt: 4 error messages, 1 failed turn."""
    runs, _, _ = _final_runs(UsageCollector(make_legacy_state(tmp_path), "dev"))
    assert _summary(runs) == {
        "f5d14729": [("ok", 1, 0, 0), ("ok", 1, 0, 0), ("failed", 4, 4, 3)],
        "456405ea": [("ok", 1, 0, 0), ("ok", 1, 0, 0), ("failed", 1, 1, 0)],
        "7b71f0c0": [("failed", 1, 1, 0), ("ok", 1, 0, 0)],
    }
    failed = [r for r in runs.values() if r.status == "failed"]
    assert len(failed) == 3 and sum(r.error_messages for r in failed) == 6  # the issue: "6 for its 3 failed turns"
    retried = next(r for r in failed if r.error_messages == 4)
    assert retried.ended_ms - retried.started_ms == 61_273  # first user message 04:19:29.175 -> last error 04:20:30.448


def test_reading_in_small_pieces_gives_the_same_turns(tmp_path: Path) -> None:
    whole, _, _ = _final_runs(UsageCollector(make_legacy_state(tmp_path / "a"), "dev"))
    piecewise = UsageCollector(make_legacy_state(tmp_path / "b"), "dev", max_bytes=300)  # about a line per call
    pieces, _, _ = _final_runs(piecewise)
    assert {k: (r.status, r.messages, r.error_messages, r.retries, r.total_tokens, r.started_ms, r.ended_ms)
            for k, r in pieces.items()} == {
        k: (r.status, r.messages, r.error_messages, r.retries, r.total_tokens, r.started_ms, r.ended_ms)
        for k, r in whole.items()}
    sqlite_whole, _, _ = _final_runs(UsageCollector(make_latest_state(tmp_path / "c"), "dev"))
    sqlite_pieces, _, _ = _final_runs(UsageCollector(make_latest_state(tmp_path / "d"), "dev", max_rows=1))
    assert {k: (r.retries, r.rev) for k, r in sqlite_pieces.items()} == {
        k: (r.retries, r.rev) for k, r in sqlite_whole.items()}


def test_a_re_read_session_counts_nothing_twice(tmp_path: Path) -> None:
    state = make_legacy_state(tmp_path)
    collector = UsageCollector(state, "dev")
    first, _, pos = _final_runs(collector)
    # the file is read again from the start (positions of the file lost), with the fold state kept
    pos["agents"]["main"]["jsonl"] = {}
    res = collector.collect(pos)
    assert res.usage and not res.runs  # usage records repeat (the server de-duplicates them); turns do not change
    # a new turn appended to the file is folded into the existing state
    f = legacy_session_file(state, "456405ea")
    base = first[next(k for k, r in first.items() if r.session_id.startswith("456405ea") and r.status == "failed")]
    lines = [{"type": "message", "id": "u-new", "parentId": "x", "timestamp": "2026-11-21T05:00:00.000Z",
              "message": {"role": "user", "content": [{"type": "text", "text": "again"}]}},
             {"type": "message", "id": "a-new", "parentId": "u-new", "timestamp": "2026-11-21T05:00:01.500Z",
              "message": {"role": "assistant", "content": [], "provider": "stubllm", "model": "stub-model",
                          "usage": {"input": 10, "output": 5, "totalTokens": 15}, "stopReason": "stop"}},
             {"type": "custom", "customType": "openclaw:bootstrap-context:full", "id": "c-new", "parentId": "a-new",
              "timestamp": "2026-11-21T05:00:01.510Z", "data": {"runId": "11111111-2222-3333-4444-555555555555"}}]
    with f.open("a") as fh:
        fh.writelines(json.dumps(x) + "\n" for x in lines)
    more, _, _ = _final_runs(collector, res.positions)
    new = [r for r in more.values() if r.id != base.id]
    assert [(r.status, r.total_tokens, r.ended_ms - r.started_ms) for r in new] == [("ok", 15, 1500)]


def _tool_session(tracker: RunTracker, sid: str = "s1") -> None:
    """A turn with two tool calls (one fails), then the final reply; pi-agent message shapes."""
    t = 1_795_234_000_000

    def iso(ms: int) -> str:
        from datetime import UTC, datetime
        return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"

    entries = [
        ("u1", t, {"role": "user", "content": "read two files"}),
        ("a1", t + 100, {"role": "assistant", "stopReason": "toolUse", "provider": "p", "model": "m",
                         "usage": {"input": 100, "output": 10, "cost": {"total": 0.25}},
                         "content": [{"type": "toolCall", "id": "call_ok", "name": "read", "arguments": {}},
                                     {"type": "toolCall", "id": "call_bad", "name": "exec", "arguments": {}}]}),
        ("r1", t + 1100, {"role": "toolResult", "toolCallId": "call_ok", "toolName": "read", "isError": False,
                          "content": [], "timestamp": t + 1100}),
        ("r2", t + 3100, {"role": "toolResult", "toolCallId": "call_bad", "toolName": "exec", "isError": True,
                          "content": [], "timestamp": t + 3100}),
    ]
    for key, ms, msg in entries:
        tracker.feed(sid, {"type": "message", "id": key, "timestamp": iso(ms), "message": msg}, key, None)
    tracker.feed(sid, {"type": "custom", "customType": "openclaw:bootstrap-context:full", "id": "c1",
                       "timestamp": iso(t + 3200), "data": {"runId": "run-1"}}, "c1", None)


def test_tool_calls_their_outcome_and_duration() -> None:
    tracker = RunTracker("dev", "main", {})
    _tool_session(tracker)
    runs, calls = tracker.finish(1_795_234_000_000 + 10_000)
    (run,) = runs
    assert (run.status, run.tool_calls, run.tool_errors, run.run_id, run.cost_usd) == ("running", 2, 1, "run-1", 0.25)
    assert sorted((c.tool, c.error, c.duration_s, c.run == run.id) for c in calls) == [
        ("exec", True, 3.0, True), ("read", False, 1.0, True)]
    # the final reply ends the turn
    tracker.feed("s1", {"type": "message", "id": "a2", "timestamp": "2026-11-21T04:06:44.000Z",
                        "message": {"role": "assistant", "stopReason": "stop", "content": [],
                                    "usage": {"input": 5, "output": 5, "cost": {"total": 0.5}}}}, "a2", None)
    (run,) = tracker.finish(1_795_234_100_000)[0]
    assert (run.status, run.messages, run.total_tokens, run.cost_usd) == ("ok", 2, 120, 0.75)
    # the plugin's after_tool_call names the same call: same record id
    plugin = plugin_tool_call("dev", agent_id="main", session_id="s1", call_id="call_bad", tool="exec",
                              done_ms=1_795_234_003_100, error=True, duration_ms=2000)
    assert plugin is not None and plugin.id == tool_call_id("dev", "main", "s1", "call_bad")
    assert (plugin.source, plugin.ts, plugin.duration_s) == ("plugin", 1_795_234_001_100, 2.0)


def test_run_status_words() -> None:
    assert [run_status(s) for s in ("stop", "length", "error", "aborted", "toolUse", "")] == [
        "ok", "ok", "failed", "aborted", "running", "running"]
