"""Sessions, turns, failed turns and tool calls the fleet stores equal what the real gateway did, in both
storage eras (OpenClaw 2026.9.6: SQLite; 2026.7.35: JSONL), with a 429, a 500, a dead endpoint and a turn
that calls a tool twice (one call fails: the file does not exist).

Real OpenClaw gateway (npm) → its transcripts → a real ClawFleet agent (AgentService) → managed Mosquitto →
ingest → SQLite. What is expected is taken from OpenClaw, not from our collectors: each ``openclaw agent``
turn's outcome (its exit code) and the run ids that appeared in the transcripts while it ran; the error
messages and tool results counted straight from the transcript entries.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
import zstandard
from e2e_helpers import wait_for

from agent_tray.config import AgentConfig
from agent_tray.service import AgentService
from fleet_server.devices.registry import add_device
from fleet_server.server import FleetServer
from fleet_server.store.models import AgentRun, AgentSession, ToolCall

from .harness import PINNED_OPENCLAW, OpenClawGateway, RegistryUnreachable, ensure_openclaw
from .stub_llm import StubLLM

LEGACY_OPENCLAW = "2026.7.35"


def _entries(gw: OpenClawGateway) -> list[tuple[str, dict[str, Any]]]:
    """Every transcript entry of the main agent as ``(session id, entry)``, in order (SQLite store, or the
    JSONL session files of a 2026.7 state dir; trajectories and indexes are not transcripts)."""
    out: list[tuple[str, dict[str, Any]]] = []
    if gw.agent_db.exists():
        con = sqlite3.connect(f"file:{gw.agent_db}?mode=ro", uri=True)
        try:
            for sid, ev, packed in con.execute("SELECT session_id, event_json, event_zstd FROM transcript_events "
                                               "ORDER BY session_id, seq"):  # a large row is stored zstd-compressed
                out.append((sid, json.loads(ev if ev is not None else zstandard.ZstdDecompressor().decompressobj()
                                            .decompress(packed))))
        finally:
            con.close()
    sessions = gw.state_dir / "agents" / "main" / "sessions"
    for f in sorted(sessions.glob("*.jsonl")):
        if f.name.count(".") == 1:  # <session id>.jsonl
            out += [(f.stem, json.loads(line)) for line in f.read_text().splitlines() if line.strip()]
    return out


def _run_ids(gw: OpenClawGateway) -> set[str]:
    return {e["data"]["runId"] for _, e in _entries(gw) if e.get("type") == "custom"
            and isinstance(e.get("data"), dict) and e["data"].get("runId")}


def _turn(gw: OpenClawGateway, key: str, message: str, seen: set[str], turns: list[dict]) -> None:
    """One ``openclaw agent`` turn; records its session key, outcome and the run ids it added."""
    proc = gw.cli("agent", "--session-key", f"agent:main:{key}", "--message", message, "--json", "--timeout", "120",
                  timeout=200)
    gw.mark_activity()
    new = _run_ids(gw) - seen
    seen |= new
    turns.append({"key": f"agent:main:{key}", "ok": proc.returncode == 0, "runs": new, "message": message})


def _scenario(gw: OpenClawGateway, stub: StubLLM) -> list[dict]:
    seen: set[str] = set()
    turns: list[dict] = []
    _turn(gw, "alpha", "hello from the sessions test", seen, turns)
    _turn(gw, "alpha", "please USE-TOOLS read:AGENTS.md,read:no-such-file.txt and report", seen, turns)
    _turn(gw, "beta", "a second session", seen, turns)
    stub.fail_next(None, status=500)
    _turn(gw, "beta", "this turn fails upstream (500)", seen, turns)
    stub.fail_next(None, status=429)
    _turn(gw, "gamma", "this turn is rate limited (429)", seen, turns)
    stub.clear_failures()
    stub.go_down()
    try:
        _turn(gw, "gamma", "the model endpoint is down", seen, turns)
    finally:
        stub.come_up()
    _turn(gw, "gamma", "the endpoint is back", seen, turns)
    return turns


@pytest.mark.timeout(900)
@pytest.mark.parametrize("version", [PINNED_OPENCLAW, LEGACY_OPENCLAW], ids=["sqlite-2026.9.6", "jsonl-2026.7.35"])
def test_sessions_turns_and_tool_calls_equal_what_openclaw_did(version: str, fleet: FleetServer, tmp_path: Path,
                                                              openclaw_say) -> None:
    try:
        install = ensure_openclaw(version=version, progress=openclaw_say)
    except RegistryUnreachable as exc:
        pytest.skip(f"npm registry unreachable: {exc.reason}")
    device = f"sessions-{version.replace('.', '-')}"
    with StubLLM() as stub, OpenClawGateway(install, stub.base_url, tmp_path / "oc", progress=openclaw_say) as gw:
        turns = _scenario(gw, stub)
        entries = _entries(gw)
        new = add_device(fleet.dynsec, device, fleet.broker_url)
        cfg = AgentConfig(device_id=device, broker_url=fleet.broker_url, api_key=new.api_key, interval_s=1,
                          data_dir=str(tmp_path / "agent"), bridge_port=0, openclaw_state_dir=str(gw.state_dir))
        service = AgentService(cfg)
        thread = threading.Thread(target=service.run, daemon=True)
        thread.start()
        try:
            expected_runs = {r for t in turns for r in t["runs"]}
            wait_for(lambda: {r.run_id for r in AgentRun.select().where(AgentRun.device == device)} == expected_runs
                     and AgentRun.select().where((AgentRun.device == device) & (AgentRun.status == "running")).count()
                     == 0, 90, what=f"the {len(expected_runs)} turns of the transcripts, all ended")
            wait_for(lambda: ToolCall.select().where(ToolCall.device == device).count() == 2, 30, what="2 tool calls")
            wait_for(lambda: AgentSession.select().where((AgentSession.device == device)
                                                         & (AgentSession.session_key != "")).count() == 3, 30,
                     what="the session keys from the index")
        finally:
            service.stop()
            thread.join(15)
    openclaw_say(f"{version}: " + "; ".join(f"{t['key'].split(':')[-1]} {'ok' if t['ok'] else 'FAILED'} "
                                            f"runs={len(t['runs'])}" for t in turns))
    # every turn is one run of its session; a failed turn is a failed run, counted once
    assert all(len(t["runs"]) == 1 for t in turns), turns
    runs = {r.run_id: r for r in AgentRun.select().where(AgentRun.device == device)}
    sessions = {s.session_key: s for s in AgentSession.select().where(AgentSession.device == device)}
    for t in turns:
        (rid,) = t["runs"]
        assert runs[rid].status == ("ok" if t["ok"] else "failed"), (t, runs[rid].status)
        assert sessions[t["key"]].session_id == runs[rid].session_id
    assert [t["ok"] for t in turns] == [True, True, True, False, False, False, True]
    for key in {t["key"] for t in turns}:
        mine = [t for t in turns if t["key"] == key]
        s = sessions[key]
        assert (s.turns, s.failed_turns) == (len(mine), sum(not t["ok"] for t in mine)), key
        # error messages (one per failed attempt in 2026.7, one per failed turn in 2026.9), from the transcript
        errors = sum(1 for sid, e in entries if sid == s.session_id and e.get("type") == "message"
                     and e["message"].get("role") == "assistant" and e["message"].get("stopReason") == "error")
        assert s.error_messages == errors, key
    # tool calls: the two the model asked for, with the outcomes of the tool results in the transcript
    results = {e["message"]["toolCallId"]: e["message"]["isError"] for _, e in entries
               if e.get("type") == "message" and e["message"].get("role") == "toolResult"}
    assert sorted(results.values()) == [False, True]
    tool_turn = runs[next(iter(turns[1]["runs"]))]
    calls = list(ToolCall.select().where(ToolCall.device == device))
    assert sorted((c.tool, c.error) for c in calls) == [("read", False), ("read", True)]
    assert all(c.run == tool_turn.id and c.duration_s is not None for c in calls)
    assert (tool_turn.tool_calls, tool_turn.tool_errors, tool_turn.status) == (2, 1, "ok")
