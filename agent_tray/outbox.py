"""Persistent outbox: every QoS 1 message is stored here before it is sent.

A SQLite file in the agent's data dir (``outbox.sqlite``, WAL). A message leaves it when the
server confirmed it with a delivery receipt (:meth:`Outbox.confirm`), or, with a server or broker
that sends no receipts, when the broker acknowledged it (PUBACK, :meth:`Outbox.ack`). The same
database holds the collectors' read positions, so records and the position after them are
committed in one transaction: a crash between the two can neither lose nor repeat a record.

Receipts: the outbox has a random id (:attr:`Outbox.outbox_id`, 16 hex digits, made with the file:
a recreated outbox gets a new one) and numbers the messages of each kind 1, 2, 3, …
(:attr:`StoredMessage.chan_seq`); the publisher sends both with every message and the server
confirms what it stored per kind (see :mod:`agent_tray.receipts`).

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
from shared.private_files import ensure_private_database, ensure_private_dir

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

_RECEIPTS = """
ALTER TABLE outbox ADD COLUMN chan_seq INTEGER;
UPDATE outbox SET chan_seq = (SELECT COUNT(*) FROM outbox AS o WHERE o.kind = outbox.kind AND o.seq <= outbox.seq);
CREATE INDEX IF NOT EXISTS outbox_chan ON outbox(kind, chan_seq);
CREATE TABLE IF NOT EXISTS info (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
INSERT OR IGNORE INTO info(name, value) VALUES ('outbox_id', lower(hex(randomblob(8))));
INSERT OR IGNORE INTO info(name, value) SELECT 'seq:' || kind, MAX(chan_seq) FROM outbox GROUP BY kind;
"""

# --- schema migrations of the outbox file (PRAGMA user_version; v0.1.0 files are at 0) ---
_MIGRATIONS: list[str] = [
    _SCHEMA,  # 1: the v0.1.0 tables (already there in a v0.1.0 file: every statement is IF NOT EXISTS)
    _RECEIPTS,  # 2: outbox id and per-kind sequence numbers (receipts); ``info`` holds the id and the last numbers
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
    """A message in the outbox: ``seq`` orders all messages (send order), ``chan_seq`` numbers the
    messages of its ``kind`` (1, 2, 3, … per outbox id; what receipts confirm)."""

    seq: int
    kind: str
    topic: str
    payload: bytes
    qos: int
    retain: bool
    chan_seq: int = 0


class Outbox:
    """Thread-safe SQLite outbox. Sizes in bytes.

    Raises :class:`sqlite3.Error` only for a broken or unwritable file.
    """

    def __init__(self, path: Path, max_bytes: int = 64 * 1024 * 1024) -> None:
        ensure_private_dir(path.parent)  # 0700: the agent's data dir
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
        info = dict(self._db.execute("SELECT name, value FROM info").fetchall())
        self.outbox_id: str = info["outbox_id"]
        """This outbox's id (16 hex digits, random; a new file gets a new one)."""
        self._last_seq = {k[4:]: int(v) for k, v in info.items() if k.startswith("seq:")}

    def last_seq(self, kind: str) -> int:
        """The ``chan_seq`` of the newest message of ``kind`` ever stored (0: none yet)."""
        with self._lock:
            return self._last_seq.get(kind, 0)

    def info(self, name: str) -> str | None:
        """A small named value kept in the outbox file (None when unset)."""
        with self._lock:
            row = self._db.execute("SELECT value FROM info WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    def set_info(self, name: str, value: str) -> None:
        """Keep ``value`` under ``name`` in the outbox file (names starting ``seq:`` or ``outbox_id`` are its own)."""
        if name.startswith("seq:") or name == "outbox_id":
            raise ValueError(f"{name!r} is reserved")
        with self._lock:
            self._db.execute("INSERT INTO info(name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET "
                             "value = excluded.value", (name, value))

    def put(self, messages: Iterable[OutMessage], positions: Mapping[str, Any] | None = None) -> None:
        """Store messages and (optionally) collector positions in one transaction.

        ``positions`` maps a collector name to its JSON-serialisable position state.

        Raises:
            OutboxFull: the put holds messages that are never dropped (usage, logs) or positions,
                and they do not fit within the bound next to the kept messages already stored
                (telemetry does not count: it makes room). Nothing is stored.
        """
        now = now_ms()
        messages = list(messages)
        kept = sum(len(m.payload or b"") for m in messages if m.kind not in DROPPABLE)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            last = dict(self._last_seq)
            try:
                if kept or positions:
                    free = int(self.max_bytes * KEPT_SHARE) - self._kept_bytes()
                    if kept > free:
                        raise OutboxFull(kept, free, self.max_bytes)
                rows = []
                for m in messages:
                    last[m.kind] = last.get(m.kind, 0) + 1
                    rows.append((m.kind, m.topic, m.payload, m.qos, int(m.retain), now, last[m.kind]))
                self._db.executemany("INSERT INTO outbox(kind, topic, payload, qos, retain, created_ms, chan_seq) "
                                     "VALUES (?,?,?,?,?,?,?)", rows)
                self._db.executemany("INSERT INTO info(name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET "
                                     "value = excluded.value",
                                     [(f"seq:{k}", str(v)) for k, v in last.items() if v != self._last_seq.get(k)])
                for name, value in (positions or {}).items():
                    self._db.execute(
                        "INSERT INTO positions(name, value) VALUES (?, ?) "
                        "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                        (name, json.dumps(value, separators=(",", ":"))),
                    )
                self._bytes += sum(len(r[2]) for r in rows)
                self._enforce_bound()
                self._db.execute("COMMIT")
                self._last_seq = last
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
                "SELECT seq, kind, topic, payload, qos, retain, chan_seq FROM outbox WHERE seq > ? ORDER BY seq "
                "LIMIT ?", (after_seq, limit),
            ).fetchall()
        return [StoredMessage(r[0], r[1], r[2], bytes(r[3]), r[4], bool(r[5]), r[6]) for r in rows]

    def floors(self) -> dict[str, int]:
        """``{kind: lowest chan_seq of that kind still held}`` for every kind with messages (one
        query): what the publisher sends as ``seq_floor``."""
        with self._lock:
            return dict(self._db.execute("SELECT kind, MIN(chan_seq) FROM outbox GROUP BY kind").fetchall())

    def confirm(self, kind: str, upto: int, ranges: Iterable[tuple[int, int]] = ()) -> int:
        """Delete the messages of ``kind`` whose ``chan_seq`` is at most ``upto`` or inside one of the
        closed ``ranges`` (what a receipt confirmed). Returns how many were deleted."""
        spans = [(0, upto), *ranges]
        deleted = 0
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for lo, hi in spans:
                    if hi < lo or hi <= 0:
                        continue
                    n, size = self._db.execute(
                        "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM outbox WHERE kind = ? AND chan_seq "
                        "BETWEEN ? AND ?", (kind, lo, hi)).fetchone()
                    if n:
                        self._db.execute("DELETE FROM outbox WHERE kind = ? AND chan_seq BETWEEN ? AND ?",
                                         (kind, lo, hi))
                        deleted += n
                        self._bytes -= size
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                self._bytes = self._db.execute("SELECT COALESCE(SUM(LENGTH(payload)), 0) FROM outbox").fetchone()[0]
                raise
        return deleted

    def exists(self, seqs: Iterable[int]) -> set[int]:
        """Which of ``seqs`` are still in the outbox."""
        seqs = list(seqs)
        found: set[int] = set()
        with self._lock:
            for i in range(0, len(seqs), 500):
                part = seqs[i:i + 500]
                marks = ",".join("?" * len(part))
                found.update(r[0] for r in self._db.execute(
                    f"SELECT seq FROM outbox WHERE seq IN ({marks})", part).fetchall())  # noqa: S608 - placeholders only
        return found

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

