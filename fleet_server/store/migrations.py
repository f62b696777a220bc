"""Schema migrations of the server database: a version table and an ordered list of steps.

How it works (run by :func:`fleet_server.store.db.open_database` on every start):

- A new, empty database gets every table from the current models and is stamped with the
  newest version (its tables already have every column).
- A database without :class:`SchemaVersion` but with a ``device`` table was written by v0.1.0:
  it is at version 1, and every later step runs.
- Otherwise the steps newer than the highest applied version run, oldest first, each in its own
  transaction together with its version row.
- A database newer than this code is refused with :class:`SchemaTooNew`.

A new table (a new model in ``ALL_MODELS``, or in ``ALERT_MODELS`` of
:mod:`fleet_server.store.alert_models`) needs no step: missing tables are created after the
steps ran. Adding a migration: append ``Migration(<next number>, "what it does", function)`` to
:data:`MIGRATIONS`. The function gets a :class:`playhouse.migrate.SchemaMigrator` and the database;
use :func:`add_column` (idempotent) for new columns, write the rebuild of a table whose key changes
by hand (create new, copy, drop, rename), and never import a model's *current* definition to
create a table whose later migrations alter it (write the DDL the step needs).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from peewee import BigIntegerField, BooleanField, CharField, Database, Field, FloatField, SqliteDatabase
from playhouse.migrate import SchemaMigrator, migrate

from fleet_server.store.alert_models import ALERT_MODELS
from fleet_server.store.locks import write_transaction
from fleet_server.store.models import (
    ALL_MODELS,
    RollupMark,
    RollupWatermark,
    SampleRollup1h,
    SampleRollup5m,
    SchemaVersion,
)
from fleet_server.store.upgrade import scope_record_ids
from shared.clock import now_ms

log = logging.getLogger("clawfleet.store.migrations")


class SchemaTooNew(RuntimeError):
    """The database was upgraded by a newer ClawFleet than this one."""


@dataclass(frozen=True)
class Migration:
    """One schema step: ``version`` (1, 2, …), a short ``name``, and ``apply(migrator, database)``."""

    version: int
    name: str
    apply: Callable[[SchemaMigrator, Database], None]


def add_column(migrator: SchemaMigrator, database: Database, table: str, column: str, field: Field) -> None:
    """Add ``column`` to ``table`` unless it exists (a nullable field or one with a default)."""
    if column not in {c.name for c in database.get_columns(table)}:
        migrate(migrator.add_column(table, column, field))


def _baseline(_m: SchemaMigrator, _db: Database) -> None:
    """v0.1.0: devices, samples, status events, usage, logs, rejects, users, audit."""


def _history_tables(_m: SchemaMigrator, db: Database) -> None:
    # new tables only; later steps altering them must use add_column & co.
    db.create_tables([SampleRollup5m, SampleRollup1h, RollupWatermark], safe=True)


def _tokens_and_logs_columns(m: SchemaMigrator, db: Database) -> None:
    # failed turns and rule prices on usage records, unpriced tokens per hour, agent/session of log records
    add_column(m, db, "usage_record", "failed", BooleanField(default=False))
    add_column(m, db, "usage_record", "priced_usd", FloatField(null=True))
    add_column(m, db, "usage_hourly", "unpriced_tokens", BigIntegerField(default=0))
    add_column(m, db, "log_record", "agent_id", CharField(max_length=200, null=True))
    add_column(m, db, "log_record", "session_id", CharField(max_length=200, null=True))


def _usage_rollup_totals(m: SchemaMigrator, db: Database) -> None:
    # failed turns per hour (counted from the records still kept), an index to read one hour of every
    # device, the all-time sums per device (the hourly rollup summed once); per-user dashboard settings
    add_column(m, db, "usage_hourly", "failed_turns", BigIntegerField(default=0))
    add_column(m, db, "user", "time_zone", CharField(max_length=64, null=True))
    add_column(m, db, "user", "dark_mode", BooleanField(null=True))
    failed = db.execute_sql('SELECT "device", ("ts" / 3600000) * 3600000 AS h, COUNT(*) FROM "usage_record" '
                            'WHERE "failed" GROUP BY "device", h').fetchall()
    p = db.param
    update = f'UPDATE "usage_hourly" SET "failed_turns" = {p} WHERE "device" = {p} AND "hour_ms" = {p}'  # noqa: S608
    for device, h, n in failed:
        db.execute_sql(update, (int(n), device, int(h)))
    if "usage_hourly_hour_ms" not in {i.name for i in db.get_indexes("usage_hourly")}:
        migrate(m.add_index("usage_hourly", ("hour_ms",), False))
    db.execute_sql(_USAGE_TOTAL_DDL)
    agg = "TOTAL" if isinstance(db, SqliteDatabase) else "SUM"  # TOTAL: no integer overflow on SQLite
    names = ", ".join(f'"{c}"' for c in _USAGE_SUM_COLUMNS)
    sums = ", ".join(f'{agg}("{c}")' for c in _USAGE_SUM_COLUMNS)
    marks = ", ".join(p for _ in range(len(_USAGE_SUM_COLUMNS) + 1))
    insert = f'INSERT INTO "usage_total" ("device", {names}) VALUES ({marks})'  # noqa: S608 - constant names
    select = f'SELECT "device", {sums} FROM "usage_hourly" GROUP BY "device"'  # noqa: S608 - constant names
    for device, *values in db.execute_sql(select).fetchall():
        db.execute_sql(insert, (device, *(float(v or 0) if c == "cost_usd" else min(int(v or 0), 2**62)
                                          for c, v in zip(_USAGE_SUM_COLUMNS, values, strict=True))))


_USAGE_SUM_COLUMNS = ("records", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
                      "total_tokens", "failed_turns", "cost_usd", "priced_records", "unpriced_tokens")
_USAGE_TOTAL_DDL = """CREATE TABLE IF NOT EXISTS "usage_total" ("device" VARCHAR(63) NOT NULL PRIMARY KEY,
 "records" INTEGER NOT NULL DEFAULT 0, "input_tokens" BIGINT NOT NULL DEFAULT 0,
 "output_tokens" BIGINT NOT NULL DEFAULT 0, "cache_read_tokens" BIGINT NOT NULL DEFAULT 0,
 "cache_write_tokens" BIGINT NOT NULL DEFAULT 0, "total_tokens" BIGINT NOT NULL DEFAULT 0,
 "failed_turns" BIGINT NOT NULL DEFAULT 0, "cost_usd" REAL NOT NULL DEFAULT 0, "priced_records" INTEGER NOT NULL
 DEFAULT 0, "unpriced_tokens" BIGINT NOT NULL DEFAULT 0)"""
"""The all-time usage table as schema step 5 made it (later steps alter it with add_column)."""


def add_index(database: Database, table: str, column: str) -> None:
    """Create the index ``<table>_<column>`` on one column unless it exists (peewee's name for an
    ``index=True`` field, so a new database and an upgraded one have the same index)."""
    name = f"{table}_{column}"
    if name not in {i.name for i in database.get_indexes(table)}:
        database.execute_sql(f'CREATE INDEX "{name}" ON "{table}" ("{column}")')


def _receive_time_rollups(m: SchemaMigrator, db: Database) -> None:
    # samples get the server's receive time; the rollup job follows it instead of a per-device ts watermark.
    # Rows the old watermarks cover stay NULL (rolled up, aged by ts); the others are stamped now, after the
    # new watermark, so the next pass rolls them up. Then indexes for set-based retention.
    add_column(m, db, "sample", "received_ms", BigIntegerField(null=True))
    now = now_ms()
    db.execute_sql(f'UPDATE "sample" SET "received_ms" = {db.param} WHERE NOT EXISTS (SELECT 1 FROM '  # noqa: S608
                   '"rollup_watermark" w WHERE w."device" = "sample"."device" AND "sample"."ts" <= w."sample_ts")',
                   (now,))
    db.create_tables([RollupMark], safe=True)
    RollupMark.delete().execute()
    RollupMark.insert(name="samples", received_ms=now - 1).execute()
    db.execute_sql('DROP TABLE "rollup_watermark"')
    for table, column in (("sample", "received_ms"), ("sample_rollup5m", "bucket_ms"),
                          ("sample_rollup1h", "bucket_ms"), ("status_event", "ts"), ("usage_hourly", "hour_ms")):
        add_index(db, table, column)


def _alert_tables(_m: SchemaMigrator, db: Database) -> None:
    # new tables only; later steps altering them must use add_column & co.
    db.create_tables(ALERT_MODELS, safe=True)


def _sessions_columns(m: SchemaMigrator, db: Database) -> None:
    # session key and run id of log records; the session, run, tool call and version tables are new (created below)
    add_column(m, db, "log_record", "session_key", CharField(max_length=200, null=True))
    add_column(m, db, "log_record", "run_id", CharField(max_length=200, null=True))


MIGRATIONS: list[Migration] = [
    Migration(1, "v0.1.0 schema", _baseline),
    Migration(2, "sample rollup tiers (5 min, 1 h) and rollup watermarks", _history_tables),
    Migration(3, "usage and log record ids unique per device", lambda _m, db: scope_record_ids(db)),
    Migration(4, "failed turns, rule prices, unpriced tokens; agent and session of log records",
              _tokens_and_logs_columns),
    Migration(5, "failed turns per hour, all-time usage sums per device, hourly usage index; users' time zone "
                 "and dark mode", _usage_rollup_totals),
    Migration(6, "samples carry the server's receive time; rollups follow it; indexes for retention by time",
              _receive_time_rollups),
    Migration(7, "alerts: rules, channels, incidents, notification queue and log, silences", _alert_tables),
    Migration(8, "sessions, runs, tool calls and version changes; session key and run id of log records",
              _sessions_columns),
]
"""Every schema step, in order. Append new ones at the end with the next version number."""


def latest_version() -> int:
    """The version this code writes."""
    return MIGRATIONS[-1].version


def current_version(database: Database) -> int | None:
    """The database's applied version; 1 for a v0.1.0 database; None for an empty one."""
    tables = set(database.get_tables())
    if SchemaVersion._meta.table_name in tables:
        row = SchemaVersion.select(SchemaVersion.version).order_by(SchemaVersion.version.desc()).first()
        if row is not None:
            return row.version
    return 1 if "device" in tables else None


