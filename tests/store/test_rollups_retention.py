"""Rollup tiers equal aggregates over the raw rows; retention deletes exactly what is older."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
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
    rows = add_samples("dev-a", T0, T0 + 4 * HOUR_MS, step_ms=60_000, on_time=True)
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
    add_samples("dev-a", T0, T0 + HOUR_MS, step_ms=60_000, on_time=True)
    roll_up_all(store)
    late = add_samples("dev-a", T0 + HOUR_MS, T0 + 2 * HOUR_MS, step_ms=60_000)  # received now: not rolled up yet
    # a retention run 20 h from now would delete them all by age; the watermark keeps the late ones
    deleted = apply_retention(RetentionPolicy.parse(["raw=6h"]), int(time.time() * 1000) + 20 * HOUR_MS, store)
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


@contextmanager
def _sql_log() -> Iterator[_Sql]:
    """The SQL statements peewee runs inside the block."""
    sql = _Sql()
    logger = logging.getLogger("peewee")
    old_level = logger.level
    logger.addHandler(sql)
    logger.setLevel(logging.DEBUG)
    try:
        yield sql
    finally:
        logger.removeHandler(sql)
        logger.setLevel(old_level)


def test_30_day_chart_reads_the_hourly_tier_with_window_edges_right_in_a_dst_zone(store):
    add_device("dev-a")
    tz = ZoneInfo("Europe/Berlin")  # DST ended 2026-10-25 03:00 local: that day has 25 hours
    start = int(datetime(2026, 10, 1, tzinfo=tz).timestamp() * 1000)
    end = int(datetime(2026, 10, 31, tzinfo=tz).timestamp() * 1000)
    assert (end - start) == (30 * 24 + 1) * HOUR_MS
    add_samples("dev-a", start - 2 * HOUR_MS, end + 2 * HOUR_MS, step_ms=300_000)
    roll_up_all(store)
    with _sql_log() as sql:
        tier, rows = samples_for_window("dev-a", start, end)
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


def test_late_samples_reach_the_rollups_and_a_resent_sample_is_not_counted_twice(store):
    """A device whose clock jumped back, or that resends after an outage, delivers samples older than
    what is rolled up already: they are received later, so they reach their (old) buckets."""
    add_device("dev-a")
    rows = add_samples("dev-a", T0 + HOUR_MS, T0 + 2 * HOUR_MS, step_ms=60_000)
    roll_up_all(store)
    late = add_samples("dev-a", T0, T0 + HOUR_MS, step_ms=60_000, seed=3)  # the hour before, arriving now
    assert roll_up_all(store) == len(late)
    # the same samples resent: (device, ts) is unique, so nothing is inserted and nothing counted again
    Sample.insert_many([{**r, "received_ms": int(time.time() * 1000)} for r in late]).on_conflict_ignore().execute()
    assert roll_up_all(store) == 0
    _assert_tier(SampleRollup5m, "dev-a", rows + late, FIVE_MIN_MS)
    _assert_tier(SampleRollup1h, "dev-a", rows + late, HOUR_MS)


def test_a_rollup_pass_is_the_same_few_statements_for_5_devices_or_50(store):
    """Set-based: one INSERT … SELECT per tier over all devices, not a query per device."""
    def statements(devices: int, tag: str) -> int:
        for i in range(devices):
            add_device(f"{tag}-{i}")
            add_samples(f"{tag}-{i}", T0, T0 + 10 * 60_000, step_ms=60_000, seed=i)
        with _sql_log() as sql:
            assert roll_up_all(store) == devices * 10
        return len(sql.queries)

    add_device("first")
    add_samples("first", T0, T0 + 60_000)
    roll_up_all(store)  # the very first pass also creates the watermark row
    assert statements(5, "few") == statements(50, "many")


def test_retention_removes_rows_of_devices_deleted_long_ago(store):
    add_device("kept")
    add_samples("kept", T0, T0 + HOUR_MS, step_ms=60_000, on_time=True)
    add_samples("gone", T0, T0 + HOUR_MS, step_ms=60_000, on_time=True)  # its devices row was deleted
    roll_up_all(store)
    for device in ("kept", "gone"):
        StatusEvent.create(device=device, ts=T0, state="online")
    now = T0 + 400 * 86_400_000 + HOUR_MS + 1
    apply_retention(RetentionPolicy(), now, store)
    assert Sample.select().count() == 0
    assert SampleRollup5m.select().count() == 0 and SampleRollup1h.select().count() == 0
    assert StatusEvent.select().count() == 0


def test_every_retention_delete_is_paced_in_short_transactions(store, monkeypatch):
    """Each kind is deleted in chunks with a turn for other writers between them (logs and usage
    were one unbounded DELETE each)."""
    from fleet_server.store.history import retention

    turns = []
    monkeypatch.setattr(retention.TakeTurns, "turn", lambda self: turns.append(1))
    monkeypatch.setattr(retention, "FIRST_CHUNK_ROWS", 100)
    monkeypatch.setattr(retention, "HOLD_S", 0.0)  # every later chunk the smallest: 100 rows
    add_device("dev-a")
    LogRecord.insert_many([{"id": f"l{i}", "device": "dev-a", "ts": T0 + i, "level": "error", "subsystem": "s",
                            "message": "m", "fingerprint": "f", "source": "file"} for i in range(1000)]).execute()
    deleted = apply_retention(RetentionPolicy(logs=3600), T0 + 2 * HOUR_MS, store)
    assert deleted["logs"] == 1000 and LogRecord.select().count() == 0
    assert len(turns) >= 10


def test_rollups_and_retention_on_the_bound_database_without_an_argument(store):
    add_device("dev-a")
    rows = add_samples("dev-a", T0, T0 + HOUR_MS, step_ms=60_000, on_time=True)
    assert roll_up_all() == len(rows)
    assert apply_retention(RetentionPolicy(), T0 + 3 * 86_400_000)["raw"] == len(rows)
