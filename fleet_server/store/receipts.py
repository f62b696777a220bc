"""Receipt marks in the database (:class:`~fleet_server.store.models.ReceiptMark`): one row per
device saying what ingest has committed of its outbox. Read and written inside the writer's batch
transaction, so a mark never runs ahead of the data it confirms. On PostgreSQL the rows are first
made to exist (an empty placeholder, ``ON CONFLICT DO NOTHING``) and then read ``FOR UPDATE``, so two
ingest workers storing messages of the same device take turns, even for its first mark."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from fleet_server.store import bulk
from fleet_server.store.bulk import CHUNK
from fleet_server.store.models import ReceiptMark

MarkRow = tuple[str, str, str | None, str]
"""``(device, outbox, prev_outbox, channels JSON)``: one stored mark."""


def load_marks(device_ids: Iterable[str], now_ms: int = 0) -> dict[str, MarkRow]:
    """The stored marks of ``device_ids`` (devices without one are left out; on PostgreSQL an empty
    placeholder row, outbox ``""``, is created and returned for them). Call inside the transaction
    that will save them. Plain SQL (peewee would build the ``IN`` list anew for every batch)."""
    ids = sorted(set(device_ids))  # one lock order for every worker (PostgreSQL)
    out: dict[str, MarkRow] = {}
    sqlite = bulk.is_sqlite()
    for i in range(0, len(ids), CHUNK):
        part = ids[i:i + CHUNK]
        if not sqlite:
            bulk.executemany('INSERT INTO "receipt_mark" ("device", "outbox", "prev_outbox", "channels", "updated_ms") '
                             "VALUES (?, '', NULL, '{}', ?) ON CONFLICT DO NOTHING", [(d, now_ms) for d in part])
        marks = ",".join("?" * len(part))
        sql = (f'SELECT "device", "outbox", "prev_outbox", "channels" FROM "receipt_mark" WHERE "device" IN ({marks})'  # noqa: S608 - placeholders only
               + ("" if sqlite else " FOR UPDATE"))
        out.update((row[0], tuple(row)) for row in bulk.query(sql, part))
    return out


def save_marks(rows: Sequence[MarkRow], now_ms: int) -> None:
    """Insert or replace the marks of ``rows`` (inside the caller's transaction)."""
    if not rows:
        return
    if bulk.is_sqlite():
        bulk.executemany('INSERT INTO "receipt_mark" ("device", "outbox", "prev_outbox", "channels", "updated_ms") '
                         'VALUES (?, ?, ?, ?, ?) ON CONFLICT ("device") DO UPDATE SET "outbox" = excluded."outbox", '
                         '"prev_outbox" = excluded."prev_outbox", "channels" = excluded."channels", '
                         '"updated_ms" = excluded."updated_ms"', [(*r, now_ms) for r in rows])
        return
    m = ReceiptMark
    for i in range(0, len(rows), CHUNK):
        m.insert_many([{"device": d, "outbox": o, "prev_outbox": p, "channels": c, "updated_ms": now_ms}
                       for d, o, p, c in rows[i:i + CHUNK]]).on_conflict(
            conflict_target=[m.device], preserve=[m.outbox, m.prev_outbox, m.channels, m.updated_ms]).execute()
