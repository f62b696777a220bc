"""Build OpenClaw state dirs in tmp dirs from the real files in ``tests/fixtures/openclaw``.

The fixtures were written by real OpenClaw gateways (2026.9.6: SQLite store; 2026.7.35: JSONL);
tests always work on copies (the SQLite file is WAL and must not be opened in place). When the
fixture tree is absent the tests that need it fail with the path they looked for.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "openclaw"  # copied from the design kit; part of the repo
LATEST = FIXTURES / "latest-2026.9.6"
LEGACY = FIXTURES / "legacy-2026.7.35"
LOG_NAME = "openclaw-2026-11-21.log"

# design/openclaw.md "Expected sums over the fixtures (assistant usage)"
EXPECTED = {
    # era, session prefix: (user msgs, assistant msgs, input, output, cacheRead, totalTokens, error msgs)
    ("latest", "948d1b46"): (4, 4, 36877, 84, 384, 37345, 1),
    ("latest", "dadc4dc2"): (4, 4, 36891, 96, 384, 37371, 1),
    ("latest", "e3400a72"): (2, 2, 12385, 23, 0, 12408, 1),
    ("legacy", "456405ea"): (3, 3, 15674, 42, 256, 15972, 1),
    ("legacy", "7b71f0c0"): (2, 2, 7962, 32, 0, 7994, 1),
    ("legacy", "f5d14729"): (6, 6, 15660, 38, 256, 15954, 4),
}


CAPTURED_S = 1_795_233_600.0
"""2026-11-21T04:00:00Z, shortly before the fixtures' first entries (epoch seconds)."""


def backdate(state: Path, ts_s: float = CAPTURED_S) -> Path:
    """Give a state dir and everything in it the times ``ts_s`` (epoch seconds): a copy of a fixture is then
    as old as the real one, so the log lines it holds are not "from before the state dir existed"."""
    for p in [*state.rglob("*"), state]:
        os.utime(p, (ts_s, ts_s))
    return state


def require_fixtures() -> None:
    """Fail the calling test when the OpenClaw fixtures (part of the repo) are missing."""
    if not (LATEST.is_dir() and LEGACY.is_dir()):
        pytest.fail(f"OpenClaw fixtures not found at {FIXTURES}: the checkout is incomplete")


