"""Log lines land on the instance that wrote them; session keys come from the session index.

Two real state dirs (2026.9.6 and 2026.7.35 fixtures) "write" the same shared log file: the real lines of
both eras, interleaved. Each instance's collector must keep only its own lines. What the test expects is
computed independently of the collector: a line is an instance's when it contains one of that instance's
session or run ids taken straight from its transcripts, or shares a ``traceId`` with such a line.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path

from fixtures_openclaw import CAPTURED_S, LATEST, LEGACY, LOG_NAME, backdate, make_latest_state, make_legacy_state

from agent_tray.collectors.log_owner import OURS, Line, Ownership, cli_blocks, line_marks, state_dir_born_ms
from agent_tray.collectors.logs import LogCollector, parse_log_line
from agent_tray.collectors.openclaw import locate_openclaw
from agent_tray.collectors.sessions import SessionIndexCollector
from agent_tray.collectors.usage import UsageCollector

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _ids_from_transcripts(state: Path) -> set[str]:
    """Session ids and run ids an instance's transcripts name (read directly, not through the collectors)."""
    ids: set[str] = set()
    sessions = state / "agents" / "main" / "sessions"
    for f in sessions.glob("*.jsonl"):
        ids.add(f.name.split(".")[0])
        for line in f.read_text().splitlines():
            obj = json.loads(line)
            if obj.get("type") == "custom" and isinstance(obj.get("data"), dict) and obj["data"].get("runId"):
                ids.add(obj["data"]["runId"])
    db = state / "agents" / "main" / "agent" / "openclaw-agent.sqlite"
    if db.exists():
        import sqlite3
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        for sid, event in conn.execute("SELECT session_id, event_json FROM transcript_events"):
            ids.add(sid)
            obj = json.loads(event)
            if obj.get("type") == "custom" and isinstance(obj.get("data"), dict) and obj["data"].get("runId"):
                ids.add(obj["data"]["runId"])
        conn.close()
    return ids


def _expected_lines(lines: list[str], ids: set[str]) -> set[str]:
    """Warn/error lines that name one of ``ids``, or share a traceId with a line (any level) that does."""
    traces = set()
    for raw in lines:
        obj = json.loads(raw)
        if set(UUID.findall(raw.split('"_meta"')[0] + raw.split('"time"')[-1])) & ids and obj.get("traceId"):
            traces.add(obj["traceId"])
    out = set()
    for raw in lines:
        obj = json.loads(raw)
        if obj["_meta"]["logLevelId"] < 4:
            continue
        body = raw.split('"_meta"')[0] + raw.split('"time"')[-1]
        if set(UUID.findall(body)) & ids or obj.get("traceId") in traces:
            out.add(raw)
    return out


def _collector(state: Path, log_dir: Path, runs: dict) -> LogCollector:
    paths = locate_openclaw({"OPENCLAW_HOME": str(state.parent), "OPENCLAW_STATE_DIR": str(state), "PATH": ""})
    own = Ownership(paths, known_runs=runs)
    return LogCollector([log_dir], "dev", ownership=own)  # a dir: the machine-wide default, shared


