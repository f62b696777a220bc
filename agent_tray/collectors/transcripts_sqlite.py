"""Read new transcript lines from an agent's SQLite store (OpenClaw 2026.8 and later).

File: ``<state>/agents/<id>/agent/openclaw-agent.sqlite`` (WAL). It is opened read-only
(``file:…?mode=ro``), one short read transaction per call, and never written or vacuumed.
Tables are probed through ``sqlite_master``/``PRAGMA table_info`` because the schema is still
changing; a missing table or column degrades to "nothing to read", never an exception.

Read (``schema_version`` 23 in 2026.9.6):

* ``transcript_events(session_id, seq, event_json, event_zstd, created_at)``: one transcript
  line per row, read incrementally with a per-session high-water ``seq``; ``event_zstd``
  (zstd of the JSON, ``event_json`` NULL) is decompressed with ``zstandard``.
* ``transcript_rewrite_watermarks(session_id, generation)``: a changed generation means the
  session was rewritten, so it is read again from the start (record ids dedupe).
* ``schema_meta.created_at``: the database's identity; a recreated database is read again.
* ``session_transcript_archives`` (reset/deleted archives, ``identity`` or ``zstd`` JSONL blobs)
  and ``session_transcript_cold_archives`` (``storage = 'sqlite'``): read only for sessions
  whose rows are no longer in ``transcript_events``, so a session removed between two calls
  is not lost; their lines were possibly read before, and their stable ids make that harmless.

Positions (per agent): ``{"db": <identity>, "sessions": {<session_id>: {"seq": int, "gen": str}},
"arch": {"at": <created_at ms>, "names": [<archive names at that ms>]}, "cold": {<sid>: <last_seq>}}``.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent_tray.collectors.follow import zstd, zstd_error
from agent_tray.collectors.result import short_hash

log = logging.getLogger(__name__)

DB_NAME = "openclaw-agent.sqlite"


@dataclass(frozen=True)
class RawEvent:
    """One transcript line, not yet decoded, with where it came from.

    ``text`` is the line's JSON (``str`` from SQLite, UTF-8 ``bytes`` from a file);
    ``fallback_ts_ms`` (epoch ms) is used when the line carries no timestamp.
    """

    session_id: str
    text: str | bytes
    fallback_ts_ms: int | None

    @property
    def raw_key(self) -> str:
        """Stand-in for the entry id when the line has none: hash of the raw JSON."""
        data = self.text.encode("utf-8", "replace") if isinstance(self.text, str) else self.text
        return "raw:" + short_hash(data.strip())


Sink = Callable[[RawEvent], None]
"""Receives each line as it is read (the collector turns it into records at once)."""


def connect_ro(db_path: Path, timeout_s: float = 2.0) -> sqlite3.Connection:
    """Open an SQLite file read-only through a ``file:`` URI (``mode=ro``)."""
    uri = db_path.resolve().as_uri() + "?mode=ro"  # file:///… with the path percent-encoded
    conn = sqlite3.connect(uri, uri=True, timeout=timeout_s, isolation_level=None)
    conn.execute("PRAGMA query_only = ON")
    return conn


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table','view')")}


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {r[1] for r in conn.execute(f'PRAGMA table_info("{table}")')}


def _decode(data: bytes | str | None) -> str | None:
    if data is None:
        return None
    if isinstance(data, str):
        return data
    raw = bytes(data)
    if raw[:4] == b"\x28\xb5\x2f\xfd":  # zstd frame magic
        raw = zstd().ZstdDecompressor().decompressobj().decompress(raw)
    return raw.decode("utf-8", "replace")


def db_identity(conn: sqlite3.Connection, tables: set[str]) -> str:
    """Identity of the database file: ``schema_meta`` creation time ('' when unknown)."""
    if "schema_meta" not in tables or "created_at" not in _columns(conn, "schema_meta"):
        return ""
    row = conn.execute("SELECT MIN(created_at) FROM schema_meta").fetchone()
    return str(row[0]) if row and row[0] is not None else ""


class AgentDbReader:
    """Incremental reader of one ``openclaw-agent.sqlite``; see the module docstring.

    ``read(pos, max_rows, sink)`` hands every new line to ``sink`` and returns
    ``(new_pos, rows_read)``. ``bad_rows`` counts rows whose blob could not be decoded (skipped).
    """

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self.bad_rows = 0

    def read(self, pos: dict[str, Any], max_rows: int, sink: Sink) -> tuple[dict[str, Any], int]:
        """Read up to about ``max_rows`` new rows; never raises for a missing/locked database.

        On a database error midway, the old positions are returned: lines already handed to
        ``sink`` will be handed again next time (same record ids).
        """
        if not self.db_path.is_file():
            return pos, 0
        try:
            conn = connect_ro(self.db_path)
        except sqlite3.Error as exc:
            log.warning("cannot open %s read-only: %s", self.db_path, exc)
            return pos, 0
        try:
            conn.execute("BEGIN")
            return self._read(conn, pos, max_rows, sink)
        except sqlite3.Error as exc:
            log.warning("cannot read %s: %s", self.db_path, exc)
            return pos, 0
        finally:
            conn.close()

    def _read(self, conn: sqlite3.Connection, pos: dict[str, Any], max_rows: int,
              sink: Sink) -> tuple[dict[str, Any], int]:
        tables = _tables(conn)
        if "transcript_events" not in tables:
            return pos, 0
        cols = _columns(conn, "transcript_events")
        if not {"session_id", "seq"} <= cols or not cols & {"event_json", "event_zstd"}:
            log.warning("%s: transcript_events lacks the expected columns (%s)", self.db_path, sorted(cols))
            return pos, 0
        ident = db_identity(conn, tables)
        same_db = pos.get("db") == ident
        sessions: dict[str, dict[str, Any]] = dict(pos.get("sessions", {})) if same_db else {}
        arch = dict(pos.get("arch", {})) if same_db else {}
        cold = dict(pos.get("cold", {})) if same_db else {}
        gens: dict[str, str] = {}
        if "transcript_rewrite_watermarks" in tables:
            gens = {str(s): str(g) for s, g in
                    conn.execute("SELECT session_id, generation FROM transcript_rewrite_watermarks")}
        maxes = {str(s): int(m) for s, m in
                 conn.execute("SELECT session_id, MAX(seq) FROM transcript_events GROUP BY session_id")}
        sel = ", ".join(c if c in cols else f"NULL AS {c}" for c in ("event_json", "event_zstd", "created_at"))
        query = f"SELECT seq, {sel} FROM transcript_events WHERE session_id = ? AND seq > ?"  # noqa: S608
        query += " ORDER BY seq LIMIT ?"
        rows_read = 0
        self._cold(conn, tables, sessions, cold, sink)
        for sid in sorted(maxes):
            sp = sessions.get(sid, {})
            hw = int(sp.get("seq", -1))
            gen = gens.get(sid, "")
            if sp and (maxes[sid] < hw or (gen and sp.get("gen") and sp.get("gen") != gen)):
                log.info("%s: session %s was rewritten; reading it again", self.db_path.name, sid)
                hw = -1
            sessions[sid] = {"seq": hw, "gen": gen}
            if maxes[sid] <= hw or rows_read >= max_rows:
                continue
            for seq, ev_json, ev_zstd, created_at in conn.execute(query, (sid, hw, max_rows - rows_read)):
                rows_read += 1
                hw = int(seq)
                try:
                    text = ev_json if ev_json is not None else _decode(ev_zstd)
                except zstd_error():
                    text = None
                if not text:
                    self.bad_rows += 1
                    continue
                sink(RawEvent(sid, text, created_at if isinstance(created_at, int) else None))
            sessions[sid]["seq"] = hw
        self._archives(conn, tables, set(maxes), arch, sink)
        for sid in [s for s in sessions if s not in maxes]:
            del sessions[sid]  # deleted from the table; an archive (if any) was read above
        return {"db": ident, "sessions": sessions, "arch": arch, "cold": cold}, rows_read

    def _lines(self, session_id: str, blob: bytes | str | None, ts: int | None, sink: Sink) -> None:
        try:
            text = _decode(blob) or ""
        except zstd_error():
            self.bad_rows += 1
            return
        for line in text.splitlines():
            if line.strip():
                sink(RawEvent(session_id, line, ts))

    def _archives(self, conn: sqlite3.Connection, tables: set[str], live: set[str], arch: dict[str, Any],
                  sink: Sink) -> None:
        table = "session_transcript_archives"
        if table not in tables or not {"session_id", "archive_blob", "archive_name", "created_at"} <= _columns(
                conn, table):
            return
        at, names = int(arch.get("at", -1)), set(arch.get("names", []))
        for sid, blob, name, created in conn.execute(
                "SELECT session_id, archive_blob, archive_name, created_at FROM session_transcript_archives "
                "WHERE created_at >= ? ORDER BY created_at, archive_name", (at,)):
            if int(created) == at and name in names:
                continue
            if sid not in live:
                self._lines(str(sid), blob, int(created), sink)
            if int(created) != at:
                at, names = int(created), set()
            names.add(name)
        arch.update({"at": at, "names": sorted(names)})

    def _cold(self, conn: sqlite3.Connection, tables: set[str], sessions: dict[str, dict[str, Any]],
              cold: dict[str, Any], sink: Sink) -> None:
        table = "session_transcript_cold_archives"
        if table not in tables or not {"session_id", "last_seq", "storage", "archive_blob", "archived_at"} <= _columns(
                conn, table):
            return
        for sid, last_seq, blob, archived in conn.execute(
                "SELECT session_id, last_seq, archive_blob, archived_at FROM session_transcript_cold_archives "
                "WHERE storage = 'sqlite' AND archive_blob IS NOT NULL"):
            sid, last_seq = str(sid), int(last_seq)
            done = max(int(cold.get(sid, -1)), int(sessions.get(sid, {}).get("seq", -1)))
            if last_seq > done:
                self._lines(sid, blob, archived if isinstance(archived, int) else None, sink)
                sp = sessions.setdefault(sid, {"seq": -1, "gen": ""})
                sp["seq"] = max(int(sp.get("seq", -1)), last_seq)
            cold[sid] = last_seq


def read_app_version(db_path: Path) -> str | None:
    """``schema_meta.app_version`` of an OpenClaw SQLite file (the version that wrote it)."""
    if not db_path.is_file():
        return None
    try:
        conn = connect_ro(db_path, timeout_s=0.5)
    except sqlite3.Error:
        return None
    try:
        if "schema_meta" not in _tables(conn) or "app_version" not in _columns(conn, "schema_meta"):
            return None
        row = conn.execute("SELECT app_version FROM schema_meta WHERE app_version IS NOT NULL "
                           "ORDER BY rowid DESC LIMIT 1").fetchone()
        return str(row[0]) if row else None
    except sqlite3.Error:
        return None
    finally:
        conn.close()
