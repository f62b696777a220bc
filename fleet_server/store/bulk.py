"""Bulk writes for ingest's hot path: one statement, built once, executed for many rows.

peewee builds the SQL of every row of an ``insert_many`` and of every ``update`` anew; at
thousands of messages per second that SQL building was most of the writer's time. Here the
statement text is made once per (database, table, columns) and handed to the DB-API's
``executemany`` with plain tuples (SQLite prepares it once and steps it per row). On PostgreSQL
inserts go as multi-row ``INSERT … VALUES`` of :data:`CHUNK` rows per round trip, built by
psycopg2's ``execute_values`` from the same once-made statement (peewee building that SQL per row
was ~0.18 ms per sample; psycopg2's ``executemany`` would send one statement per row).

Errors come out as peewee's exceptions (``OperationalError``, ``IntegrityError``…), like any
peewee query, so the writer tells "database unavailable" from "bad data" the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from peewee import Database, Model, SqliteDatabase
from peewee import __exception_wrapper__ as _wrap_errors

from fleet_server.store.models import db

CHUNK = 200
"""Rows per multi-row INSERT / per ``IN (…)`` list (well under SQLite's variable limit)."""


def executemany(sql: str, rows: Sequence[Sequence[object]]) -> None:
    """Run ``sql`` once per row of ``rows`` on the models' database connection (inside the caller's
    transaction when there is one). ``sql`` is written with ``?`` placeholders and ``"…"``-quoted
    names; it is converted once for the bound database (PostgreSQL: ``%s``, and :data:`CHUNK`
    statements per round trip with psycopg2's ``execute_batch``)."""
    if not rows:
        return
    if is_sqlite():
        with _wrap_errors:
            db.obj.cursor().executemany(sql, rows)
        return
    from psycopg2.extras import execute_batch  # many statements per round trip (executemany: one per row)

    with _wrap_errors:
        execute_batch(db.obj.cursor(), _for_database(db.obj, sql), rows, page_size=CHUNK)


def query(sql: str, params: Sequence[object]) -> list[tuple]:
    """Run one SELECT (``?`` placeholders, as :func:`executemany`) on the models' database connection;
    returns its rows."""
    with _wrap_errors:
        cursor = db.obj.cursor()
        cursor.execute(_for_database(db.obj, sql), params)
        return cursor.fetchall()


def is_sqlite() -> bool:
    """True when the models are bound to SQLite (the bulk paths here use ``executemany`` there)."""
    return isinstance(db.obj, SqliteDatabase)


def columns(model: type[Model]) -> tuple[str, ...]:
    """Column names of ``model`` in declaration order (the order :func:`insert_ignore` takes values in)."""
    return tuple(f.column_name for f in model._meta.sorted_fields)


def insert_ignore(model: type[Model], cols: tuple[str, ...], rows: Sequence[Sequence[object]]) -> None:
    """INSERT ``rows`` (tuples of values in ``cols`` order) into ``model``'s table; a row whose
    primary key exists already is skipped (SQLite ``INSERT OR IGNORE``, PostgreSQL ``ON CONFLICT
    DO NOTHING``). Must run inside the caller's transaction."""
    if not rows:
        return
    if is_sqlite():
        executemany(_insert_sql(model, cols, True), rows)
        return
    _execute_values(_pg_insert_sql(model, cols, True), rows)


def insert_new(model: type[Model], cols: tuple[str, ...], rows: Sequence[Sequence[object]]) -> None:
    """INSERT ``rows`` that are known to be new (a duplicate key raises ``IntegrityError``)."""
    if not rows:
        return
    if is_sqlite():
        executemany(_insert_sql(model, cols, False), rows)
        return
    _execute_values(_pg_insert_sql(model, cols, False), rows)


def _execute_values(sql: str, rows: Sequence[Sequence[object]]) -> None:
    """psycopg2's ``execute_values``: ``sql`` has one ``VALUES %s``, filled with :data:`CHUNK` rows
    per statement (errors as peewee's exceptions)."""
    from psycopg2.extras import execute_values

    with _wrap_errors:
        execute_values(db.obj.cursor(), sql, rows, page_size=CHUNK)


@lru_cache(maxsize=64)
def _insert_sql(model: type[Model], cols: tuple[str, ...], ignore: bool) -> str:
    names = ", ".join(f'"{c}"' for c in cols)
    marks = ", ".join("?" for _ in cols)
    # model and column names come from the models, never from input
    return f'INSERT {"OR IGNORE " if ignore else ""}INTO "{model._meta.table_name}" ({names}) VALUES ({marks})'  # noqa: S608


@lru_cache(maxsize=64)
def _pg_insert_sql(model: type[Model], cols: tuple[str, ...], ignore: bool) -> str:
    names = ", ".join(f'"{c}"' for c in cols)
    # model and column names come from the models, never from input
    return f'INSERT INTO "{model._meta.table_name}" ({names}) VALUES %s{" ON CONFLICT DO NOTHING" if ignore else ""}'  # noqa: S608


@lru_cache(maxsize=64)
def _for_database(database: Database, sql: str) -> str:
    return sql if database.param == "?" else sql.replace("?", database.param)
