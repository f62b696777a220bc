"""Rollup tiers equal aggregates over the raw rows; retention deletes exactly what is older."""

from __future__ import annotations

import logging
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from history_helpers import add_device, add_samples

from fleet_server.store.history.retention import RetentionError, RetentionPolicy, apply_retention
from fleet_server.store.history.rollups import FIVE_MIN_MS, HOUR_MS, roll_up_all
from fleet_server.store.history.samples import samples_for_window
from fleet_server.store.models import ROLLUP_METRICS, LogRecord, Sample, SampleRollup1h, SampleRollup5m, StatusEvent

T0 = 1_767_225_600_000  # 2026-01-01 00:00 UTC


def _expected(rows: list[dict], width: int) -> dict[int, dict]:
    out: dict[int, dict] = {}
    for r in rows:
        b = out.setdefault(r["ts"] - r["ts"] % width, {"n": 0, **{m: [] for m in ROLLUP_METRICS}})
        b["n"] += 1
        for m in ROLLUP_METRICS:
            if r[m] is not None:
                b[m].append(r[m])
    return out


def _assert_tier(model: type, device: str, rows: list[dict], width: int) -> None:
    expected = _expected(rows, width)
    got = {r.bucket_ms: r for r in model.select().where(model.device == device)}
    assert set(got) == set(expected)
    for bucket, exp in expected.items():
        row = got[bucket]
        assert row.n == exp["n"]
        for m in ROLLUP_METRICS:
            values = exp[m]
            if not values:
                assert getattr(row, f"{m}_avg") is None and getattr(row, f"{m}_max") is None
                continue
            assert getattr(row, f"{m}_avg") == pytest.approx(sum(values) / len(values), rel=1e-6, abs=1e-6)
            assert getattr(row, f"{m}_max") == pytest.approx(max(values), rel=1e-6)  # PostgreSQL stores REAL (float4)


def test_incremental_rollups_equal_raw_aggregates_across_bucket_boundaries(store):
    add_device("dev-a")
    add_device("dev-b")
    # runs stop mid-bucket (17 s off the 5-minute grid, mid-hour), so buckets fill over several runs
    cuts = [T0 + 7 * 60_000 + 17_000, T0 + 52 * 60_000 + 17_000, T0 + 3 * HOUR_MS + 1_000, T0 + 5 * HOUR_MS]
    rows_a: list[dict] = []
    rows_b: list[dict] = []
    start = T0
    for i, cut in enumerate(cuts):
        rows_a += add_samples("dev-a", start, cut, step_ms=10_000, seed=i)
        rows_b += add_samples("dev-b", start, cut, step_ms=30_000, seed=10 + i, load=False)  # e.g. Windows: no load
        assert roll_up_all(store) == len([r for r in rows_a + rows_b if r["ts"] >= start])
        start = cut
    assert roll_up_all(store) == 0  # nothing new: nothing read twice
    for device, rows in (("dev-a", rows_a), ("dev-b", rows_b)):
        _assert_tier(SampleRollup5m, device, rows, FIVE_MIN_MS)
        _assert_tier(SampleRollup1h, device, rows, HOUR_MS)


def test_retention_deletes_exactly_what_is_older_and_rollups_survive_it(store):
    add_device("dev-a")
    rows = add_samples("dev-a", T0, T0 + 4 * HOUR_MS, step_ms=60_000)
    roll_up_all(store)
    StatusEvent.create(device="dev-a", ts=T0 + HOUR_MS - 1, state="online")
    StatusEvent.create(device="dev-a", ts=T0 + HOUR_MS, state="offline")
    for i, ts in enumerate((T0, T0 + HOUR_MS - 1, T0 + HOUR_MS)):
        LogRecord.create(id=f"l{i}", device="dev-a", ts=ts, level="error", subsystem="s", message="m",
                         fingerprint="f", source="file")
    now = T0 + 4 * HOUR_MS
    policy = RetentionPolicy(raw=3 * 3600, rollup_5m=3.5 * 3600, status_events=3 * 3600, logs=3 * 3600)
    deleted = apply_retention(policy, now, store)
    cut = now - 3 * HOUR_MS  # == T0 + 1 h
    assert deleted["raw"] == sum(r["ts"] < cut for r in rows)
    assert min(ts for (ts,) in Sample.select(Sample.ts).tuples()) == cut
    assert [e.ts for e in StatusEvent.select()] == [cut]
    assert sorted(r.ts for r in LogRecord.select()) == [cut]
    cut5 = now - int(3.5 * HOUR_MS)
    assert min(r.bucket_ms for r in SampleRollup5m.select()) == cut5
    assert deleted["rollup_1h"] == 0
    # the 1-hour tier still equals the raw aggregates, including the hours whose raw rows are gone
    _assert_tier(SampleRollup1h, "dev-a", rows, HOUR_MS)
    # later samples join the same tiers after retention ran
    more = add_samples("dev-a", now, now + HOUR_MS + 30_000, step_ms=60_000, seed=5)
    roll_up_all(store)
    _assert_tier(SampleRollup1h, "dev-a", rows + more, HOUR_MS)


