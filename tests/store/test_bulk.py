"""The ingest hot path's bulk inserts on SQLite and PostgreSQL: duplicates skipped by
``insert_ignore``, refused by ``insert_new`` with peewee's IntegrityError; more rows than a chunk."""

from __future__ import annotations

import pytest
from peewee import IntegrityError

from fleet_server.store import bulk
from fleet_server.store.models import StatusEvent, UsageHourly


def test_insert_ignore_skips_existing_keys_and_insert_new_refuses_them(store):
    cols = bulk.columns(UsageHourly)  # device, hour_ms and the sums

    def row(hour: int, records: int) -> tuple:
        values = {"device": "dev", "hour_ms": hour, "records": records, "cost_usd": 0.5}
        return tuple(values.get(c, 1) for c in cols)

    rows = [row(h, 1) for h in range(bulk.CHUNK * 2 + 7)]  # three chunks
    with store.atomic():
        bulk.insert_ignore(UsageHourly, cols, rows)
    with store.atomic():
        bulk.insert_ignore(UsageHourly, cols, [row(0, 5), row(10_000, 1)])
    assert UsageHourly.select().count() == len(rows) + 1
    assert UsageHourly.get(UsageHourly.hour_ms == 0).records == 1  # the first one kept
    with pytest.raises(IntegrityError), store.atomic():
        bulk.insert_new(UsageHourly, cols, [row(1, 1)])
    with store.atomic():
        bulk.insert_new(StatusEvent, ("device", "ts", "state", "reason"), [("dev", 1, "online", None)])
    assert StatusEvent.get().reason is None
