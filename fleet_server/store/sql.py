"""SQL helpers the store's queries share, written once for SQLite and PostgreSQL."""

from __future__ import annotations

from peewee import Database, Expression, SqliteDatabase, fn

from fleet_server.store.models import db


def total(expr: object) -> Expression:
    """``SUM(expr)`` that cannot overflow: SQLite's ``TOTAL()`` (a float, exact up to 2^53, never an
    "integer overflow" error however large the stored values), PostgreSQL's ``SUM`` (exact numeric).
    Callers convert the result (``int(v or 0)``)."""
    return fn.TOTAL(expr) if isinstance(db.obj, SqliteDatabase) else fn.SUM(expr)


def write_transaction(database: Database) -> object:
    """A transaction (context manager) that takes SQLite's write lock at its start (``BEGIN
    IMMEDIATE``), so another writer's commits are waited for (``busy_timeout``) instead of failing a
    read-then-write transaction at once with "database is locked". PostgreSQL: a plain transaction."""
    return database.atomic(lock_type="IMMEDIATE") if isinstance(database, SqliteDatabase) else database.atomic()
