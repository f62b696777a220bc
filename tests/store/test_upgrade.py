"""An existing database (made before record ids were scoped per device) upgrades on open."""

from __future__ import annotations

import sqlite3
import stat

from fleet_server.store.db import open_database
from fleet_server.store.logs import insert_logs
from fleet_server.store.models import LogRecord, UsageRecord
from fleet_server.store.upgrade import scope_record_ids
from fleet_server.store.usage import insert_usage

OLD_SCHEMA = [  # the two tables as clawfleet 0.1.0 created them
    'CREATE TABLE "usage_record" ("id" VARCHAR(64) NOT NULL PRIMARY KEY, "device" VARCHAR(63) NOT NULL, '
    '"ts" INTEGER NOT NULL, "agent_id" VARCHAR(200) NOT NULL, "session_id" VARCHAR(200) NOT NULL, '
    '"provider" VARCHAR(200) NOT NULL, "model" VARCHAR(200) NOT NULL, "input_tokens" INTEGER NOT NULL, '
    '"output_tokens" INTEGER NOT NULL, "cache_read_tokens" INTEGER NOT NULL, "cache_write_tokens" INTEGER NOT NULL, '
    '"total_tokens" INTEGER NOT NULL, "cost_usd" REAL, "source" VARCHAR(16) NOT NULL)',
    'CREATE INDEX "usage_record_device" ON "usage_record" ("device")',
    'CREATE INDEX "usage_record_ts" ON "usage_record" ("ts")',
    'CREATE TABLE "log_record" ("id" VARCHAR(64) NOT NULL PRIMARY KEY, "device" VARCHAR(63) NOT NULL, '
    '"ts" INTEGER NOT NULL, "level" VARCHAR(8) NOT NULL, "subsystem" VARCHAR(200) NOT NULL, "message" TEXT NOT NULL, '
    '"fingerprint" VARCHAR(64) NOT NULL, "source" VARCHAR(16) NOT NULL)',
    'CREATE INDEX "log_record_device" ON "log_record" ("device")',
    'CREATE INDEX "log_record_ts" ON "log_record" ("ts")',
    'CREATE INDEX "log_record_fingerprint" ON "log_record" ("fingerprint")',
]


def usage(device: str, rid: str, tokens: int) -> dict:
    return {"id": rid, "device": device, "ts": 1_795_234_253_457, "agent_id": "main", "session_id": "s",
            "provider": "p", "model": "m", "input_tokens": tokens, "output_tokens": 0, "cache_read_tokens": 0,
            "cache_write_tokens": 0, "total_tokens": tokens, "cost_usd": None, "source": "transcript"}


def test_an_old_database_upgrades_keeping_its_rows(tmp_path):
    path = tmp_path / "clawfleet.sqlite"
    con = sqlite3.connect(path)
    for sql in OLD_SCHEMA:
        con.execute(sql)
    con.execute("INSERT INTO usage_record VALUES ('rec-00000001', 'a', 1795234253457, 'main', 's', 'p', 'm', "
                "5, 0, 0, 0, 5, NULL, 'transcript')")
    con.execute("INSERT INTO log_record VALUES ('log-00000001', 'a', 1795234253457, 'error', 'gw', 'boom', 'f', "
                "'gateway-log')")
    con.commit()
    con.close()
    path.chmod(0o644)

    database = open_database(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # tightened
    for table in ("usage_record", "log_record"):
        assert [c.name for c in database.get_columns(table) if c.primary_key] == ["device", "id"]
    assert UsageRecord.get(UsageRecord.id == "rec-00000001").input_tokens == 5
    assert LogRecord.get(LogRecord.id == "log-00000001").message == "boom"
    with database.atomic():  # another device may now use the same ids
        insert_usage([usage("b", "rec-00000001", 7)])
        insert_logs([{"id": "log-00000001", "device": "b", "ts": 1, "level": "warn", "subsystem": "", "message": "x",
                      "fingerprint": "", "source": "gateway-log"}])
    assert UsageRecord.select().count() == 2 and LogRecord.select().count() == 2
    assert scope_record_ids(database) == []  # idempotent
    indexes = {i.name for i in database.get_indexes("usage_record")}
    assert "usage_record_ts" in indexes


def test_a_fresh_database_needs_no_upgrade(tmp_path):
    database = open_database(tmp_path)
    assert scope_record_ids(database) == []
    assert stat.S_IMODE((tmp_path / "clawfleet.sqlite").stat().st_mode) == 0o600
