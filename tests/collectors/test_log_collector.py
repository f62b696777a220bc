"""LogCollector over the real gateway logs, and through rotation, date change and truncation."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from fixtures_openclaw import LOG_NAME, make_log_dir

from agent_tray.collectors.logs import LogCollector, fingerprint, parse_log_line
from agent_tray.collectors.result import CollectResult
from shared.payloads import to_dict
from shared.schemas import LogBatch

DEVICE = "dev-test-1"
LEVEL_IDS = {"INFO": 3, "WARN": 4, "ERROR": 5}


def log_line(level: str, message: str, *, time: str = "2026-11-21T09:00:00.000+00:00",
             subsystem: str | None = "agent/embedded") -> str:
    """A line shaped like OpenClaw's tslog file lines."""
    name = json.dumps({"subsystem": subsystem}, separators=(",", ":")) if subsystem else "openclaw"
    obj: dict = {"0": name, "1": message} if subsystem else {"0": message}
    obj["_meta"] = {"runtime": "node", "date": time.replace("+00:00", "Z"), "logLevelId": LEVEL_IDS[level],
                    "logLevelName": level, "name": name}
    obj.update({"time": time, "hostname": "vm", "message": message})
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def append(path: Path, *lines: str, end: str = "\n") -> None:
    with path.open("a", encoding="utf-8") as f:
        f.write("".join(ln + "\n" for ln in lines[:-1]) + lines[-1] + end)


def roundtrip(positions: dict) -> dict:
    return json.loads(json.dumps(positions))


def collect(log_dir: Path | list[Path], positions: dict, **kw) -> CollectResult:
    dirs = log_dir if isinstance(log_dir, list) else [log_dir]
    return LogCollector(dirs, DEVICE, **kw).collect(roundtrip(positions))


@pytest.mark.parametrize(("era", "warn", "error", "info"), [("latest", 88, 32, 146), ("legacy", 18, 9, 90)])
def test_fixture_logs_give_their_warnings_and_errors(era: str, warn: int, error: int, info: int,
                                                     tmp_path: Path) -> None:
    log_dir = make_log_dir(tmp_path, era)
    text = (log_dir / LOG_NAME).read_text(encoding="utf-8")
    counted = {lvl: len(re.findall(rf'"logLevelName":"{lvl}"', text)) for lvl in ("INFO", "WARN", "ERROR")}
    assert counted == {"INFO": info, "WARN": warn, "ERROR": error}  # counted straight from the file
    collector = LogCollector([log_dir, tmp_path / "absent"], DEVICE)
    result = collector.collect({})
    levels = [rec.level for rec in result.logs]
    assert (levels.count("warn"), levels.count("error"), len(levels)) == (warn, error, warn + error)
    assert collector.stats == {"lines": info + warn + error, "non_json": 0, "bad_time": 0, "kept": warn + error,
                               "foreign": 0, "unattributed": 0, "before_state_dir": 0}
    assert [rec.ts for rec in result.logs] == sorted(rec.ts for rec in result.logs)
    LogBatch.model_validate({"device_id": DEVICE, "ts": 1_795_234_000_000, "records": to_dict(result.logs[:500])})
    assert len({rec.id for rec in result.logs}) == len(result.logs)
    assert len(collect(log_dir, {}, min_level="error").logs) == error
    assert len(collect(log_dir, {}, min_level="info").logs) == info + warn + error
    assert collect(log_dir, result.positions).logs == []  # second call / restart: nothing new


