"""Persistent outbox: every QoS 1 message is stored here before it is sent.

A SQLite file in the agent's data dir (``outbox.sqlite``, WAL). A message leaves it only when
the broker acknowledged it (PUBACK). The same database holds the collectors' read positions, so
records and the position after them are committed in one transaction: a crash between the
two can neither lose nor repeat a record.

Bound: the stored payloads stay within ``max_bytes``. Telemetry (a sample can be lost; the next
one says the same) is dropped oldest first to make room. Usage and log records are never
dropped: they may fill :data:`KEPT_SHARE` of the bound, and a put of them that does not fit
raises :class:`OutboxFull` and stores nothing, neither the records nor the read positions, so
the records stay in OpenClaw's own files and are read again once the broker has taken messages
off the outbox (see :class:`agent_tray.openclaw_monitor.OpenClawMonitor`). The file is created
mode 0600.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.clock import now_ms
from shared.private_files import ensure_private_database

log = logging.getLogger("clawfleet.agent.outbox")

DROPPABLE = ("telemetry",)
"""Kinds dropped (oldest first) to keep the outbox within its bound; every other kind is kept."""
KEPT_SHARE = 0.75
"""Share of the bound that kept kinds (usage, logs) may fill, so recent telemetry has room too."""


class OutboxFull(Exception):
    """A put of records that must not be dropped does not fit: ``needed`` more bytes than the
    ``free`` bytes (:data:`KEPT_SHARE` of the ``bound`` minus the kept messages). Nothing was stored."""

    def __init__(self, needed: int, free: int, bound: int) -> None:
        super().__init__(f"outbox full: {needed} bytes do not fit into the {max(free, 0)} bytes left of {bound}")
        self.needed, self.free, self.bound = needed, free, bound

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_kind ON outbox(kind, seq);
CREATE TABLE IF NOT EXISTS positions (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

# --- schema migrations of the outbox file (PRAGMA user_version; v0.1.0 files are at 0) ---
_MIGRATIONS: list[str] = [
    _SCHEMA,  # 1: the v0.1.0 tables (already there in a v0.1.0 file: every statement is IF NOT EXISTS)
]
"""SQL of each outbox schema step, in order; append new steps (user_version = its 1-based index)."""
OUTBOX_SCHEMA_VERSION = len(_MIGRATIONS)


def _migrate(db: sqlite3.Connection) -> None:
    """Run the steps newer than the file's ``user_version``, each with its version bump, atomically."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > OUTBOX_SCHEMA_VERSION:
        raise sqlite3.DatabaseError(f"outbox schema version {version} is newer than this agent knows "
                                    f"({OUTBOX_SCHEMA_VERSION}): upgrade the agent")
    for number, sql in enumerate(_MIGRATIONS[version:], start=version + 1):
        db.executescript(f"BEGIN IMMEDIATE;\n{sql}\nPRAGMA user_version = {number};\nCOMMIT;")
# --- end schema migrations ---


@dataclass(frozen=True)
class OutMessage:
    """A message to publish. ``kind`` is the channel name (telemetry, usage, logs, …)."""

    kind: str
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False


@dataclass(frozen=True)
class StoredMessage:
    """A message in the outbox, with its sequence number (send order)."""

    seq: int
    kind: str
    topic: str
    payload: bytes
    qos: int
    retain: bool