def test_raw_samples_not_rolled_up_yet_are_kept(store):
    add_device("dev-a")
    add_samples("dev-a", T0, T0 + HOUR_MS, step_ms=60_000)
    roll_up_all(store)
    late = add_samples("dev-a", T0 + HOUR_MS, T0 + 2 * HOUR_MS, step_ms=60_000)  # not rolled up yet
    deleted = apply_retention(RetentionPolicy.parse(["raw=6h"]), T0 + 20 * HOUR_MS, store)
    assert deleted["raw"] == 60
    assert Sample.select().count() == len(late)


def test_retention_settings_are_validated_with_the_key_named():
    with pytest.raises(RetentionError, match="raw=.*'soon'"):
        RetentionPolicy.parse(["raw=soon"])
    with pytest.raises(RetentionError, match="KIND=DURATION"):
        RetentionPolicy.parse(["samples=3d"])
    with pytest.raises(RetentionError, match="at least 6h"):
        RetentionPolicy.parse(["raw=1h"])
    p = RetentionPolicy.parse(["usage=forever", "1h=2y"])
    assert p.usage_records is None and p.rollup_1h == 2 * 365 * 86400 and p.usage_hourly is None
    assert "usage_hourly forever" in p.describe() and "raw 2d" in p.describe()


class _Sql(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.queries: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.queries.append(str(record.msg[0]) if isinstance(record.msg, tuple) else str(record.msg))


def test_30_day_chart_reads_the_hourly_tier_with_window_edges_right_in_a_dst_zone(store):
    add_device("dev-a")
    tz = ZoneInfo("Europe/Berlin")  # DST ended 2026-10-25 03:00 local: that day has 25 hours
    start = int(datetime(2026, 10, 1, tzinfo=tz).timestamp() * 1000)
    end = int(datetime(2026, 10, 31, tzinfo=tz).timestamp() * 1000)
    assert (end - start) == (30 * 24 + 1) * HOUR_MS
    add_samples("dev-a", start - 2 * HOUR_MS, end + 2 * HOUR_MS, step_ms=300_000)
    roll_up_all(store)
    sql = _Sql()
    logger = logging.getLogger("peewee")
    old_level = logger.level
    logger.addHandler(sql)
    logger.setLevel(logging.DEBUG)
    try:
        tier, rows = samples_for_window("dev-a", start, end)
    finally:
        logger.removeHandler(sql)
        logger.setLevel(old_level)
    assert tier == "1h"
    assert len(sql.queries) == 1 and "sample_rollup1h" in sql.queries[0] and '"sample"' not in sql.queries[0]
    # Berlin midnight is 22:00 or 23:00 UTC: whole hours, so the buckets are exactly the window
    assert rows[0].ts_ms == start and rows[-1].ts_ms == end - HOUR_MS
    assert len(rows) == 30 * 24 + 1 and all(r.n == 12 for r in rows)


@pytest.mark.parametrize(("hours", "tier"), [(1, "raw"), (6, "raw"), (24, "5m"), (48, "5m"), (7 * 24, "1h"),
                                             (30 * 24, "1h")])
def test_tier_choice_gives_at_least_100_points_and_never_raw_past_24h(hours, tier):
    from fleet_server.store.history.samples import TIER_WIDTH_MS, choose_tier

    chosen = choose_tier(0, hours * HOUR_MS)
    assert chosen == tier
    if chosen != "raw":
        assert hours * HOUR_MS // TIER_WIDTH_MS[chosen] >= 100