def test_fixture_records_follow_openclaws_parse_rules(tmp_path: Path) -> None:
    logs = LogCollector([make_log_dir(tmp_path)], DEVICE).collect({}).logs
    retry = [r for r in logs if "transient same-model retry" in r.message]
    assert len(retry) == 22 and {r.subsystem for r in retry} == {"agent/embedded"}
    assert len({r.fingerprint for r in retry if "reason=rate_limit" in r.message}) == 1
    lane = next(r for r in logs if r.message.startswith("lane task error: lane=session:agent:main:research-b"))
    assert (lane.level, lane.subsystem, lane.ts) == ("error", "diagnostic", 1_795_234_353_874)
    cli = next(r for r in logs if r.message == "[openclaw] The CLI command failed.")
    assert cli.subsystem == ""  # _meta.name "openclaw" is not a subsystem logger
    agent_end = next(r for r in logs if r.message.startswith("embedded run agent end"))
    assert '"error":"⚠️ stubllm/stub-model request failed (provider internal error, HTTP 500).' in agent_end.message


def test_ids_survive_rotation_rename_and_fresh_reads(tmp_path: Path) -> None:
    log_dir = make_log_dir(tmp_path)
    current = log_dir / LOG_NAME
    first = collect(log_dir, {})
    append(current, log_line("WARN", "unread before rotation 1/3"))
    current.rename(log_dir / "openclaw-2026-11-21.1.log")  # size rotation
    append(current, log_line("ERROR", "first line of the new file"), log_line("INFO", "info"))
    r = collect(log_dir, first.positions)
    assert [rec.message for rec in r.logs] == ["unread before rotation 1/3", "first line of the new file"]
    assert collect(log_dir, r.positions).logs == []
    fresh = collect(log_dir, {})  # positions lost: the same ids come back, the server keeps one
    assert {rec.id for rec in first.logs} | {rec.id for rec in r.logs} == {rec.id for rec in fresh.logs}


def test_date_change_starts_a_new_file(tmp_path: Path) -> None:
    log_dir = make_log_dir(tmp_path)
    first = collect(log_dir, {})
    append(log_dir / "openclaw-2026-11-22.log", log_line("WARN", "a new day", time="2026-11-22T00:00:01.000+00:00"))
    r = collect(log_dir, first.positions)
    assert [(rec.message, rec.ts) for rec in r.logs] == [("a new day", 1_795_305_601_000)]
    (log_dir / LOG_NAME).unlink()  # pruned after 24 h: its position goes away in time, nothing breaks
    assert collect(log_dir, r.positions).logs == []


def test_truncated_or_replaced_file_is_read_from_the_start(tmp_path: Path) -> None:
    log_dir = make_log_dir(tmp_path)
    current = log_dir / LOG_NAME
    first = collect(log_dir, {})
    current.write_text(log_line("ERROR", "after truncation") + "\n")
    r = collect(log_dir, first.positions)
    assert [rec.message for rec in r.logs] == ["after truncation"]
    # copy-truncate rotation: the copy keeps the identity (only its unread tail is new)
    append(current, log_line("WARN", "tail before copy"))
    shutil.copyfile(current, log_dir / "openclaw-2026-11-21.1.log")
    current.write_text(log_line("WARN", "fresh after copy-truncate", time="2026-11-21T09:00:05.000+00:00") + "\n")
    r2 = collect(log_dir, r.positions)
    assert sorted(rec.message for rec in r2.logs) == ["fresh after copy-truncate", "tail before copy"]


def test_partial_last_line_waits_for_its_newline(tmp_path: Path) -> None:
    log_dir = make_log_dir(tmp_path)
    current = log_dir / LOG_NAME
    positions = collect(log_dir, {}).positions
    line = log_line("ERROR", "written in two steps")
    append(current, line[:50], end="")
    r = collect(log_dir, positions)
    assert (r.logs, r.positions) == ([], positions)
    append(current, line[50:])
    assert [rec.message for rec in collect(log_dir, positions).logs] == ["written in two steps"]


def test_a_file_whose_first_line_is_incomplete_waits(tmp_path: Path) -> None:
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    current = log_dir / "openclaw-2026-11-23.log"
    line = log_line("WARN", "first ever")
    current.write_text(line[:30])
    r = collect(log_dir, {})
    assert r.logs == [] and r.positions == {"v": 1, "files": {}}
    append(current, line[30:])
    assert [rec.message for rec in collect(log_dir, r.positions).logs] == ["first ever"]