def test_two_instances_in_one_shared_file(tmp_path: Path) -> None:
    a = make_latest_state(tmp_path / "a")
    b = make_legacy_state(tmp_path / "b")
    # the fixtures' paths were rewritten to /opt/oc/home…; put them back where these state dirs are
    a_lines = (LATEST / "logs" / LOG_NAME).read_text().replace("/opt/oc/home/", f"{a.parent}/").splitlines()
    b_lines = (LEGACY / "logs" / LOG_NAME).read_text().replace("/opt/oc/home-legacy/", f"{b.parent}/").splitlines()
    shared = tmp_path / "tmp-openclaw"
    shared.mkdir()
    mixed = [x for pair in zip(a_lines, b_lines, strict=False) for x in pair] + a_lines[len(b_lines):]
    (shared / LOG_NAME).write_text("\n".join(mixed) + "\n")
    results = {}
    for name, state, own_lines in (("a", a, a_lines), ("b", b, b_lines)):
        usage = UsageCollector(state, "dev")
        usage.collect({})  # the agent reads transcripts first: it learns its run ids
        res = _collector(state, shared, usage.recent_runs).collect({})
        by_message = {r.message for r in res.logs}
        results[name] = res
        expected = _expected_lines(own_lines, _ids_from_transcripts(state))
        others = set(b_lines if name == "a" else a_lines) - set(own_lines)
        kept_raw = [raw for raw in mixed if _message(raw) in by_message]
        assert not any(raw in others for raw in kept_raw if _message(raw) not in {_message(x) for x in own_lines})
        assert {_message(x) for x in expected} <= by_message, name
        assert len(res.logs) >= len(expected)
    a_msgs, b_msgs = {r.message for r in results["a"].logs}, {r.message for r in results["b"].logs}
    assert any("lane=session:agent:main:research-b" in m for m in a_msgs)
    assert not any("research-" in m for m in b_msgs) and not any("legacy-" in m for m in a_msgs)
    # what a line is about: the FailoverError of session research-b carries its agent, session, key and run
    lane = next(r for r in results["a"].logs if "lane=session:agent:main:research-b" in r.message)
    assert (lane.agent_id, lane.session_id, lane.session_key, lane.run_id) == (
        "main", "dadc4dc2-83b2-4c80-b372-c030b36fd374", "agent:main:research-b", "4e97e1e0-2abd-4ab4-b68f-3b39000fc28b")
    # the same-trace line without ids of its own ("lane=main") carries them too
    main_lane = next(r for r in results["a"].logs if "lane=main" in r.message and "HTTP 500" in r.message)
    assert main_lane.session_id == "dadc4dc2-83b2-4c80-b372-c030b36fd374"
    # the CLI's failure block follows the gateway reply that failed with the same reason
    assert any(m.startswith("[openclaw] Reason: ⚠️ API rate limit reached") for m in a_msgs)


def _cli_block_owner(raws: list[tuple[str, int]], owners: dict[int, str | None]) -> str | None:
    """Attribute ``raws`` (raw line, time in ms) in file order; the owner given to the CLI's Reason line."""
    lines = []
    for i, (raw, ts) in enumerate(raws):
        parsed = dataclasses.replace(parse_log_line(raw), ts_ms=ts)
        lines.append(Line(i, raw.encode(), parsed, line_marks(json.loads(raw), raw), owner=owners.get(i)))
    cli_blocks(lines)
    return next(ln.owner for ln in lines if ln.parsed.message.startswith("[openclaw] Reason: "))


def test_a_cli_failure_block_follows_the_reply_nearest_in_time_not_an_earlier_one_of_ours() -> None:
    """Two instances fail with the same reason seconds apart; the CLI block that answers the second (another
    instance's reply, not decided from this one's view) is not given to the first, even when that gateway's
    buffered reply reaches the file after the block (as a real gateway's did)."""
    raw = (LATEST / "logs" / LOG_NAME).read_text().splitlines()
    reply = next(i for i, r in enumerate(raw) if "errorMessage=⚠️ API rate limit reached" in r)
    block = raw[reply + 1: reply + 6]
    assert block[1].count("[openclaw] Reason: ⚠️ API rate limit reached")
    other = raw[reply].replace("ccb04595-f027-4317-b8ed-7f923c8332c0", "0b0b0b0b-0000-4000-8000-000000000000")
    t = 1_700_000_000_000
    ours, theirs = (raw[reply], t), (other, t + 6_600)
    cli = [(line, t + 6_650 + k) for k, line in enumerate(block)]
    assert _cli_block_owner([ours, *cli], {0: OURS}) == OURS  # ours is the nearest reply: the block is ours
    assert _cli_block_owner([ours, theirs, *cli], {0: OURS}) is None  # the nearest is not decided
    assert _cli_block_owner([ours, *cli, theirs], {0: OURS}) is None  # ... also when written after the block
    assert _cli_block_owner([(raw[reply], t - 20_000), *cli], {0: OURS}) is None  # too long before


def _message(raw: str) -> str:
    from agent_tray.collectors.logs import parse_log_line

    parsed = parse_log_line(raw)
    return parsed.message if parsed else ""


