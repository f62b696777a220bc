"""Sample rollup tiers, kept incrementally from raw samples.

Tiers: raw :class:`Sample` rows, then :class:`SampleRollup5m` (5-minute buckets) and
:class:`SampleRollup1h` (1-hour buckets), each row holding the sample count ``n`` and the
average and maximum of every metric in :data:`ROLLUP_METRICS`. Buckets start at multiples of the
tier width in epoch ms UTC (so 1-hour buckets are UTC hours) of the sample's own ``ts``.

Incremental by the server's receive time: one watermark (:class:`RollupMark`) says every sample
with ``received_ms`` at or below it is in every tier. A pass reads the samples received after it
(the ``received_ms`` index), aggregates them per device and bucket in SQL and merges the result
into the tier rows (count-weighted average, max of maxima): one ``INSERT … SELECT … ON CONFLICT DO
UPDATE`` per tier over all devices, no rows through Python. A sample that arrives late — a device
whose clock jumped, a resend after an outage — is received after the watermark, so it reaches its
(old) bucket too; a resent sample that was stored before is not inserted again (``(device, ts)``
is unique), so it is never counted twice. A bucket can be filled over several passes, and raw
retention never changes a rollup. The same SQL runs on SQLite (>= 3.24) and PostgreSQL.

How far a pass may read is :func:`fleet_server.store.history.receive_clock.settled_bound` (every
sample stamped up to it is committed). The range is cut into transactions of as many rows as fit
in :data:`fleet_server.store.locks.HOLD_S`, paced with :class:`fleet_server.store.locks.TakeTurns`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from peewee import EXCLUDED, Case, fn

from fleet_server.store.history.receive_clock import settled_bound
from fleet_server.store.locks import HOLD_S, TakeTurns, write_transaction
from fleet_server.store.models import (
    ROLLUP_METRICS,
    RollupMark,
    Sample,
    SampleRollup1h,
    SampleRollup5m,
)

log = logging.getLogger("clawfleet.store.rollups")

FIVE_MIN_MS = 300_000
HOUR_MS = 3_600_000


@dataclass(frozen=True)
class Tier:
    """A rollup tier: ``name`` (``"5m"``, ``"1h"``), its model and bucket width in ms."""

    name: str
    model: type
    width_ms: int


TIERS = (Tier("5m", SampleRollup5m, FIVE_MIN_MS), Tier("1h", SampleRollup1h, HOUR_MS))
"""Rollup tiers, finest first."""


MARK = "samples"
"""The :class:`RollupMark` row of the sample tiers."""
FIRST_CHUNK_ROWS = 2000
"""Raw samples in the first transaction of a pass; later ones are sized to take about
:data:`fleet_server.store.locks.HOLD_S` each."""
MAX_CHUNK_ROWS = 200_000


def watermark() -> int:
    """The newest ``received_ms`` already in every tier (-1 before the first pass)."""
    value = RollupMark.select(RollupMark.received_ms).where(RollupMark.name == MARK).scalar()
    return -1 if value is None else int(value)


def _chunk_end(after: int, upto: int, rows: int) -> int:
    """The ``received_ms`` that ends a chunk of about ``rows`` samples received in ``(after, upto]``
    (an index range read: the ``rows``-th stamp, or ``upto`` when fewer remain)."""
    rec = Sample.received_ms
    q = (Sample.select(rec).where((rec > after) & (rec <= upto)).order_by(rec).limit(1).offset(rows - 1))
    value = q.scalar()
    return upto if value is None else int(value)


def _aggregate_into(tier: Tier, after: int, upto: int) -> int:
    """INSERT … SELECT the tier's buckets of the samples received in ``(after, upto]``, every device
    at once, merging into existing bucket rows (one statement). Returns rows written or merged."""
    model = tier.model
    # integer division on both SQLite and PostgreSQL (peewee's ``%`` means LIKE; ts is positive)
    bucket = (Sample.ts / tier.width_ms) * tier.width_ms
    cols = [Sample.device, bucket, fn.COUNT(Sample.ts)]
    fields = [model.device, model.bucket_ms, model.n]
    for m in ROLLUP_METRICS:
        col = getattr(Sample, m)
        cols += [fn.AVG(col), fn.MAX(col)]
        fields += [getattr(model, f"{m}_avg"), getattr(model, f"{m}_max")]
    query = (Sample.select(*cols)
             .where((Sample.received_ms > after) & (Sample.received_ms <= upto))
             .group_by(Sample.device, bucket))
    return model.insert_from(query, fields).on_conflict(
        conflict_target=[model.device, model.bucket_ms], update=_merge_update(model)).execute() or 0


def _merge_update(model: type) -> dict:
    """ON CONFLICT update: add ``n``, count-weighted average, larger maximum (NULL-safe)."""
    upd = {model.n: model.n + EXCLUDED.n}
    for m in ROLLUP_METRICS:
        avg, mx = getattr(model, f"{m}_avg"), getattr(model, f"{m}_max")
        new_avg, new_mx = getattr(EXCLUDED, f"{m}_avg"), getattr(EXCLUDED, f"{m}_max")
        weighted = (avg * model.n + new_avg * EXCLUDED.n) / (model.n + EXCLUDED.n)
        upd[avg] = Case(None, [(avg.is_null(), new_avg), (new_avg.is_null(), avg)], weighted)
        upd[mx] = Case(None, [(mx.is_null(), new_mx), (new_mx > mx, new_mx)], mx)
    return upd


def _move_mark(after: int, end: int) -> bool:
    """Move the watermark from ``after`` to ``end`` first thing in the pass's transaction (which
    locks its row); False when it is no longer at ``after``."""
    if after < 0 and not RollupMark.select().where(RollupMark.name == MARK).exists():
        RollupMark.insert(name=MARK, received_ms=end).execute()  # a concurrent first insert fails on the key
        return True
    return RollupMark.update(received_ms=end).where(
        (RollupMark.name == MARK) & (RollupMark.received_ms == after)).execute() == 1


def _count(after: int, upto: int) -> int:
    rec = Sample.received_ms
    return Sample.select(fn.COUNT(Sample.ts)).where((rec > after) & (rec <= upto)).scalar() or 0


def roll_up_all(database: object | None = None) -> int:
    """Add every sample received since the watermark to every tier, all devices at once.

    Reads up to :func:`~fleet_server.store.history.receive_clock.settled_bound`, in transactions
    of as many samples as fit in :data:`fleet_server.store.locks.HOLD_S` (each moves the
    watermark with the tiers), pacing itself with :class:`fleet_server.store.locks.TakeTurns` so
    ingest never waits long for the write lock.

    Args:
        database: the peewee database (for transactions); default the models' bound database.

    Returns:
        How many raw samples were added to the tiers.
    """
    db = database or Sample._meta.database.obj  # the bound database, not the proxy (SQLite or not matters)
    after = watermark()
    upto = settled_bound(db)
    if upto <= after:
        return 0
    total, rows = 0, FIRST_CHUNK_ROWS
    pace = TakeTurns(db)
    while after < upto:
        with write_transaction(db):
            started = time.monotonic()
            end = _chunk_end(after, upto, rows)
            if not _move_mark(after, end):  # another process moved it (two leaders for a moment): leave it
                log.warning("the rollup watermark moved under this pass; stopping it")
                break
            added = _count(after, end)
            if added:
                for tier in TIERS:
                    _aggregate_into(tier, after, end)
            took = time.monotonic() - started
        total += added
        after = end
        if added:  # size the next transaction to take about HOLD_S
            rows = max(100, min(MAX_CHUNK_ROWS, int(rows * HOLD_S / max(took, 1e-3) * 0.8)))
        pace.turn()
    if total:
        log.debug("rolled up %d samples", total)
    return total
