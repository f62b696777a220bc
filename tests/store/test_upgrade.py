"""An existing database (made before record ids were scoped per device) upgrades on open."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

from fleet_server.store.db import open_database
from fleet_server.store.logs import insert_logs
from fleet_server.store.models import LogRecord, UsageRecord
from fleet_server.store.upgrade import scope_record_ids
from fleet_server.store.usage.ledger import insert_usage

DUMP = Path(__file__).resolve().parents[1] / "fixtures" / "db" / "v0.1.0-sqlite.sql"  # as 0.1.0 wrote it


def usage(device: str, rid: str, tokens: int) -> dict:
    return {"id": rid, "device": device, "ts": 1_795_234_253_457, "agent_id": "main", "session_id": "s",
            "provider": "p", "model": "m", "input_tokens": tokens, "output_tokens": 0, "cache_read_tokens": 0,
            "cache_write_tokens": 0, "total_tokens": tokens, "cost_usd": None, "source": "transcript"}


def test_an_old_database_upgrades_keeping_its_rows(tmp_path):
    path = tmp_path / "clawfleet.sqlite"
    con = sqlite3.connect(path)
    con.executescript(DUMP.read_text())  # record ids 'u1' and 'l1' belong to dev-a
    con.commit()
    con.close()
    path.chmod(0o644)

    database = open_database(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # tightened
    for table in ("usage_record", "log_record"):
        assert [c.name for c in database.get_columns(table) if c.primary_key] == ["device", "id"]
    assert UsageRecord.get(UsageRecord.id == "u1").input_tokens == 100
    assert LogRecord.get(LogRecord.id == "l1").message == "boom"
    usage_before, logs_before = UsageRecord.select().count(), LogRecord.select().count()
    with database.atomic():  # another device may now use the same ids
        insert_usage([usage("b", "u1", 7)])
        insert_logs([{"id": "l1", "device": "b", "ts": 1, "level": "warn", "subsystem": "", "message": "x",
                      "fingerprint": "", "source": "gateway-log"}])
    assert UsageRecord.select().count() == usage_before + 1 and LogRecord.select().count() == logs_before + 1
    assert scope_record_ids(database) == []  # idempotent
    indexes = {i.name for i in database.get_indexes("usage_record")}
    assert "usage_record_ts" in indexes


def test_a_fresh_database_needs_no_upgrade(tmp_path):
    database = open_database(tmp_path)
    assert scope_record_ids(database) == []
    assert stat.S_IMODE((tmp_path / "clawfleet.sqlite").stat().st_mode) == 0o600