def upgrade(database: Database) -> list[int]:
    """Bring the database to :func:`latest_version`; returns the versions applied now.

    Raises:
        SchemaTooNew: the database has a version this code does not know.
    """
    now = now_ms()
    with write_transaction(database):
        version = current_version(database)
        if version is None:
            database.create_tables(ALL_MODELS + ALERT_MODELS, safe=True)
            SchemaVersion.insert_many([{"version": m.version, "name": m.name, "applied_ms": now}
                                       for m in MIGRATIONS]).on_conflict_ignore().execute()
            log.info("created a new database at schema version %d", latest_version())
            return [m.version for m in MIGRATIONS]
        if version > latest_version():
            raise SchemaTooNew(f"the database is at schema version {version}, newer than this ClawFleet knows "
                               f"({latest_version()}): upgrade ClawFleet, or restore a backup made before the "
                               "upgrade")
        database.create_tables([SchemaVersion], safe=True)
        if not SchemaVersion.select().exists():
            SchemaVersion.create(version=1, name=MIGRATIONS[0].name, applied_ms=now)
    migrator = SchemaMigrator.from_database(database)
    applied = []
    for m in MIGRATIONS:
        if m.version <= version:
            continue
        with write_transaction(database):
            m.apply(migrator, database)
            SchemaVersion.create(version=m.version, name=m.name, applied_ms=now_ms())
        log.info("database schema upgraded to version %d: %s", m.version, m.name)
        applied.append(m.version)
    database.create_tables(ALL_MODELS + ALERT_MODELS, safe=True)  # new models need no step; new columns do
    return applied