def test_lines_from_before_the_state_dir_existed_are_not_this_instances(tmp_path: Path) -> None:
    """Even in the instance's own logging.file: an older line was written by someone else."""
    state = make_latest_state(tmp_path)
    log_file = tmp_path / "own" / "gateway.log"
    log_file.parent.mkdir()
    log_file.write_text((LATEST / "logs" / LOG_NAME).read_text())
    born = CAPTURED_S + 10 * 60  # the state dir appeared at 04:10:00, mid-capture (the log starts 04:10:12)
    backdate(state, born)
    assert state_dir_born_ms(state) == int(born * 1000)
    paths = locate_openclaw({"OPENCLAW_STATE_DIR": str(state), "PATH": ""})
    collector = LogCollector([log_file], "dev", ownership=Ownership(paths))
    res = collector.collect({})
    assert res.logs and all(r.ts >= born * 1000 for r in res.logs)
    backdate(state, born + 5 * 60)  # the state dir is five minutes younger
    later = LogCollector([log_file], "dev", ownership=Ownership(paths)).collect({})
    assert 0 < len(later.logs) < len(res.logs)
    assert later.logs and all(r.ts >= (born + 300) * 1000 for r in later.logs)


def test_a_line_naming_another_state_dir_is_not_ours(tmp_path: Path) -> None:
    state = make_latest_state(tmp_path)
    paths = locate_openclaw({"OPENCLAW_STATE_DIR": str(state), "PATH": ""})
    own = Ownership(paths)
    mine = line_marks({}, f'{{"1":{{"storePath":"{state}/agents/main/agent/openclaw-agent.sqlite"}}}}')
    other = line_marks({}, '{"1":{"storePath":"/home/other/.openclaw/agents/main/agent/openclaw-agent.sqlite"}}')
    tilde = line_marks({}, '{"0":"Sessions OK: ~/.openclaw-elsewhere/agents/main/sessions"}')
    assert [own.decide(m) for m in (mine, other, tilde)] == ["ours", "foreign", "foreign"]
    own.pids[4242] = 1
    assert own.decide(line_marks({}, '{"1":{"pid":4242}}')) == "ours"


def test_session_keys_from_the_index_both_eras(tmp_path: Path) -> None:
    for state, keys in ((make_latest_state(tmp_path / "a"), {"agent:main:research-a", "agent:main:research-b",
                                                             "agent:main:research-c"}),
                        (make_legacy_state(tmp_path / "b"), {"agent:main:legacy-a", "agent:main:legacy-b",
                                                             "agent:main:legacy-c"})):
        collector = SessionIndexCollector(locate_openclaw({"OPENCLAW_STATE_DIR": str(state), "PATH": ""}))
        res = collector.collect({})
        assert {s.session_key for s in res.sessions} == keys
        assert all(UUID.fullmatch(s.session_id) and s.updated_ms and s.status for s in res.sessions)
        assert collector.collect(json.loads(json.dumps(res.positions))).sessions == []  # nothing changed
    latest = {s.session_key: s for s in SessionIndexCollector(locate_openclaw(
        {"OPENCLAW_STATE_DIR": str(tmp_path / "a" / ".openclaw"), "PATH": ""})).collect({}).sessions}
    assert (latest["agent:main:research-b"].session_id, latest["agent:main:research-b"].label,
            latest["agent:main:research-b"].status) == ("dadc4dc2-83b2-4c80-b372-c030b36fd374", "research-b", "failed")
    # a changed sessions.json is read again: only what changed is sent
    index = tmp_path / "b" / ".openclaw" / "agents" / "main" / "sessions" / "sessions.json"
    data = json.loads(index.read_text())
    data["agent:main:legacy-a"]["updatedAt"] += 60_000
    data["agent:main:legacy-a"]["lastChannel"] = "telegram"
    index.write_text(json.dumps(data))
    os.utime(index, ns=(1, 1))
    collector = SessionIndexCollector(locate_openclaw({"OPENCLAW_STATE_DIR": str(tmp_path / "b" / ".openclaw"),
                                                       "PATH": ""}))
    first = collector.collect({})
    assert [(s.session_key, s.channel) for s in first.sessions][-1] == ("agent:main:legacy-a", "telegram")
