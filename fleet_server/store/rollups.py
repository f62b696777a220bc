"""Sample rollup tiers, kept incrementally from raw samples.

Tiers: raw :class:`Sample` rows, then :class:`SampleRollup5m` (5-minute buckets) and
:class:`SampleRollup1h` (1-hour buckets), each row holding the sample count ``n`` and the
average and maximum of every metric in :data:`ROLLUP_METRICS`. Buckets start at multiples of the
tier width in epoch ms UTC (so 1-hour buckets are UTC hours).

Incremental: a per-device watermark (:class:`RollupWatermark`, the newest sample ``ts`` already
rolled up) means each run reads only raw rows newer than it, aggregates them per bucket in SQL and
merges the result into the tier rows (count-weighted average, max of maxima) with one upsert. A
bucket can therefore be filled over several runs, and raw retention never changes a rollup. The
same SQL runs on SQLite (>= 3.24) and PostgreSQL.

Known limit: the watermark follows the device's clock. Samples that arrive with a ``ts`` older
than the device's watermark (the device's clock jumped back) are stored raw but not rolled up.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from peewee import EXCLUDED, Case, fn

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
"""Rollup tiers, finest first. Each coarser width must be a multiple of the finest one."""


def _bucket_aggregates(device_id: str, after_ts: int) -> tuple[list[dict], int | None]:
    """5-minute aggregates of the device's raw samples with ``ts > after_ts``, and their newest ts."""
    # integer division on both SQLite and PostgreSQL (peewee's ``%`` means LIKE; ts is positive)
    bucket_expr = (Sample.ts / FIVE_MIN_MS) * FIVE_MIN_MS
    bucket = bucket_expr.alias("bucket_ms")
    cols = [bucket, fn.COUNT(Sample.ts).alias("n"), fn.MAX(Sample.ts).alias("newest")]
    for m in ROLLUP_METRICS:
        col = getattr(Sample, m)
        cols += [fn.AVG(col).alias(f"{m}_avg"), fn.MAX(col).alias(f"{m}_max"), fn.COUNT(col).alias(f"{m}_n")]
    q = (Sample.select(*cols).where((Sample.device == device_id) & (Sample.ts > after_ts))
         .group_by(bucket_expr).dicts())
    rows = list(q)
    newest = max((r["newest"] for r in rows), default=None)
    return rows, newest


def _combine(rows: list[dict], width_ms: int, device_id: str) -> list[dict]:
    """Merge 5-minute aggregates into buckets of ``width_ms`` (count-weighted avg, max of max)."""
    out: dict[int, dict] = {}
    for r in rows:
        b = int(r["bucket_ms"]) - int(r["bucket_ms"]) % width_ms
        acc = out.setdefault(b, {"device": device_id, "bucket_ms": b, "n": 0,
                                 **{f"{m}_{k}": None for m in ROLLUP_METRICS for k in ("sum", "max", "n")}})
        acc["n"] += r["n"]
        for m in ROLLUP_METRICS:
            k = r[f"{m}_n"]
            if not k:
                continue
            acc[f"{m}_sum"] = (acc[f"{m}_sum"] or 0.0) + r[f"{m}_avg"] * k
            acc[f"{m}_n"] = (acc[f"{m}_n"] or 0) + k
            mx = r[f"{m}_max"]
            acc[f"{m}_max"] = mx if acc[f"{m}_max"] is None else max(acc[f"{m}_max"], mx)
    result = []
    for acc in out.values():
        row = {"device": device_id, "bucket_ms": acc["bucket_ms"], "n": acc["n"]}
        for m in ROLLUP_METRICS:
            n = acc[f"{m}_n"]
            row[f"{m}_avg"] = acc[f"{m}_sum"] / n if n else None
            row[f"{m}_max"] = acc[f"{m}_max"]
        result.append(row)
    return result


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
    rows, newest = _bucket_aggregates(device_id, after)
    if newest is None:
        return 0
    for tier in TIERS:
        tier_rows = _combine(rows, tier.width_ms, device_id)
        for i in range(0, len(tier_rows), 100):
            tier.model.insert_many(tier_rows[i:i + 100]).on_conflict(
                conflict_target=[tier.model.device, tier.model.bucket_ms], update=_merge_update(tier.model),
            ).execute()
    RollupWatermark.insert(device=device_id, sample_ts=newest).on_conflict(
        conflict_target=[RollupWatermark.device], update={RollupWatermark.sample_ts: EXCLUDED.sample_ts},
    ).execute()
    return sum(r["n"] for r in rows)


def roll_up_all(database: object | None = None) -> int:
    """Roll up every device in the devices table (one short transaction per device).

    Args:
        database: the peewee database (for transactions); default the models' bound database.

    Returns:
        How many raw samples were added to the tiers.
    """
    db = database or Sample._meta.database
    total = 0
    for (device_id,) in Device.select(Device.id).tuples():
        with db.atomic():
            total += roll_up_device(device_id)
    if total:
        log.debug("rolled up %d samples", total)
    return total
