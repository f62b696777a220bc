"""The clock that stamps ``Sample.received_ms`` and bounds the rollup job, so that a rollup pass
never moves its watermark past a sample that is still being written.

The rule both sides keep: a writer stamps its samples only once it holds the lock that a rollup
pass waits for, and the rollup pass reads the clock only once it holds that lock. Then every
sample stamped at or below the bound the pass read is committed before the pass reads rows, and
every sample stamped later carries a larger stamp.

- SQLite: the lock is SQLite's write lock, taken by every write transaction at ``BEGIN``
  (:func:`fleet_server.store.locks.write_transaction`); the clock is the host's.
- PostgreSQL: ingest takes ``ROW EXCLUSIVE`` on the samples table before it stamps (the lock any
  ``INSERT`` takes; writers do not wait for each other); the rollup pass takes ``SHARE`` on it for
  an instant, which waits for open ingest transactions. The clock is the database server's
  (``clock_timestamp()``), one clock for every ingest worker on every host.

Times are epoch milliseconds UTC. Known limit: a clock stepped back (not slewed, as NTP does)
stamps samples at or below a watermark already passed; those stay raw and are not rolled up.
"""

from __future__ import annotations

import time

from peewee import Database, SqliteDatabase

from fleet_server.store.locks import write_transaction
from fleet_server.store.models import Sample, db

_PG_NOW = "SELECT (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::bigint"


def _table() -> str:
    return Sample._meta.table_name


def stamp_for_write() -> int:
    """The ``received_ms`` for the samples the caller's open write transaction is about to insert.

    Must run inside that transaction (ingest's batch), before the INSERT. On PostgreSQL it first
    takes ``ROW EXCLUSIVE`` on the samples table (see the module docstring).
    """
    database = db.obj
    if isinstance(database, SqliteDatabase):
        return int(time.time() * 1000)
    database.execute_sql(f'LOCK TABLE "{_table()}" IN ROW EXCLUSIVE MODE')
    return int(database.execute_sql(_PG_NOW).fetchone()[0])


def settled_bound(database: Database) -> int:
    """The newest ``received_ms`` a rollup pass may read up to: every sample stamped at or below it
    is committed, every sample stamped from now on is stamped above it. Opens (and commits) its own
    short transaction: on SQLite it waits for the write lock, on PostgreSQL for ingest
    transactions that have stamped samples."""
    with write_transaction(database):
        if isinstance(database, SqliteDatabase):
            bound = int(time.time() * 1000)
        else:
            database.execute_sql(f'LOCK TABLE "{_table()}" IN SHARE MODE')
            bound = int(database.execute_sql(_PG_NOW).fetchone()[0])
        time.sleep(0.002)  # still holding the lock: whatever is stamped after it is released is > bound
    return bound
