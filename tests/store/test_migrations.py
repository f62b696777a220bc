"""A database written by v0.1.0 (stored SQL dumps) upgrades on open without losing rows; the
agent outbox upgrades the same way."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

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
    User,
)

DUMPS = Path(__file__).parents[1] / "fixtures" / "db"
V010_ROWS = {Device: 2, Sample: 10, StatusEvent: 3, UsageRecord: 1, UsageHourly: 1, LogRecord: 1, RejectCount: 1,
             User: 1, AuditEvent: 1}


def _load_v010(db_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if db_url.startswith("sqlite"):
        con = sqlite3.connect(db_url.removeprefix("sqlite:///"))
        con.executescript((DUMPS / "v0.1.0-sqlite.sql").read_text())
        con.close()
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

    path = tmp_path / "outbox.sqlite"
    con = sqlite3.connect(path)
    con.executescript((DUMPS / "agent-outbox-v0.1.0-sqlite.sql").read_text())
    con.close()
    box = Outbox(path)
    try:
        assert [m.kind for m in box.pending()] == ["telemetry", "usage"]
        assert box.position("usage:main") == {"offset": 123}
    finally:
        box.close()
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == OUTBOX_SCHEMA_VERSION
    con.close()
