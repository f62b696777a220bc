"""A database written by v0.1.0 (stored SQL dumps) upgrades on open without losing rows; the
agent outbox upgrades the same way."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
from peewee import fn

from fleet_server.store import migrations
from fleet_server.store.db import open_database
from fleet_server.store.models import (
    AuditEvent,
    Device,
    LogRecord,
    RejectCount,
    Sample,
    SampleRollup1h,
    SchemaVersion,
    StatusEvent,
    UsageHourly,
    UsageRecord,
    UsageTotal,
    User,
)

DUMPS = Path(__file__).parents[1] / "fixtures" / "db"
V010_ROWS = {Device: 2, Sample: 10, StatusEvent: 3, UsageRecord: 1, UsageHourly: 1, LogRecord: 1, RejectCount: 1,
             User: 1, AuditEvent: 1}


def _load_sqlite_dump(path: Path, dump: str) -> Path:
    """A SQLite file at ``path`` made from the stored SQL dump ``dump``; returns ``path``."""
    con = sqlite3.connect(path)
    con.executescript((DUMPS / dump).read_text())
    con.close()
    return path


def _load_v010(db_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if db_url.startswith("sqlite"):
        _load_sqlite_dump(Path(db_url.removeprefix("sqlite:///")), "v0.1.0-sqlite.sql")
    else:
        pg = request.getfixturevalue("pg_server")
        pg.psql(db_url.rsplit("/", 1)[1], (DUMPS / "v0.1.0-postgresql.sql").read_text())


def test_v010_database_upgrades_without_losing_rows(db_url, tmp_path, request):
    _load_v010(db_url, tmp_path, request)
    database = open_database(tmp_path, db_url)
    try:
        assert migrations.current_version(database) == migrations.latest_version()
        assert [v.version for v in SchemaVersion.select().order_by(SchemaVersion.version)] == list(
            range(1, migrations.latest_version() + 1))
        for model, count in V010_ROWS.items():
            assert model.select().count() == count, model.__name__
        assert Device.get_by_id("dev-a").meta_json.startswith('{"v":1')
        assert UsageHourly.get().total_tokens == 126
        total = UsageTotal.get()  # step 5: the all-time sums, from the hourly rollup
        assert (total.device, total.total_tokens, total.records) == (UsageHourly.get().device, 126, 1)
        assert User.get().time_zone is None and not User.get().dark_mode
        # the upgraded database works: new rows in old and new tables (sequences intact on PostgreSQL)
        StatusEvent.create(device="dev-a", ts=1764000200000, state="offline", reason="x")
        AuditEvent.create(ts_ms=1, actor="t", action="a")
        assert SampleRollup1h.select().count() == 0
        from fleet_server.store.history.rollups import roll_up_all

        assert roll_up_all(database) == 10
    finally:
        database.close()
    again = open_database(tmp_path, db_url)  # opening again changes nothing
    try:
        assert migrations.upgrade(again) == []
        assert StatusEvent.select().count() == 4
    finally:
        again.close()


def test_new_database_is_stamped_at_the_newest_version(store):
    assert migrations.current_version(store) == migrations.latest_version()
    assert migrations.upgrade(store) == []


def test_database_from_a_newer_release_is_refused(store):
    SchemaVersion.create(version=migrations.latest_version() + 1, name="from the future", applied_ms=0)
    with pytest.raises(migrations.SchemaTooNew, match="upgrade ClawFleet"):
        migrations.upgrade(store)


def test_v010_agent_outbox_upgrades_without_losing_messages(tmp_path):
    from agent_tray.outbox import OUTBOX_SCHEMA_VERSION, Outbox

    path = _load_sqlite_dump(tmp_path / "outbox.sqlite", "agent-outbox-v0.1.0-sqlite.sql")
    box = Outbox(path)
    try:
        assert [m.kind for m in box.pending()] == ["telemetry", "usage"]
        assert box.position("usage:main") == {"offset": 123}
    finally:
        box.close()
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == OUTBOX_SCHEMA_VERSION
    con.close()


def test_v4_database_rolls_up_what_its_watermarks_did_not_cover_once(tmp_path):
    """Schema 4 kept a ts watermark per device (dev-a: 10 samples rolled up, 3 not; dev-b: none);
    after the upgrade the next pass adds exactly the 8 that were not rolled up, and retention still
    ages the older rows (they have no receive time) by their ts."""
    from fleet_server.store.history.retention import RetentionPolicy, apply_retention
    from fleet_server.store.history.rollups import roll_up_all
    from fleet_server.store.models import SampleRollup5m

    _load_sqlite_dump(tmp_path / "clawfleet.sqlite", "v4-sqlite.sql")
    database = open_database(tmp_path)
    try:
        assert "rollup_watermark" not in database.get_tables()
        assert Sample.select().where(Sample.received_ms.is_null()).count() == 10
        assert roll_up_all(database) == 8
        assert roll_up_all(database) == 0
        n = {d: c for d, c in SampleRollup5m.select(SampleRollup5m.device, fn.SUM(SampleRollup5m.n)).group_by(
            SampleRollup5m.device).tuples()}
        assert n == {"dev-a": 13, "dev-b": 5}
        far = int(time.time() * 1000) + 3 * 86_400_000
        assert apply_retention(RetentionPolicy(), far, database)["raw"] == 18
    finally:
        database.close()