def _writable_copy(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    dst.chmod(dst.stat().st_mode | stat.S_IWUSR | stat.S_IRUSR)
    return dst


def make_latest_state(tmp: Path, agent: str = "main") -> Path:
    """A 2026.9.6 state dir: ``openclaw.json`` + ``agents/<agent>/agent/openclaw-agent.sqlite``."""
    require_fixtures()
    state = tmp / ".openclaw"
    _writable_copy(LATEST / "config" / "openclaw.json", state / "openclaw.json")
    _writable_copy(LATEST / "sqlite" / "openclaw-agent.sqlite", state / "agents" / agent / "agent" /
                   "openclaw-agent.sqlite")
    (state / "agents" / agent / "sessions").mkdir(parents=True, exist_ok=True)
    return backdate(state)


def make_legacy_state(tmp: Path, agent: str = "main") -> Path:
    """A 2026.7.35 state dir: ``openclaw.json`` + ``agents/<agent>/sessions/*`` as OpenClaw left it.

    The fixture's ``*.trajectory.TRIMMED.jsonl`` is a trimmed copy made for the repo, not an
    OpenClaw file name, so it is left out.
    """
    require_fixtures()
    state = tmp / ".openclaw"
    _writable_copy(LEGACY / "config" / "openclaw.json", state / "openclaw.json")
    sessions = state / "agents" / agent / "sessions"
    for src in (LEGACY / "sessions").iterdir():
        if "TRIMMED" not in src.name:
            _writable_copy(src, sessions / src.name)
    return backdate(state)


def legacy_session_file(state: Path, prefix: str, agent: str = "main") -> Path:
    """The live ``<sessionId>.jsonl`` whose id starts with ``prefix``."""
    (match,) = [p for p in (state / "agents" / agent / "sessions").glob(f"{prefix}*.jsonl")
                if not p.name.endswith(".trajectory.jsonl")]
    return match


def make_log_dir(tmp: Path, era: str = "latest") -> Path:
    """A log dir holding the era's real ``openclaw-2026-11-21.log``."""
    require_fixtures()
    src = (LATEST if era == "latest" else LEGACY) / "logs" / LOG_NAME
    out = tmp / f"logs-{era}"
    _writable_copy(src, out / LOG_NAME)
    return out


def fixture_path(era: str, *parts: str) -> Path:
    """A path inside one era's fixture dir (``latest`` or ``legacy``)."""
    require_fixtures()
    return (LATEST if era == "latest" else LEGACY).joinpath(*parts)


def make_busy_legacy_state(tmp: Path, assistant_messages: int, log_warnings: int = 0, sessions: int = 10,
                           start_ms: int | None = None) -> Path:
    """A 2026.7.35-shaped state dir with ``assistant_messages`` assistant turns (each one usage
    record), spread over ``sessions`` JSONL transcripts, and a gateway log with ``log_warnings``
    WARN lines that ``openclaw.json`` points at. Lines are shaped like the real fixture's;
    timestamps are 100 ms apart and end now (or start at ``start_ms``, epoch ms), so a server that
    bounds timestamps around its clock accepts them. Add turns later with
    :func:`append_assistant_messages`.
    """
    import json
    import time

    state = tmp / ".openclaw"
    sessions_dir = state / "agents" / "main" / "sessions"
    sessions_dir.mkdir(parents=True, exist_ok=True)
    t0 = start_ms if start_ms is not None else int(time.time() * 1000) - assistant_messages * 100
    for s in range(sessions):
        with _session_file(state, s).open("w") as f:
            f.write(json.dumps({"type": "session", "version": 3, "id": _session_id(s), "timestamp": _iso(t0)}) + "\n")
    append_assistant_messages(state, 0, assistant_messages, sessions=sessions, start_ms=t0, step_ms=100)
    log_file = tmp / "openclaw-logs" / "openclaw.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("w") as f:
        for i in range(log_warnings):
            iso = _iso(t0 + i * 100)
            message = f"transient same-model retry {i} for stubllm/stub-model reason=rate_limit"
            f.write(json.dumps({"0": '{"subsystem":"agent/embedded"}', "1": message, "_meta": {
                "runtime": "node", "date": iso, "logLevelId": 4, "logLevelName": "WARN",
                "name": '{"subsystem":"agent/embedded"}', "parentNames": ["openclaw"]},
                "time": iso, "hostname": "vm", "message": message}) + "\n")
    (state / "openclaw.json").write_text(json.dumps({"logging": {"file": str(log_file)}}))
    return backdate(state, t0 / 1000 - 1)


def append_assistant_messages(state: Path, first: int, count: int, sessions: int = 10,
                              start_ms: int | None = None, step_ms: int = 1) -> int:
    """Append assistant turns ``first`` … ``first + count - 1`` to the transcripts of a
    :func:`make_busy_legacy_state` dir (turn ``i`` goes to session ``i % sessions``; timestamps
    ``step_ms`` apart from ``start_ms``, default now). Returns the sum of their input tokens."""
    import json
    import time

    t0 = start_ms if start_ms is not None else int(time.time() * 1000)
    by_session: dict[int, list[str]] = {}
    total_input = 0
    for i in range(first, first + count):
        ts = t0 + (i - first) * step_ms
        usage = {"input": 1000 + i % 97, "output": 20 + i % 13, "cacheRead": 64, "cacheWrite": 0,
                 "totalTokens": 1084 + i % 97 + i % 13, "cost": {"input": 0, "output": 0, "cacheRead": 0,
                                                                 "cacheWrite": 0, "total": 0}}
        total_input += usage["input"]
        msg = {"role": "assistant", "content": [{"type": "text", "text": f"reply {i}"}],
               "api": "openai-completions", "provider": "stubllm", "model": "stub-model", "usage": usage,
               "stopReason": "stop", "timestamp": ts, "responseId": f"chatcmpl-{i:024x}"}
        by_session.setdefault(i % sessions, []).append(
            json.dumps({"type": "message", "id": f"a{i:08d}", "parentId": None, "timestamp": _iso(ts),
                        "message": msg}) + "\n")
    for s, lines in by_session.items():
        with _session_file(state, s).open("a") as f:
            f.write("".join(lines))
    return total_input


def _session_id(s: int) -> str:
    return f"{s:08x}-0000-4000-8000-00000000cafe"


def _session_file(state: Path, s: int) -> Path:
    return state / "agents" / "main" / "sessions" / f"{_session_id(s)}.jsonl"


def _iso(ts_ms: int) -> str:
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts_ms / 1000)) + f".{ts_ms % 1000:03d}Z"
