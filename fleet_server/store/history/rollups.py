"""Sample rollup tiers, kept incrementally from raw samples.

Tiers: raw :class:`Sample` rows, then :class:`SampleRollup5m` (5-minute buckets) and
:class:`SampleRollup1h` (1-hour buckets), each row holding the sample count ``n`` and the
average and maximum of every metric in :data:`ROLLUP_METRICS`. Buckets start at multiples of the
tier width in epoch ms UTC (so 1-hour buckets are UTC hours).

Incremental: a per-device watermark (:class:`RollupWatermark`, the newest sample ``ts`` already
rolled up) means each run reads only raw rows newer than it, aggregates them per bucket in SQL and
merges the result into the tier rows (count-weighted average, max of maxima): one
``INSERT … SELECT … ON CONFLICT DO UPDATE`` per tier. A
bucket can therefore be filled over several runs, and raw retention never changes a rollup. The
same SQL runs on SQLite (>= 3.24) and PostgreSQL.

Known limit: the watermark follows the device's clock. Samples that arrive with a ``ts`` older
than the device's watermark (the device's clock jumped back) are stored raw but not rolled up.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from peewee import EXCLUDED, Case, fn

from fleet_server.store.locks import HOLD_S, TakeTurns, write_transaction
from fleet_server.store.models import (
    ROLLUP_METRICS,
    Device,
    RollupWatermark,
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


def _new_samples(device_id: str, after_ts: int) -> tuple[int, int | None]:
    """How many raw samples the device has with ``ts > after_ts``, and the newest ts (None: none)."""
    db = Sample._meta.database
    # one indexed lookup per device per pass (10,000 a minute in a big fleet): plain SQL, built once,
    # instead of building the same peewee query every time (names from the model, values bound)
    ts, device, table = Sample.ts.column_name, Sample.device.column_name, Sample._meta.table_name
    sql = f'SELECT COUNT(*), MAX("{ts}") FROM "{table}" WHERE "{device}" = {db.param} AND "{ts}" > {db.param}'  # noqa: S608
    count, newest = db.execute_sql(sql, (device_id, after_ts)).fetchone()
    return int(count or 0), newest


def _aggregate_into(tier: Tier, device_id: str, after_ts: int, upto_ts: int) -> None:
    """INSERT … SELECT the tier's buckets of samples in ``(after_ts, upto_ts]``, merging into
    existing bucket rows (one statement; no rows pass through Python)."""
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
             .where((Sample.device == device_id) & (Sample.ts > after_ts) & (Sample.ts <= upto_ts))
             .group_by(Sample.device, bucket))
    model.insert_from(query, fields).on_conflict(
        conflict_target=[model.device, model.bucket_ms], update=_merge_update(model)).execute()


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


def roll_up_device(device_id: str) -> int:
    """Add the device's samples newer than its watermark to every tier; returns samples added.

    Must run inside a transaction (the caller's), so tiers and watermark move together.
    """
    wm = RollupWatermark.get_or_none(RollupWatermark.device == device_id)
    after = wm.sample_ts if wm else -1
    count, newest = _new_samples(device_id, after)
    if newest is None:
        return 0
    for tier in TIERS:
        _aggregate_into(tier, device_id, after, newest)
    RollupWatermark.insert(device=device_id, sample_ts=newest).on_conflict(
        conflict_target=[RollupWatermark.device], update={RollupWatermark.sample_ts: EXCLUDED.sample_ts},
    ).execute()
    return count


def roll_up_all(database: object | None = None) -> int:
    """Roll up every device that has samples newer than its watermark.

    Finding those devices only reads (one indexed lookup per device, outside any transaction);
    the rollups are written in transactions of as many devices as fit in
    :data:`fleet_server.store.locks.HOLD_S`, pacing itself with
    :class:`fleet_server.store.locks.TakeTurns` so ingest never waits long for the write lock.

    Args:
        database: the peewee database (for transactions); default the models' bound database.

    Returns:
        How many raw samples were added to the tiers.
    """
    db = database or Sample._meta.database
    marks = dict(RollupWatermark.select(RollupWatermark.device, RollupWatermark.sample_ts).tuples())
    due = [d for (d,) in Device.select(Device.id).tuples() if _new_samples(d, marks.get(d, -1))[0]]
    total, k = 0, 0
    pace = TakeTurns(db)
    while k < len(due):  # as many devices per transaction as fit in the lock-holding budget
        with write_transaction(db):
            started = time.monotonic()
            while k < len(due) and time.monotonic() - started < HOLD_S:
                total += roll_up_device(due[k])
                k += 1
        pace.turn()
    if total:
        log.debug("rolled up %d samples of %d devices", total, len(due))
    return total
