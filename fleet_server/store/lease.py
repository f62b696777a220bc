"""A lease in the database: at most one server process holds it at a time, and another takes it
over once the holder stops renewing it (crashed, lost its database connection, stopped).

Times are the database's clock (:func:`database_now_ms`: PostgreSQL's ``clock_timestamp()``), so
processes on hosts whose clocks differ agree on when a lease expired. Each attempt is one upsert
that succeeds only for the holder or after expiry, then reads who holds it.
"""

from __future__ import annotations

import time

from peewee import EXCLUDED, Case, Database, SqliteDatabase

from fleet_server.store.locks import write_transaction
from fleet_server.store.models import JobLease


def database_now_ms(database: Database) -> int:
    """The database's clock, epoch ms (SQLite: this host's)."""
    if isinstance(database, SqliteDatabase):
        return int(time.time() * 1000)
    return int(database.execute_sql("SELECT (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::bigint").fetchone()[0])


def try_acquire(database: Database, name: str, holder: str, lease_ms: int) -> bool:
    """Take or renew lease ``name`` for ``holder`` for ``lease_ms`` ms; True when ``holder`` holds it now.

    Raises peewee's errors when the database is unavailable (the caller must then assume it lost
    the lease once its last successful renewal is ``lease_ms`` old).
    """
    with write_transaction(database):
        now = database_now_ms(database)
        JobLease.insert(name=name, holder=holder, expires_ms=now + lease_ms, acquired_ms=now).on_conflict(
            conflict_target=[JobLease.name],
            update={JobLease.holder: EXCLUDED.holder, JobLease.expires_ms: EXCLUDED.expires_ms,
                    JobLease.acquired_ms: Case(None, [(JobLease.holder == EXCLUDED.holder, JobLease.acquired_ms)],
                                               EXCLUDED.acquired_ms)},
            where=(JobLease.holder == EXCLUDED.holder) | (JobLease.expires_ms < now),
        ).execute()
        current = JobLease.select(JobLease.holder).where(JobLease.name == name).scalar()
    return current == holder


def release(database: Database, name: str, holder: str) -> None:
    """Give lease ``name`` up at once (when ``holder`` holds it), so another process need not wait."""
    with write_transaction(database):
        JobLease.update(expires_ms=0).where((JobLease.name == name) & (JobLease.holder == holder)).execute()


def holder_of(name: str) -> tuple[str, int] | None:
    """``(holder, expires_ms)`` of lease ``name``, or None when nobody ever took it."""
    row = JobLease.select(JobLease.holder, JobLease.expires_ms).where(JobLease.name == name).tuples().first()
    return None if row is None else (row[0], int(row[1]))