def test_budget_spreads_reading_over_calls_without_loss(tmp_path: Path) -> None:
    log_dir = make_log_dir(tmp_path)
    full = collect(log_dir, {})
    positions: dict = {}
    got, calls = [], 0
    while True:
        calls += 1
        r = collect(log_dir, positions, max_bytes=20_000)
        got += r.logs
        if r.positions == positions:
            break
        positions = r.positions
    assert calls > 10
    assert [rec.id for rec in got] == [rec.id for rec in full.logs]


def test_non_json_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    log_dir = make_log_dir(tmp_path)
    current = log_dir / LOG_NAME
    collector = LogCollector([log_dir], DEVICE)
    positions = collector.collect({}).positions
    append(current, "plain text from something else", "", "{not json", log_line("WARN", "still read"))
    r = collector.collect(positions)
    assert [rec.message for rec in r.logs] == ["still read"]
    assert collector.stats["non_json"] == 2


def test_logging_file_setting_is_followed_with_its_rotations(tmp_path: Path) -> None:
    custom = tmp_path / "var" / "gateway.log"
    custom.parent.mkdir()
    append(custom, log_line("WARN", "in the configured file"))
    append(custom.with_name("gateway.1.log"), log_line("ERROR", "in its rotation"))
    append(custom.with_name("other.log"), log_line("ERROR", "not ours"))
    r = collect([custom], {})
    assert sorted(rec.message for rec in r.logs) == ["in its rotation", "in the configured file"]
    append(custom.with_name("openclaw.1"), log_line("ERROR", "a file next to an absent log dir"))
    assert collect([custom.with_name("openclaw")], {}).logs == []


def test_parse_rules_for_older_lines() -> None:
    no_message = {"0": '{"subsystem":"gateway"}', "1": "listening on", "2": {"port": 18789},
                  "_meta": {"logLevelId": 5, "name": '{"subsystem":"gateway"}', "date": "2026-11-21T04:10:24.099Z"}}
    parsed = parse_log_line(json.dumps(no_message))
    assert parsed is not None
    assert (parsed.level, parsed.subsystem, parsed.message, parsed.ts_ms) == (
        "error", "gateway", 'listening on {"port":18789}', 1_795_234_224_099)
    assert parse_log_line("not json") is None and parse_log_line("[1, 2]") is None
    assert parse_log_line(json.dumps({"0": "no level", "_meta": {}})) is None


def test_fingerprint_ignores_variable_parts() -> None:
    same = [
        ("transient same-model retry 3/8 for stubllm/stub-model reason=server_error: delayMs=754",
         "transient same-model retry 4/8 for stubllm/stub-model reason=server_error: delayMs=1357"),
        ("Preserved orphaned user message runId=4e97e1e0-2abd-4ab4-b68f-3b39000fc28b trigger=user",
         "Preserved orphaned user message runId=ccb04595-f027-4317-b8ed-7f923c8332c0 trigger=user"),
        ('lane task error: lane=main durationMs=84644 error="HTTP 500"',
         'lane task error: lane=main durationMs=133015 error="API rate limit reached."'),
        ("cannot open /opt/oc/home/.openclaw/agents/main/agent/x.sqlite after 2.5s",
         "cannot open /home/bob/.openclaw/agents/work/agent/y.sqlite after 300ms"),
        ("rawErrorHash sha256:3934ab174fcc id chatcmpl-8c3c3a63fbaa48deb88f0096",
         "rawErrorHash sha256:15504cf4770b id chatcmpl-e55daa7904254b57bd939af8"),
    ]
    for a, b in same:
        assert fingerprint(a) == fingerprint(b), (a, b)
    assert fingerprint("model fallback decision") != fingerprint("embedded run failover decision")
    assert len(fingerprint("x" * 10_000)) == 32
