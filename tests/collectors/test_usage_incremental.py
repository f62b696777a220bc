"""UsageCollector positions: appends, partial lines, renames, truncation, budgets, SQLite changes."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from pathlib import Path

import zstandard
from fixtures_openclaw import legacy_session_file, make_latest_state, make_legacy_state

from agent_tray.collectors.result import CollectResult
from agent_tray.collectors.transcript_entry import usage_record_id
from agent_tray.collectors.usage import UsageCollector
from shared.payloads import to_dict

DEVICE = "dev-test-1"
DB = "agents/main/agent/openclaw-agent.sqlite"
RESET_TS = "2026-11-21T05-00-00.000Z"


def assistant_line(entry_id: str, *, parent: str = "p", ts_ms: int = 1_795_240_000_000, inp: int = 1000,
                   out: int = 10, provider: str = "stubllm", model: str = "stub-model", **msg: object) -> str:
    """A transcript line shaped like the ones OpenClaw writes (assistant message with usage)."""
    message = {"role": "assistant", "content": [{"type": "text", "text": "hi"}], "api": "openai-completions",
               "provider": provider, "model": model,
               "usage": {"input": inp, "output": out, "cacheRead": 0, "cacheWrite": 0, "totalTokens": inp + out,
                         "cost": {"input": 0.001, "output": 0.002, "cacheRead": 0, "cacheWrite": 0, "total": 0.003}},
               "stopReason": "stop", "timestamp": ts_ms, **msg}
    return json.dumps({"type": "message", "id": entry_id, "parentId": parent,
                       "timestamp": "2026-11-21T06:13:20.000Z", "message": message})


def roundtrip(positions: dict) -> dict:
    """What the caller persists and reads back: positions must survive JSON."""
    return json.loads(json.dumps(positions))


def drain(collector: UsageCollector, positions: dict) -> tuple[CollectResult, int]:
    """Call until the positions stop changing; all records together, and the number of calls."""
    out = CollectResult()
    calls = 0
    while True:
        calls += 1
        r = collector.collect(positions)
        out.usage += r.usage
        out.logs += r.logs
        if r.positions == positions:
            out.positions = r.positions
            return out, calls
        positions = roundtrip(r.positions)


def test_second_collect_and_restart_yield_nothing(tmp_path: Path) -> None:
    for era, state in (("latest", make_latest_state(tmp_path / "a")), ("legacy", make_legacy_state(tmp_path / "b"))):
        collector = UsageCollector(state, DEVICE)
        first = collector.collect({})
        assert first.usage, era
        again = collector.collect(first.positions)
        assert (again.usage, again.logs) == ([], []), era
        restarted = UsageCollector(state, DEVICE).collect(roundtrip(first.positions))
        assert (restarted.usage, restarted.logs) == ([], []), era
        assert restarted.positions == first.positions


def test_appended_assistant_line_yields_exactly_that_record(tmp_path: Path) -> None:
    state = make_legacy_state(tmp_path)
    session = legacy_session_file(state, "456405ea")
    first = UsageCollector(state, DEVICE).collect({})
    with session.open("a") as f:
        f.write(assistant_line("new00001", inp=1234, out=56) + "\n")
    r = UsageCollector(state, DEVICE).collect(roundtrip(first.positions))
    assert r.logs == []
    (rec,) = r.usage
    sid = session.name[: -len(".jsonl")]
    assert rec.id == usage_record_id(DEVICE, "main", sid, "new00001")
    assert (rec.input_tokens, rec.output_tokens, rec.total_tokens, rec.cost_usd) == (1234, 56, 1290, 0.003)
    assert rec.ts == 1_795_240_000_000 and rec.session_id == sid and rec.agent_id == "main"


def test_partial_last_line_is_read_once_complete(tmp_path: Path) -> None:
    state = make_legacy_state(tmp_path)
    session = legacy_session_file(state, "7b71f0c0")
    positions = UsageCollector(state, DEVICE).collect({}).positions
    line = assistant_line("half0001")
    with session.open("a") as f:
        f.write(line[:100])
    r = UsageCollector(state, DEVICE).collect(roundtrip(positions))
    offsets = {k: v["off"] for k, v in positions["agents"]["main"]["jsonl"].items()}
    assert r.usage == [], "a partial line is not consumed"
    assert {k: v["off"] for k, v in r.positions["agents"]["main"]["jsonl"].items()} == offsets
    assert UsageCollector(state, DEVICE).collect(roundtrip(r.positions)).positions == r.positions
    with session.open("a") as f:
        f.write(line[100:] + "\n")
    r = UsageCollector(state, DEVICE).collect(roundtrip(r.positions))
    assert [u.id for u in r.usage] == [usage_record_id(DEVICE, "main", session.stem, "half0001")]


def test_reset_and_delete_renames_are_not_recounted(tmp_path: Path) -> None:
    state = make_legacy_state(tmp_path)
    positions = UsageCollector(state, DEVICE).collect({}).positions
    a = legacy_session_file(state, "456405ea")
    a.rename(a.with_name(f"{a.name}.reset.{RESET_TS}"))
    b = legacy_session_file(state, "f5d14729")  # deleted and compressed (.zst), as 2026.7+ may do
    b.with_name(f"{b.name}.deleted.{RESET_TS}.zst").write_bytes(zstandard.ZstdCompressor().compress(b.read_bytes()))
    b.unlink()
    r = UsageCollector(state, DEVICE).collect(roundtrip(positions))
    assert (r.usage, r.logs) == ([], [])
    assert UsageCollector(state, DEVICE).collect(r.positions).usage == []


def test_lines_appended_just_before_a_reset_are_read_from_the_archive(tmp_path: Path) -> None:
    state = make_legacy_state(tmp_path)
    positions = UsageCollector(state, DEVICE).collect({}).positions
    a = legacy_session_file(state, "456405ea")
    with a.open("a") as f:
        f.write(assistant_line("last0001") + "\n")
    archive = a.with_name(f"{a.name}.reset.{RESET_TS}.zst")
    archive.write_bytes(zstandard.ZstdCompressor().compress(a.read_bytes()))
    a.unlink()
    r = UsageCollector(state, DEVICE).collect(roundtrip(positions))
    assert [u.id for u in r.usage] == [usage_record_id(DEVICE, "main", a.stem, "last0001")]


def test_unknown_zst_archive_is_read_in_full(tmp_path: Path) -> None:
    state = make_legacy_state(tmp_path)
    full = UsageCollector(state, DEVICE).collect({})
    b = legacy_session_file(state, "f5d14729")
    content = b.read_bytes()
    b.unlink()
    positions = UsageCollector(state, DEVICE).collect({}).positions
    b.with_name(f"{b.name}.deleted.{RESET_TS}.zst").write_bytes(zstandard.ZstdCompressor().compress(content))
    r = UsageCollector(state, DEVICE).collect(roundtrip(positions))
    assert sorted(u.id for u in r.usage) == sorted(u.id for u in full.usage if u.session_id == b.stem)
    assert len(r.usage) == 6 and len(r.logs) == 4  # 2 answers + 4 failed turns


def test_truncation_restarts_from_zero_with_the_same_ids(tmp_path: Path) -> None:
    state = make_legacy_state(tmp_path)
    first = UsageCollector(state, DEVICE).collect({})
    session = legacy_session_file(state, "f5d14729")
    lines = session.read_bytes().splitlines(keepends=True)
    session.write_bytes(b"".join(lines[:10]) + (assistant_line("after001") + "\n").encode())
    r = UsageCollector(state, DEVICE).collect(roundtrip(first.positions))
    earlier = {u.id for u in first.usage}
    new = [u.id for u in r.usage if u.id not in earlier]
    assert new == [usage_record_id(DEVICE, "main", session.stem, "after001")]
    assert {u.id for u in r.usage if u.id in earlier} == {u.id for u in first.usage if u.session_id == session.stem
                                                          and u.ts < 1_795_234_760_000}


def test_new_session_file_is_read(tmp_path: Path) -> None:
    state = make_legacy_state(tmp_path)
    positions = UsageCollector(state, DEVICE).collect({}).positions
    sid = "0a0b0c0d-1111-4222-8333-444455556666"
    header = {"type": "session", "version": 3, "id": sid, "timestamp": "2026-11-21T06:00:00.000Z", "cwd": "/w"}
    (state / "agents/main/sessions" / f"{sid}.jsonl").write_text(
        json.dumps(header) + "\n" + assistant_line("n1", inp=5, out=6) + "\n" + assistant_line("n2", inp=7, out=8)
        + "\n")
    r = UsageCollector(state, DEVICE).collect(roundtrip(positions))
    assert [(u.session_id, u.input_tokens) for u in r.usage] == [(sid, 5), (sid, 7)]


def test_small_budgets_read_everything_once(tmp_path: Path) -> None:
    for state, kw in ((make_legacy_state(tmp_path / "a"), {"max_bytes": 700}),
                      (make_latest_state(tmp_path / "b"), {"max_rows": 4})):
        full = UsageCollector(state, DEVICE).collect({})
        got, calls = drain(UsageCollector(state, DEVICE, **kw), {})
        assert calls > 3
        assert sorted(u.id for u in got.usage) == sorted(u.id for u in full.usage)
        assert sorted(rec.id for rec in got.logs) == sorted(rec.id for rec in full.logs)


def test_mirror_rows_are_skipped(tmp_path: Path) -> None:
    state = make_legacy_state(tmp_path)
    session = legacy_session_file(state, "7b71f0c0")
    positions = UsageCollector(state, DEVICE).collect({}).positions
    with session.open("a") as f:
        f.write(assistant_line("mirror01", provider="openclaw", model="delivery-mirror") + "\n")
        f.write(assistant_line("mirror02", provider="openclaw", model="gateway-injected") + "\n")
        f.write(assistant_line("real0001", provider="openclaw", model="some-real-model") + "\n")
    r = UsageCollector(state, DEVICE).collect(roundtrip(positions))
    assert [u.model for u in r.usage] == ["some-real-model"]


# --- SQLite store -------------------------------------------------------------------------------

def writable_db(state: Path) -> sqlite3.Connection:
    """A writer connection on the copied store, the way OpenClaw's Node SQLite would see it.

    The schema's CHECKs call ``octet_length()`` (newer than Python's bundled SQLite), so the
    function is supplied to keep those constraints enforced.
    """
    conn = sqlite3.connect(state / DB, isolation_level=None)
    conn.create_function("octet_length", 1, lambda v: None if v is None else len(str(v).encode()),
                         deterministic=True)
    return conn


def _navigation() -> str:
    return json.dumps({"version": 1, "report": {"kind": "canonical"}, "navigation": {}, "reset": {}, "model": {},
                       "modelBytes": 0, "modelWithoutCheckpointBytes": 0, "withoutCustomDataBytes": 0})


def test_sqlite_appended_row_yields_exactly_that_record(tmp_path: Path) -> None:
    state = make_latest_state(tmp_path)
    positions = UsageCollector(state, DEVICE).collect({}).positions
    sid = "e3400a72-84b5-412a-869e-b7bab57c5a25"
    conn = writable_db(state)
    conn.execute("INSERT INTO transcript_events(session_id, seq, event_json, created_at) VALUES (?, 16, ?, ?)",
                 (sid, assistant_line("row16", inp=42, out=7), 1_795_240_000_000))
    conn.close()
    r = UsageCollector(state, DEVICE).collect(roundtrip(positions))
    assert [(u.id, u.input_tokens, u.output_tokens) for u in r.usage] == [
        (usage_record_id(DEVICE, "main", sid, "row16"), 42, 7)]
    assert r.positions["agents"]["main"]["sqlite"]["sessions"][sid]["seq"] == 16


def test_sqlite_zstd_rows_are_decoded(tmp_path: Path) -> None:
    """Rows stored as ``event_zstd`` with ``event_json`` NULL read exactly like plain rows."""
    plain = UsageCollector(make_latest_state(tmp_path / "plain"), DEVICE).collect({})
    state = make_latest_state(tmp_path / "zstd")
    conn = writable_db(state)
    rows = conn.execute("SELECT session_id, seq, event_json FROM transcript_events "
                        "WHERE event_json LIKE '%\"role\":\"assistant\"%'").fetchall()
    assert len(rows) == 10
    for i, (sid, seq, text) in enumerate(rows):
        data = text.encode()
        blob = zstandard.ZstdCompressor(write_content_size=bool(i % 2)).compress(data)
        conn.execute("UPDATE transcript_events SET event_json = NULL, event_zstd = ?, event_utf8_bytes = ?, "
                     "navigation_json = ? WHERE session_id = ? AND seq = ?", (blob, len(data), _navigation(), sid, seq))
    assert conn.execute("SELECT COUNT(*) FROM transcript_events WHERE event_json IS NULL").fetchone()[0] == 10
    conn.close()
    zst = UsageCollector(state, DEVICE).collect({})
    assert to_dict(zst.usage) == to_dict(plain.usage)
    assert to_dict(zst.logs) == to_dict(plain.logs)


def test_sqlite_rewritten_session_and_recreated_db_are_read_again_with_the_same_ids(tmp_path: Path) -> None:
    state = make_latest_state(tmp_path)
    first = UsageCollector(state, DEVICE).collect({})
    sid = "dadc4dc2-83b2-4c80-b372-c030b36fd374"
    conn = writable_db(state)
    conn.execute("UPDATE transcript_rewrite_watermarks SET generation = 'rewritten' WHERE session_id = ?", (sid,))
    conn.close()
    r = UsageCollector(state, DEVICE).collect(roundtrip(first.positions))
    assert sorted(u.id for u in r.usage) == sorted(u.id for u in first.usage if u.session_id == sid)
    conn = writable_db(state)
    conn.execute("UPDATE schema_meta SET created_at = created_at + 1")
    conn.close()
    r2 = UsageCollector(state, DEVICE).collect(roundtrip(r.positions))
    assert sorted(u.id for u in r2.usage) == sorted(u.id for u in first.usage)
    assert UsageCollector(state, DEVICE).collect(r2.positions).usage == []


def test_sqlite_session_removed_into_an_archive_is_not_lost(tmp_path: Path) -> None:
    state = make_latest_state(tmp_path)
    full = UsageCollector(state, DEVICE).collect({})
    sid = "948d1b46-b754-4422-b980-4165ef749840"
    conn = writable_db(state)
    jsonl = "".join(r[0] + "\n" for r in conn.execute(
        "SELECT event_json FROM transcript_events WHERE session_id = ? ORDER BY seq", (sid,)))
    conn.execute("DELETE FROM transcript_events WHERE session_id = ?", (sid,))
    blob = zstandard.ZstdCompressor().compress(jsonl.encode())
    conn.execute("INSERT INTO session_transcript_archives(session_id, generation, session_key, reason, encoding, "
                 "archive_blob, archive_sha256, archive_name, created_at) VALUES (?,?,?,?,?,?,?,?,?)",
                 (sid, "g1", "agent:main:research-a", "reset", "zstd", blob, hashlib.sha256(blob).hexdigest(),
                  f"{sid}.jsonl.reset.{RESET_TS}.zst", 1_795_240_000_000))
    conn.close()
    r = UsageCollector(state, DEVICE).collect({})
    assert sorted(u.id for u in r.usage) == sorted(u.id for u in full.usage)
    assert UsageCollector(state, DEVICE).collect(r.positions).usage == []


def test_sqlite_missing_tables_or_garbage_degrade_to_nothing(tmp_path: Path) -> None:
    state = tmp_path / ".openclaw"
    db = state / DB
    db.parent.mkdir(parents=True)
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE schema_meta (meta_key TEXT, created_at INTEGER)")
    conn.execute("CREATE TABLE transcript_events (session_id TEXT, other INTEGER)")
    conn.commit()
    conn.close()
    assert UsageCollector(state, DEVICE).collect({}).usage == []
    db.write_bytes(os.urandom(4096))
    r = UsageCollector(state, DEVICE).collect({})
    assert r.usage == [] and r.positions["agents"]["main"]["sqlite"] == {}
