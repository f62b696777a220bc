"""Opening the database: SQLite (WAL) in the data dir by default, PostgreSQL by URL."""

from __future__ import annotations

import logging
from pathlib import Path

from peewee import Database, SqliteDatabase
from playhouse.db_url import connect

from fleet_server.auth.lockout import LOCKOUT_MODELS
from fleet_server.store.models import ALL_MODELS, db

log = logging.getLogger("clawfleet.store")

SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "synchronous": "normal",
    "busy_timeout": 10_000,  # ms: the CLI and the server may write at the same time
    "foreign_keys": 1,
    "cache_size": -32_000,  # KiB
}


def open_database(data_dir: Path, url: str | None = None) -> Database:
    """Bind the models to a database and create missing tables.

    Args:
        data_dir: server data dir; the default SQLite file is ``<data_dir>/clawfleet.sqlite``.
        url: optional database URL (``postgresql://user:pass@host/db`` or ``sqlite:///path``).

    Returns:
        The connected peewee database (also bound to :data:`fleet_server.store.models.db`).
    """
    if url:
        database = connect(url)
        if isinstance(database, SqliteDatabase):
            for k, v in SQLITE_PRAGMAS.items():
                database.pragma(k, v, permanent=True)
    else:
        data_dir.mkdir(parents=True, exist_ok=True)
        database = SqliteDatabase(str(data_dir / "clawfleet.sqlite"), pragmas=SQLITE_PRAGMAS)
    db.initialize(database)
    database.connect(reuse_if_open=True)
    database.create_tables([*ALL_MODELS, *LOCKOUT_MODELS], safe=True)
    return database
