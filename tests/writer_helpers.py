"""A database for batch-writer tests: a real SQLite file with devices ``a`` and ``b`` enrolled and a
trigger that refuses usage records of the model ``poison`` (a record the database will never take).

Import as ``from writer_helpers import writer_database`` (``tests/`` is on ``sys.path``).
"""

from __future__ import annotations

from pathlib import Path

from peewee import Database

from fleet_server.store.db import open_database
from fleet_server.store.models import Device


def writer_database(tmp_path: Path) -> Database:
    """Open the database in ``tmp_path`` with devices ``a`` and ``b`` and the poison trigger."""
    database = open_database(tmp_path)
    for d in ("a", "b"):
        Device.create(id=d, name=d, key_hash="x", key_hint="abcd", created_ms=1)
    database.execute_sql("CREATE TRIGGER refuse_poison BEFORE INSERT ON usage_record WHEN NEW.model = 'poison' "
                         "BEGIN SELECT RAISE(ABORT, 'poison model refused'); END")
    return database
