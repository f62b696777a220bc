"""Which OpenClaw instance wrote a gateway log line, and which agent, session and run it is about.

Every OpenClaw instance of one user writes to the same default file
(``/tmp/openclaw/openclaw-YYYY-MM-DD.log``) unless its config names its own (``logging.file``), and a
line carries no process id. What tells instances apart, read from the real gateway's lines
(2026.9.6, 2026.7.35):

* **session ids** -- the ``session_id`` field of newer lines, ``sessionId=<uuid>`` in messages such as
  ``Preserved orphaned user message … runId=R sessionId=S``, ``"sessionId":"S"`` in structured arguments.
  A session id is checked against this state dir's own stores (SQLite ``session_windows`` /
  ``transcript_events``, JSONL file names), so an id is ours or not ours, never a guess;
* **run ids** -- ``runId=R`` / ``"runId":"R"`` / ``[agent] run R ended``, ours when this agent read them
  from its transcripts (the ``custom`` entry every run attempt writes), or when a line names one of our
  sessions next to it;
* **the gateway's pid** -- ``"pid":N`` (``slow SQLite session write {"pid":8369,…}``) and ``(pid N, port
  M)``: ours when it is (or was) the pid in this state dir's gateway lock file;
* **paths** -- an absolute path inside this state dir (``"storePath":"…/agents/main/agent/…"``) is ours;
  a path inside another OpenClaw state dir is not;
* **trace ids** -- every line of one run shares a ``traceId``, so ``lane task error: lane=main …`` and
  ``transient same-model retry 3/8 …`` (no id of their own) belong to whoever owns a marked line of the
  same trace.

Lines that carry none of these (gateway start-up, the CLI's ``[openclaw] The CLI command failed.``)
cannot be told apart in a shared file; they are kept only from this gateway's own ``logging.file``.
Session keys (``lane=session:agent:work:reports``) and agent ids name *what* a line is about (they are
put on the record) but not *who* wrote it: two instances may both have ``agent:main:main``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent_tray.collectors.openclaw import OpenClawPaths
from agent_tray.collectors.transcripts_jsonl import classify
from agent_tray.collectors.transcripts_sqlite import connect_ro
from shared.payloads import MAX_SHORT_STR

log = logging.getLogger(__name__)

OURS, FOREIGN = "ours", "foreign"
_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_SESSION_RE = re.compile(rf'(?:sessionId|session_id)\\?"?\s*[=:]\s*\\?"?({_UUID})', re.I)
_RUN_RE = re.compile(rf'(?:runId\\?"?\s*[=:]\s*\\?"?|\[agent\] run |\brun )({_UUID})', re.I)
_PID_RE = re.compile(r'(?:\\?"pid\\?"\s*:\s*|\(pid )(\d{1,10})\b')
_LANE_RE = re.compile(r"lane=session:(agent:[a-z0-9_-]{1,64}:[^\s\"'\\,]{1,180})")
_KEY_RE = re.compile(r'sessionKey\\?"?\s*[=:]\s*\\?"?(agent:[a-z0-9_-]{1,64}:[^\s"\'\\,]{1,180})')
_AGENT_RE = re.compile(r'agentId\\?"?\s*[=:]\s*\\?"?([a-z0-9][a-z0-9_-]{0,63})\b')
_PATH_RE = re.compile(r"(?:~|(?<![\w.~])(?=/))(?:/[\w.@%+~-]+){2,}")
_STATE_PATH_RE = re.compile(r"^(.*?)/(?:agents/[a-z0-9_-]+/(?:agent|sessions)|openclaw\.json|\.openclaw[^/]*)(?:/|$)")
BIRTH_SCAN_LIMIT = 500
"""Entries of the state dir (two levels deep) whose times estimate when it was created."""


@dataclass
class Marks:
    """What one log line names. Sets of ids as found in the text; ``trace`` is its ``traceId``."""

    sessions: set[str] = field(default_factory=set)
    runs: set[str] = field(default_factory=set)
    pids: set[int] = field(default_factory=set)
    paths: set[str] = field(default_factory=set)
    keys: set[str] = field(default_factory=set)
    agents: set[str] = field(default_factory=set)
    trace: str | None = None


def line_marks(obj: dict[str, Any], raw: str) -> Marks:
    """The ids a parsed log line (``obj``, its raw text ``raw``) names; ``_meta`` (code location) is ignored."""
    m = Marks()
    body = raw
    meta_at = raw.find('"_meta"')
    if meta_at >= 0:  # the code location inside _meta is the install's path, not the instance's
        end = raw.find('"time"', meta_at)
        body = raw[:meta_at] + (raw[end:] if end > 0 else "")
    if isinstance(obj.get("session_id"), str) and obj["session_id"]:
        m.sessions.add(obj["session_id"].lower())
    if isinstance(obj.get("agent_id"), str) and obj["agent_id"]:
        m.agents.add(obj["agent_id"].lower())
    if isinstance(obj.get("traceId"), str) and obj["traceId"]:
        m.trace = obj["traceId"][:64]
    m.sessions |= {s.lower() for s in _SESSION_RE.findall(body)}
    m.runs |= {r.lower() for r in _RUN_RE.findall(body)}
    m.pids |= {int(p) for p in _PID_RE.findall(body)}
    m.keys |= set(_LANE_RE.findall(body)) | set(_KEY_RE.findall(body))
    m.agents |= set(_AGENT_RE.findall(body)) | {k.split(":")[1] for k in m.keys}
    m.paths |= set(_PATH_RE.findall(body.replace("\\\\", "\\").replace("\\/", "/")))
    return m


def _listdir(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _cut(value: str | None) -> str | None:
    return value[:MAX_SHORT_STR] if value else None


def state_dir_born_ms(state_dir: Path, limit: int = BIRTH_SCAN_LIMIT) -> int | None:
    """When the state dir was created, as well as the file system tells (epoch ms), or None without one.

    Linux keeps no creation time that Python reads, so this is the oldest modification time of the
    dir's entries two levels deep (at most ``limit`` of them; secrets are only ``stat``-ed, never read):
    files OpenClaw writes once at set-up keep their time. Never earlier than the dir's real creation
    unless files were copied in with their old times (a restored backup), which only lets more
    lines through the other checks.
    """
    try:
        newest = state_dir.stat().st_mtime
    except OSError:
        return None
    oldest = newest
    seen = 0
    stack = [(state_dir, 0)]
    while stack and seen < limit:
        d, depth = stack.pop()
        try:
            with os.scandir(d) as it:
                for e in it:
                    seen += 1
                    try:
                        st = e.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    oldest = min(oldest, st.st_mtime)
                    if depth < 1 and e.is_dir(follow_symlinks=False):
                        stack.append((Path(e.path), depth + 1))
                    if seen >= limit:
                        break
        except OSError:
            continue
    return int(oldest * 1000)


class Ownership:
    """Decides whether lines are this instance's, from what its own state dir holds.

    Args:
        paths: this instance's OpenClaw paths.
        gateway_pid: returns the pid in the gateway lock file now (None when the gateway is down).
        known_runs: run id -> (agent id, session id) of runs read from this instance's transcripts.
    """

    def __init__(self, paths: OpenClawPaths, gateway_pid: Callable[[], int | None] | None = None,
                 known_runs: dict[str, tuple[str, str]] | None = None) -> None:
        self.paths = paths
        self.gateway_pid = gateway_pid or (lambda: None)
        self.known_runs = known_runs if known_runs is not None else {}
        self.sessions: dict[str, str] = {}  # our session id -> agent id (positive answers are kept)
        self.pids: dict[int, int] = {}  # pids our gateway had -> epoch ms first seen
        root = str(paths.state_dir.absolute())
        self._roots = {root, os.path.realpath(root)}
        self._born: tuple[float, int | None] | None = None
        self.stores = False
        """This state dir has a session store (SQLite file or transcript files): only then does a session id
        it does not hold prove a line to be another instance's."""

    # ---- knowledge -----------------------------------------------------------------------------
    def born_ms(self) -> int | None:
        """:func:`state_dir_born_ms`, refreshed hourly."""
        now = time.monotonic()
        if self._born is None or now - self._born[0] > 3600:
            self._born = (now, state_dir_born_ms(self.paths.state_dir))
        return self._born[1]

    def note_gateway(self) -> None:
        """Remember the gateway's current pid (a restarted gateway's old lines stay ours)."""
        pid = self.gateway_pid()
        if pid and pid not in self.pids:
            self.pids[pid] = int(time.time() * 1000)
            for old in sorted(self.pids, key=self.pids.__getitem__)[:-16]:
                del self.pids[old]

    def check_sessions(self, ids: Iterable[str]) -> None:
        """Look up session ids not known yet in this state dir's stores (one query per agent)."""
        todo = {i for i in ids if i not in self.sessions}
        if not todo:
            return
        for agent_id in self.paths.discover_agent_ids():
            db, sessions_dir = self.paths.agent_db(agent_id), self.paths.sessions_dir(agent_id)
            self.stores = self.stores or db.is_file() or any(True for _ in _listdir(sessions_dir))
            found = self._sqlite_sessions(db, todo) | self._jsonl_sessions(sessions_dir, todo)
            for sid in found:
                self.sessions[sid] = agent_id
            todo -= found
            if not todo:
                return

    @staticmethod
    def _sqlite_sessions(db: Path, ids: set[str]) -> set[str]:
        if not db.is_file():
            return set()
        try:
            conn = connect_ro(db, timeout_s=0.5)
        except sqlite3.Error:
            return set()
        try:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            marks = ", ".join("?" for _ in ids)
            found: set[str] = set()
            for table in ("session_windows", "transcript_events"):
                if table in tables:
                    found |= {str(r[0]).lower() for r in conn.execute(
                        f"SELECT DISTINCT session_id FROM {table} WHERE session_id IN ({marks})",  # noqa: S608
                        sorted(ids))}
            return found
        except sqlite3.Error:
            return set()
        finally:
            conn.close()

    @staticmethod
    def _jsonl_sessions(sessions_dir: Path, ids: set[str]) -> set[str]:
        try:
            names = os.listdir(sessions_dir)
        except OSError:
            return set()
        found = set()
        for name in names:
            kind = classify(name)
            if kind and kind[0].lower() in ids:
                found.add(kind[0].lower())
        index = sessions_dir / "sessions.json"
        if ids - found and index.is_file():
            try:
                data = json.loads(index.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                data = {}
            for entry in data.values() if isinstance(data, dict) else ():
                sid = entry.get("sessionId") if isinstance(entry, dict) else None
                if isinstance(sid, str) and sid.lower() in ids:
                    found.add(sid.lower())
        return found

    # ---- decisions -----------------------------------------------------------------------------
    def _path_owner(self, path: str) -> str | None:
        if path.startswith("~"):
            path = str(self.paths.home) + path[1:]
        if any(path == r or path.startswith(r + "/") for r in self._roots):
            return OURS
        return FOREIGN if _STATE_PATH_RE.match(path) else None

    def decide(self, m: Marks, young: bool = False) -> str | None:
        """``OURS``, ``FOREIGN`` or None (the line names nothing that tells). Call :meth:`check_sessions`
        with the lines' session ids first. For a ``young`` line (written moments ago) a session id not
        found yet is no proof: its session may not be committed yet, so that alone gives None."""
        if any(s in self.sessions for s in m.sessions) or any(r in self.known_runs for r in m.runs):
            return OURS
        if any(p in self.pids for p in m.pids):
            return OURS
        owners = {self._path_owner(p) for p in m.paths} - {None}
        if OURS in owners:
            return OURS
        if FOREIGN in owners or (m.sessions and self.stores and not young):  # looked up: not in this state dir
            return FOREIGN
        if m.pids and self.gateway_pid() is not None:
            return FOREIGN
        return None

    def learn(self, m: Marks, owner: str | None) -> None:
        """Remember the run ids of a line found to be ours (with the session it names)."""
        if owner != OURS or not m.runs:
            return
        sid = next((s for s in m.sessions if s in self.sessions), "")
        for r in m.runs:
            self.known_runs.setdefault(r, (self.sessions.get(sid, ""), sid))

    def about(self, m: Marks) -> tuple[str | None, str | None, str | None, str | None]:
        """``(agent id, session id, session key, run id)`` a line of ours is about (None where unknown)."""
        run = next(iter(sorted(m.runs)), None)
        sid = next((s for s in sorted(m.sessions) if s in self.sessions), None)
        agent = None
        if run and run in self.known_runs:
            agent, known_sid = self.known_runs[run]
            sid = sid or known_sid or None
        if sid:
            agent = self.sessions.get(sid) or agent
        key = next(iter(sorted(m.keys)), None)
        agent = agent or (key.split(":")[1] if key else None) or next(iter(sorted(m.agents)), None)
        return _cut(agent), _cut(sid), _cut(key), _cut(run)


_REPLY_ERROR_RE = re.compile(r"errorMessage=(.+?) (?:runId|error|conn)=")
_CLI_PREFIX = "[openclaw] "
_CLI_REASON = "[openclaw] Reason: "
CLI_ECHO_MS = 10_000
"""A CLI failure block belongs to the instance whose gateway answered with the same error this recently (ms;
the CLI writes its block tens of milliseconds after the reply, the rest is room for a loaded machine)."""


def cli_blocks(lines: list[Line]) -> None:
    """Give the OpenClaw CLI's failure block (``[openclaw] The CLI command failed.``, ``[openclaw] Reason: X``
    and its hint lines; no ids of their own) the owner of the gateway reply that failed with ``X``
    (``⇄ res ✗ agent … errorMessage=X runId=R``) moments before it: the reply nearest before it **in time**
    of any instance, wherever it is among ``lines`` (a gateway's buffered lines may reach the file after
    the CLI's block that answers them). A block whose nearest reply is another instance's, or not decided
    yet, stays not ours even when a reply of ours with the same reason came earlier."""
    replies: list[tuple[int, str, Line]] = []
    for ln in lines:
        msg = ln.parsed.message if ln.parsed else ""
        m = _REPLY_ERROR_RE.search(msg) if "errorMessage=" in msg else None
        if m:
            replies.append((ln.parsed.ts_ms or 0, m.group(1).strip(), ln))  # type: ignore[union-attr]
    for i, ln in enumerate(lines):
        msg = ln.parsed.message if ln.parsed else ""
        if ln.owner is not None or not msg.startswith(_CLI_REASON) or ln.parsed is None:
            continue
        reason, ts = msg[len(_CLI_REASON):].strip(), ln.parsed.ts_ms or 0
        near = [r for r in replies if r[1] == reason and 0 <= ts - r[0] <= CLI_ECHO_MS]
        match = max(near, key=lambda r: r[0]) if near else None
        if match is None or match[2].owner is None:
            continue
        for j in range(i, -1, -1):  # the block: this line and its CLI neighbours that name nothing
            if j < i and not _cli_line(lines[j]):
                break
            lines[j].owner, lines[j].about = match[2].owner, match[2].about
        for j in range(i + 1, len(lines)):
            if not _cli_line(lines[j]) or lines[j].parsed.message.startswith(_CLI_REASON):  # type: ignore[union-attr]
                break
            lines[j].owner, lines[j].about = match[2].owner, match[2].about


def _cli_line(ln: Line) -> bool:
    return ln.owner is None and ln.parsed is not None and ln.parsed.message.startswith(_CLI_PREFIX) and (
        ln.marks is None or ln.marks.trace is None)


@dataclass
class Line:
    """One line of a log file being attributed: its byte offset, raw bytes, parse (``LogLine`` of
    :mod:`agent_tray.collectors.logs`, None when not a log line), marks, owner and what it is about
    (agent id, session id, session key, run id)."""

    offset: int
    raw: bytes
    parsed: Any
    marks: Marks | None
    owner: str | None = None
    about: tuple[str | None, str | None, str | None, str | None] = (None, None, None, None)
