"""Which sessions an OpenClaw agent has: session id, session key, channel, label, status.

Read from each agent's session index (never its token fields, see ``design/openclaw.md``):

* 2026.8 and later -- the SQLite store ``agents/<id>/agent/openclaw-agent.sqlite``:
  ``session_windows(session_id, session_key, status, chat_type, channel, started_at, updated_at,
  display_name, …)``, one row per session id (a reset gives the key a new session id and a new row);
  the label comes from ``session_nodes.label`` / ``display_name`` of its key when the window has none.
* up to 2026.7 -- ``agents/<id>/sessions/sessions.json``: ``{<session key>: {"sessionId",
  "updatedAt", "sessionStartedAt", "status", "channel"/"lastChannel", "chatType", "label"/"displayName",
  …}}``.

Incremental by ``updated_at``: positions per agent ``{"hw": <newest updated ms sent>, "at": [<session
ids sent at hw>], "js": [<sessions.json size>, <mtime ns>]}``; an unchanged ``sessions.json`` is not
parsed again. Tables and columns are probed (the schema is still changing); anything unreadable
degrades to "no sessions", never an exception.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path
from typing import Any

from agent_tray.collectors.openclaw import OpenClawPaths
from agent_tray.collectors.result import CollectResult
from agent_tray.collectors.transcripts_sqlite import connect_ro
from shared.payloads import MAX_SHORT_STR, MAX_TS_MS, MIN_TS_MS, SessionRecord

log = logging.getLogger(__name__)

MAX_PER_CALL = 2000
"""Sessions sent per agent and ``collect`` call (the rest follow on the next call)."""
_STATUSES = ("running", "done", "failed", "killed", "timeout")


def _text(value: Any) -> str:
    return value[:MAX_SHORT_STR] if isinstance(value, str) else ""


def _ms(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return int(value) if MIN_TS_MS <= value < MAX_TS_MS else None


def _record(agent_id: str, session_id: Any, key: Any, updated: Any, *, started: Any = None, status: Any = "",
            channel: Any = "", chat_type: Any = "", label: Any = "") -> SessionRecord | None:
    sid, upd = _text(session_id), _ms(updated)
    if not sid or upd is None:
        return None
    return SessionRecord(agent_id=agent_id[:MAX_SHORT_STR], session_id=sid, session_key=_text(key),
                         channel=_text(channel), chat_type=_text(chat_type), label=_text(label),
                         status=_text(status) if status in _STATUSES else "", started_ms=_ms(started), updated_ms=upd)


def read_sqlite_index(db_path: Path, agent_id: str, since_ms: int) -> list[SessionRecord]:
    """Sessions of one agent's SQLite store updated at or after ``since_ms`` (epoch ms), oldest first."""
    if not db_path.is_file():
        return []
    try:
        conn = connect_ro(db_path)
    except sqlite3.Error:
        return []
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "session_windows" not in tables:
            return []
        cols = {r[1] for r in conn.execute('PRAGMA table_info("session_windows")')}
        if not {"session_id", "session_key", "updated_at"} <= cols:
            return []
        start = "created_at" if "created_at" in cols else "started_at"
        want = (start, "status", "channel", "chat_type", "display_name")
        sel = ", ".join(f"w.{c}" if c in cols else f"NULL AS {c}" for c in want)
        label = "NULL"
        join = ""
        if "session_nodes" in tables:
            ncols = {r[1] for r in conn.execute('PRAGMA table_info("session_nodes")')}
            parts = [f"n.{c}" for c in ("label", "display_name") if c in ncols]
            if parts and "session_key" in ncols:
                label = f"COALESCE({', '.join(parts)})"
                join = "LEFT JOIN session_nodes n ON n.session_key = w.session_key"
        rows = conn.execute(
            f"SELECT w.session_id, w.session_key, w.updated_at, {sel}, {label} FROM session_windows w {join} "  # noqa: S608
            "WHERE w.updated_at >= ? ORDER BY w.updated_at, w.session_id LIMIT ?", (since_ms, MAX_PER_CALL * 2))
        out = []
        for sid, key, upd, started, status, channel, chat_type, display, node_label in rows:
            rec = _record(agent_id, sid, key, upd, started=started, status=status, channel=channel,
                          chat_type=chat_type, label=display or node_label or "")
            if rec is not None:
                out.append(rec)
        return out
    except sqlite3.Error as exc:
        log.debug("cannot read the session index of %s: %s", db_path, exc)
        return []
    finally:
        conn.close()


def parse_sessions_json(data: Any, agent_id: str) -> list[SessionRecord]:
    """Sessions of a parsed legacy ``sessions.json`` (``{session key: entry}``), oldest update first."""
    out = []
    for key, entry in (data.items() if isinstance(data, dict) else ()):
        if not isinstance(entry, dict):
            continue
        rec = _record(agent_id, entry.get("sessionId"), key, entry.get("updatedAt"),
                      started=entry.get("sessionStartedAt") or entry.get("startedAt"), status=entry.get("status"),
                      channel=entry.get("channel") or entry.get("lastChannel") or "",
                      chat_type=entry.get("chatType") or "",
                      label=entry.get("label") or entry.get("displayName") or entry.get("subject") or "")
        if rec is not None:
            out.append(rec)
    return sorted(out, key=lambda r: (r.updated_ms, r.session_id))


class SessionIndexCollector:
    """Reports sessions (id, key, channel, label, status) whose index entry changed.

    Args:
        paths: from :func:`agent_tray.collectors.openclaw.locate_openclaw`.
    """

    def __init__(self, paths: OpenClawPaths) -> None:
        self.paths = paths

    def collect(self, positions: dict[str, Any]) -> CollectResult:
        """Sessions updated since ``positions``; returns them (``sessions``) and the new positions."""
        old_agents = positions.get("agents", {}) if positions.get("v") == 1 else {}
        agents: dict[str, Any] = {}
        sessions: list[SessionRecord] = []
        for agent_id in self.paths.discover_agent_ids():
            old = old_agents.get(agent_id) if isinstance(old_agents.get(agent_id), dict) else {}
            hw, at = int(old.get("hw", 0)), set(old.get("at", []))
            found = read_sqlite_index(self.paths.agent_db(agent_id), agent_id, hw)
            js = old.get("js")
            index = self.paths.sessions_dir(agent_id) / "sessions.json"
            try:
                st = index.stat()
                stamp = [st.st_size, st.st_mtime_ns]
            except OSError:
                stamp = None
            if stamp is not None and stamp != js:
                try:
                    found += [r for r in parse_sessions_json(json.loads(index.read_text(encoding="utf-8")), agent_id)
                              if r.updated_ms >= hw]
                except (OSError, ValueError) as exc:
                    log.debug("cannot read %s: %s", index, exc)
                    stamp = js  # try again next time
            new = sorted((r for r in found if not (r.updated_ms == hw and r.session_id in at)),
                         key=lambda r: (r.updated_ms, r.session_id))
            if len(new) > MAX_PER_CALL:
                new, stamp = new[:MAX_PER_CALL], js  # the rest next call (sessions.json parsed again then)
            for r in new:
                if r.updated_ms > hw:
                    hw, at = r.updated_ms, set()
                at.add(r.session_id)
            sessions += new
            agents[agent_id] = {"hw": hw, "at": sorted(at), "js": stamp}
        for agent_id, old in old_agents.items():
            agents.setdefault(agent_id, old)
        return CollectResult(sessions=sessions, positions={"v": 1, "agents": agents})
