"""Schema changes of existing databases that this version's models need (fresh databases get
them from :mod:`fleet_server.store.models` directly). Each step is idempotent and standalone.
"""

from __future__ import annotations

import logging

from peewee import Database, PostgresqlDatabase

from fleet_server.store.models import LogRecord, UsageRecord

log = logging.getLogger("clawfleet.store")


def scope_record_ids(database: Database) -> list[str]:
    """Make usage and log record ids unique per device: primary key ``(device, id)`` instead of ``id``.

    Databases made before this change had ``id`` alone as the key, so one device could take
    another's record ids. SQLite cannot change a primary key in place: the table is rebuilt
    (rename, create, copy, drop) in one transaction; PostgreSQL swaps the constraint. Rows are
    kept as they are. Returns the names of the tables changed (empty when already done).
    """
    changed = []
    tables = set(database.get_tables())
    for model in (UsageRecord, LogRecord):
        table = model._meta.table_name
        if table not in tables:
            continue
        pk = [c.name for c in database.get_columns(table) if c.primary_key]
        if pk != ["id"]:
            continue
        with database.atomic():
            if isinstance(database, PostgresqlDatabase):
                database.execute_sql(f'ALTER TABLE "{table}" DROP CONSTRAINT "{table}_pkey", '
                                     'ADD PRIMARY KEY (device, id)')
            else:
                old = f"{table}_before_device_ids"
                database.execute_sql(f'ALTER TABLE "{table}" RENAME TO "{old}"')
                for index in database.get_indexes(old):
                    if not index.name.startswith("sqlite_autoindex"):
                        database.execute_sql(f'DROP INDEX "{index.name}"')
                database.create_tables([model])
                # columns a later step adds are not in the old table yet: those get the field's default
                present = {c.name for c in database.get_columns(old)}
                fields = model._meta.sorted_fields
                cols = ", ".join(f'"{f.column_name}"' for f in fields)
                values = ", ".join(f'"{f.column_name}"' if f.column_name in present else "?" for f in fields)
                defaults = [f.db_value(f.default() if callable(f.default) else f.default)
                            for f in fields if f.column_name not in present]
                database.execute_sql(f'INSERT INTO "{table}" ({cols}) SELECT {values} FROM "{old}"',  # noqa: S608 - names from the models
                                     defaults)
                database.execute_sql(f'DROP TABLE "{old}"')
        log.info("upgraded table %s: record ids are now unique per device", table)
        changed.append(table)
    return changed