class Outbox:
    """Thread-safe SQLite outbox. Sizes in bytes.

    Raises :class:`sqlite3.Error` only for a broken or unwritable file.
    """

    def __init__(self, path: Path, max_bytes: int = 64 * 1024 * 1024) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        if os.name == "posix":  # it holds the device's unsent data
            ensure_private_database(path)
        self.path = path
        self.max_bytes = max_bytes
        self.dropped = 0
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        _migrate(self._db)
        self._bytes = self._db.execute("SELECT COALESCE(SUM(LENGTH(payload)), 0) FROM outbox").fetchone()[0]
        self._dropping = False

    def put(self, messages: Iterable[OutMessage], positions: Mapping[str, Any] | None = None) -> None:
        """Store messages and (optionally) collector positions in one transaction.

        ``positions`` maps a collector name to its JSON-serialisable position state.

        Raises:
            OutboxFull: the put holds messages that are never dropped (usage, logs) or positions,
                and they do not fit within the bound next to the kept messages already stored
                (telemetry does not count: it makes room). Nothing is stored.
        """
        now = now_ms()
        rows = [(m.kind, m.topic, m.payload, m.qos, int(m.retain), now) for m in messages]
        kept = sum(len(r[2] or b"") for r in rows if r[0] not in DROPPABLE)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if kept or positions:
                    free = int(self.max_bytes * KEPT_SHARE) - self._kept_bytes()
                    if kept > free:
                        raise OutboxFull(kept, free, self.max_bytes)
                self._db.executemany(
                    "INSERT INTO outbox(kind, topic, payload, qos, retain, created_ms) VALUES (?,?,?,?,?,?)", rows
                )
                for name, value in (positions or {}).items():
                    self._db.execute(
                        "INSERT INTO positions(name, value) VALUES (?, ?) "
                        "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                        (name, json.dumps(value, separators=(",", ":"))),
                    )
                self._bytes += sum(len(r[2]) for r in rows)
                self._enforce_bound()
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                self._bytes = self._db.execute("SELECT COALESCE(SUM(LENGTH(payload)), 0) FROM outbox").fetchone()[0]
                raise

    def _kept_bytes(self) -> int:
        marks = ",".join("?" * len(DROPPABLE))
        return self._db.execute(f"SELECT COALESCE(SUM(LENGTH(payload)), 0) FROM outbox WHERE kind NOT IN ({marks})",  # noqa: S608
                                DROPPABLE).fetchone()[0]

    def _enforce_bound(self) -> None:
        if self._bytes <= self.max_bytes:
            if self._dropping:
                log.info("outbox is below its bound again (%d bytes)", self._bytes)
            self._dropping = False
            return
        before = self._bytes
        dropped: dict[str, int] = {}
        for kind in DROPPABLE:
            while self._bytes > self.max_bytes:
                rows = self._db.execute(
                    "SELECT seq, LENGTH(payload) FROM outbox WHERE kind = ? ORDER BY seq LIMIT 256", (kind,)
                ).fetchall()
                if not rows:
                    break
                for seq, size in rows:
                    if self._bytes <= self.max_bytes:
                        break
                    self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
                    self._bytes -= size
                    dropped[kind] = dropped.get(kind, 0) + 1
        total = sum(dropped.values())
        self.dropped += total
        if total and not self._dropping:
            log.warning(
                "outbox is full (%d bytes > bound %d bytes): dropped the oldest messages (%s); usage and log "
                "records are kept; check the broker connection or raise outbox_max_bytes",
                before, self.max_bytes, ", ".join(f"{k}={v}" for k, v in dropped.items()),
            )
        self._dropping = True

    def pending(self, after_seq: int = 0, limit: int = 100) -> list[StoredMessage]:
        """Messages with ``seq > after_seq`` in send order, at most ``limit``."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, kind, topic, payload, qos, retain FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
                (after_seq, limit),
            ).fetchall()
        return [StoredMessage(r[0], r[1], r[2], bytes(r[3]), r[4], bool(r[5])) for r in rows]

    def ack(self, seqs: Iterable[int]) -> None:
        """Delete acknowledged messages."""
        seqs = list(seqs)
        if not seqs:
            return
        with self._lock:
            for seq in seqs:
                row = self._db.execute("DELETE FROM outbox WHERE seq = ? RETURNING LENGTH(payload)", (seq,)).fetchone()
                if row:
                    self._bytes -= row[0]

    def position(self, name: str) -> dict[str, Any]:
        """The stored position of collector ``name`` (``{}`` when none)."""
        with self._lock:
            row = self._db.execute("SELECT value FROM positions WHERE name = ?", (name,)).fetchone()
        return json.loads(row[0]) if row else {}

    def stats(self) -> dict[str, int]:
        """``{"messages": count, "bytes": payload bytes, "bound_bytes": the bound, "dropped": telemetry
        samples dropped since start, "oldest_ms": creation time (epoch ms) of the oldest message or 0}``."""
        with self._lock:
            count, oldest = self._db.execute("SELECT COUNT(*), COALESCE(MIN(created_ms), 0) FROM outbox").fetchone()
        return {"messages": count, "bytes": self._bytes, "bound_bytes": self.max_bytes, "dropped": self.dropped,
                "oldest_ms": oldest}

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

