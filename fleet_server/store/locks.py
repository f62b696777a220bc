"""SQLite's single write lock, shared fairly.

Every write transaction takes the lock at its start (``BEGIN IMMEDIATE``; the SQLite database is
opened with that default lock type, see :mod:`fleet_server.store.db`), so a writer that finds the
lock taken waits up to the busy timeout instead of failing a read-then-write transaction with
"database is locked". Long background passes (rollups, retention) hold the lock for at most
:data:`HOLD_S` at a time and then leave it free for :data:`YIELD_S`: SQLite's busy handler polls
a waiting connection at most every 100 ms, so a shorter gap between back-to-back transactions
would starve ingest, logins and the CLI.
"""

from __future__ import annotations

import time

from peewee import Database, SqliteDatabase

HOLD_S = 0.1
"""How long a background pass keeps the write lock before giving others a turn, seconds."""
YIELD_S = 0.15
"""How long it then leaves the lock free, seconds (more than the busy handler's longest sleep)."""


def write_transaction(database: Database) -> object:
    """A transaction that takes SQLite's write lock at its start (``BEGIN IMMEDIATE``); a plain
    transaction on PostgreSQL."""
    return database.atomic(lock_type="IMMEDIATE") if isinstance(database, SqliteDatabase) else database.atomic()


class TakeTurns:
    """Paces a background pass that writes in many short transactions: call :meth:`turn` after
    each one; once :data:`HOLD_S` of work has passed since the last pause it sleeps
    :data:`YIELD_S` so waiting writers get the lock. Sleeps only on SQLite."""

    def __init__(self, database: Database) -> None:
        self._sqlite = isinstance(database, SqliteDatabase)
        self._since = time.monotonic()

    def turn(self) -> None:
        """Pause if this pass has written for :data:`HOLD_S` since its last pause."""
        if self._sqlite and time.monotonic() - self._since >= HOLD_S:
            time.sleep(YIELD_S)
            self._since = time.monotonic()
