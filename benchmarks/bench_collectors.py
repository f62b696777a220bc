"""How fast the OpenClaw collectors read a large backlog, and how much memory they need.

Run: ``.venv/bin/python benchmarks/bench_collectors.py [--transcript-lines N] [--log-lines N]``

Builds synthetic but realistically shaped files in a temp dir -- legacy JSONL transcripts, an
SQLite store with ``transcript_events`` (every 10th row zstd-compressed), and a gateway log
with 10% warnings/errors -- then reads each backlog to the end the way the agent does (calls
``collect`` with the returned positions until they stop changing). Reports wall time, lines
per second, calls, the peak of Python allocations (``tracemalloc``, a second run), the time
of one more call when nothing is new (the steady state), and the size of the positions JSON.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent_tray.collectors.logs import LogCollector
from agent_tray.collectors.usage import UsageCollector

T0 = 1_795_234_000_000
SESSIONS = 100


def _line(i: int, session: str) -> str:
    ts = T0 + i * 1000
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts / 1000)) + ".000Z"
    if i % 2 == 0:
        return json.dumps({"type": "message", "id": f"{session[:8]}-{i:08d}", "parentId": None, "timestamp": iso,
                           "message": {"role": "user", "content": "please summarise the report " * 4,
                                       "timestamp": ts}})
    usage = {"input": 12000 + i % 500, "output": 30 + i % 40, "cacheRead": 128, "cacheWrite": 0,
             "totalTokens": 12158 + i % 500 + i % 40,
             "cost": {"input": 0.036, "output": 0.0006, "cacheRead": 0.00004, "cacheWrite": 0, "total": 0.03664}}
    msg = {"role": "assistant", "content": [{"type": "text", "text": "Here is the summary you asked for. " * 6}],
           "api": "openai-completions", "provider": "anthropic", "model": "claude-sonnet-4-5", "usage": usage,
           "stopReason": "stop", "timestamp": ts, "responseId": f"chatcmpl-{i:024x}"}
    return json.dumps({"type": "message", "id": f"{session[:8]}-{i:08d}", "parentId": None, "timestamp": iso,
                       "message": msg})


def build_jsonl(root: Path, n: int) -> Path:
    sessions = root / "jsonl" / "agents" / "main" / "sessions"
    sessions.mkdir(parents=True)
    per = n // SESSIONS
    for s in range(SESSIONS):
        sid = f"{s:08x}-0000-4000-8000-000000000000"
        with (sessions / f"{sid}.jsonl").open("w") as f:
            f.write(json.dumps({"type": "session", "version": 3, "id": sid, "timestamp": "2026-11-21T00:00:00Z"})
                    + "\n")
            for i in range(per - 1):
                f.write(_line(s * per + i, sid) + "\n")
    return root / "jsonl"


def build_sqlite(root: Path, n: int) -> Path:
    db = root / "sqlite" / "agents" / "main" / "agent" / "openclaw-agent.sqlite"
    db.parent.mkdir(parents=True)
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE schema_meta (meta_key TEXT PRIMARY KEY, role TEXT, schema_version INTEGER, "
                 "agent_id TEXT, app_version TEXT, created_at INTEGER, updated_at INTEGER)")
    conn.execute("INSERT INTO schema_meta VALUES ('primary', 'agent', 23, 'main', '2026.9.6', ?, ?)", (T0, T0))
    conn.execute("CREATE TABLE transcript_events (session_id TEXT NOT NULL, seq INTEGER NOT NULL, event_json TEXT, "
                 "created_at INTEGER NOT NULL, event_zstd BLOB, event_utf8_bytes INTEGER, navigation_json TEXT, "
                 "PRIMARY KEY (session_id, seq))")
    per = n // SESSIONS
    zc = zstandard.ZstdCompressor()
    for s in range(SESSIONS):
        sid = f"{s:08x}-0000-4000-8000-000000000000"
        rows = []
        for i in range(per):
            text = _line(s * per + i, sid)
            if i % 10 == 9:
                rows.append((sid, i, None, T0 + i, zc.compress(text.encode()), len(text)))
            else:
                rows.append((sid, i, text, T0 + i, None, None))
        conn.executemany("INSERT INTO transcript_events (session_id, seq, event_json, created_at, event_zstd, "
                         "event_utf8_bytes) VALUES (?,?,?,?,?,?)", rows)
    conn.commit()
    conn.close()
    return root / "sqlite"


def build_logs(root: Path, n: int) -> Path:
    log_dir = root / "logs"
    log_dir.mkdir()
    levels = [("INFO", 3)] * 9 + [("WARN", 4)]
    with (log_dir / "openclaw-2026-11-21.log").open("w") as f:
        for i in range(n):
            name, lvl = levels[i % 10] if i % 100 else ("ERROR", 5)
            msg = f"transient same-model retry {i % 8}/8 for anthropic/claude-sonnet-4-5 reason=rate_limit: delayMs={i}"
            iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(T0 / 1000 + i / 10)) + ".000"
            f.write(json.dumps({"0": '{"subsystem":"agent/embedded"}', "1": msg, "_meta": {
                "runtime": "node", "date": iso + "Z", "logLevelId": lvl, "logLevelName": name,
                "name": '{"subsystem":"agent/embedded"}', "parentNames": ["openclaw"]},
                "time": iso + "+00:00", "hostname": "vm", "message": msg}) + "\n")
    return log_dir


def drain(collect: Callable[[dict], object]) -> tuple[int, int, int, dict]:
    positions: dict = {}
    usage = logs = calls = 0
    while True:
        calls += 1
        r = collect(positions)
        usage += len(r.usage)  # type: ignore[attr-defined]
        logs += len(r.logs)  # type: ignore[attr-defined]
        if r.positions == positions:  # type: ignore[attr-defined]
            return usage, logs, calls, positions
        positions = json.loads(json.dumps(r.positions))  # what the caller persists  # type: ignore[attr-defined]


def measure(label: str, lines: int, make: Callable[[], Callable[[dict], object]], size: int) -> None:
    started = time.perf_counter()
    collect = make()
    usage, logs, calls, positions = drain(collect)
    elapsed = time.perf_counter() - started
    started = time.perf_counter()
    collect(positions)  # the steady state: nothing new
    idle_ms = (time.perf_counter() - started) * 1000
    tracemalloc.start()
    drain(make())
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"{label:<26} {lines:>8,} lines {size / 2**20:>6.1f} MiB {elapsed:>6.2f} s {lines / elapsed:>8,.0f} lines/s "
          f"{calls:>3} calls  usage={usage:,} logs={logs:,}  peak {peak / 2**20:.1f} MiB  "
          f"idle call {idle_ms:.1f} ms  positions {len(json.dumps(positions)) / 1024:.1f} KiB")


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--transcript-lines", type=int, default=100_000)
    ap.add_argument("--log-lines", type=int, default=200_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="clawfleet-bench-") as tmp:
        root = Path(tmp)
        print(f"building {args.transcript_lines:,} transcript lines (x2 stores) and {args.log_lines:,} log lines…")
        jsonl, db, logs = (build_jsonl(root, args.transcript_lines), build_sqlite(root, args.transcript_lines),
                           build_logs(root, args.log_lines))
        measure("usage, legacy JSONL", args.transcript_lines, lambda: UsageCollector(jsonl, "bench").collect,
                _size(jsonl))
        measure("usage, SQLite (10% zstd)", args.transcript_lines, lambda: UsageCollector(db, "bench").collect,
                _size(db))
        measure("logs (10% warn/error)", args.log_lines, lambda: LogCollector([logs], "bench").collect, _size(logs))


if __name__ == "__main__":
    main()
