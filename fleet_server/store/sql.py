"""SQL helpers the store's queries share, written once for SQLite and PostgreSQL."""

from __future__ import annotations

from peewee import Expression, SqliteDatabase, fn

from fleet_server.store.models import db


def total(expr: object) -> Expression:
    """``SUM(expr)`` that cannot overflow: SQLite's ``TOTAL()`` (a float, exact up to 2^53, never an
    "integer overflow" error however large the stored values), PostgreSQL's ``SUM`` (exact numeric).
    Callers convert the result (``int(v or 0)``)."""
    return fn.TOTAL(expr) if isinstance(db.obj, SqliteDatabase) else fn.SUM(expr)


class QueryError(ValueError):
    """A bad query parameter (unknown group, time zone or window); the message names it."""
