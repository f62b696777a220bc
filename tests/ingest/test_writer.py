"""The batch writer on a real SQLite file (no broker): a batch the database refuses is split
until the culprit is alone; an unavailable database is retried, never split."""

from __future__ import annotations

import queue
import sqlite3
import threading
from collections import Counter

import pytest
from payload_helpers import batch, now_ms, telemetry, usage_record
from peewee import IntegrityError, InterfaceError, OperationalError

from fleet_server.ingest.messages import Received, Rejected
from fleet_server.ingest.writer import BatchWriter, database_unavailable
from fleet_server.state import FleetState
from fleet_server.store.db import open_database
from fleet_server.store.models import Device, RejectCount, Sample, UsageRecord
from shared import schemas
from shared.topics import Channel


def received(mid: int, device_id: str, channel: Channel, data: dict) -> Received:
    payload = schemas.SCHEMA_BY_CHANNEL[channel].model_validate(data)
    return Received(mid, 1, device_id, channel, payload, now_ms())


def run_writer(database, items: list) -> tuple[list[int], Counter]:
    q: queue.Queue = queue.Queue()
    for item in items:
        q.put(item)
    acks: list[int] = []
    counters: Counter = Counter()
    writer = BatchWriter(database, q, FleetState(), lambda mid, qos: acks.append(mid), counters)
    writer.stopping.set()  # store what is queued, then return
    thread = threading.Thread(target=writer.run)
    thread.start()
    thread.join(30)
    assert not thread.is_alive()
    return acks, counters


@pytest.fixture
def database(tmp_path):
    database = open_database(tmp_path)
    for d in ("a", "b"):
        Device.create(id=d, name=d, key_hash="x", key_hint="abcd", created_ms=1)
    database.execute_sql("CREATE TRIGGER refuse_poison BEFORE INSERT ON usage_record WHEN NEW.model = 'poison' "
                         "BEGIN SELECT RAISE(ABORT, 'poison model refused'); END")
    return database


def test_one_refused_message_is_rejected_and_the_rest_of_its_batch_stored(database):
    items = [received(1, "a", Channel.TELEMETRY, telemetry("a")),
             received(2, "b", Channel.USAGE, batch("b", [usage_record(model="poison")])),
             received(3, "a", Channel.USAGE, batch("a", [usage_record()])),
             Rejected(4, 1, "b", "not_json", "payload is not UTF-8 JSON"),
             received(5, "b", Channel.TELEMETRY, telemetry("b")),
             received(6, "a", Channel.USAGE, batch("a", [usage_record(), usage_record()]))]
    acks, counters = run_writer(database, items)
    assert sorted(acks) == [1, 2, 3, 4, 5, 6]  # every message acknowledged exactly once
    assert counters["acked"] == 6
    assert Sample.select().count() == 2
    assert UsageRecord.select().where(UsageRecord.device == "a").count() == 3
    assert UsageRecord.select().where(UsageRecord.device == "b").count() == 0
    assert {(r.device, r.reason): r.count for r in RejectCount.select()} == {("b", "store_error"): 1,
                                                                           ("b", "not_json"): 1}
    assert "poison model refused" in RejectCount.get(RejectCount.reason == "store_error").last_error


def test_a_locked_database_is_waited_for_not_split(database, tmp_path):
    con = sqlite3.connect(tmp_path / "clawfleet.sqlite", isolation_level=None, check_same_thread=False)
    con.execute("BEGIN IMMEDIATE")
    timer = threading.Timer(1.0, lambda: (con.execute("COMMIT"), con.close()))
    timer.start()
    try:
        acks, _ = run_writer(database, [received(1, "a", Channel.TELEMETRY, telemetry("a")),
                                        received(2, "b", Channel.TELEMETRY, telemetry("b"))])
    finally:
        timer.join()
    assert sorted(acks) == [1, 2] and Sample.select().count() == 2
    assert RejectCount.select().count() == 0


@pytest.mark.parametrize(("exc", "unavailable"), [
    (OperationalError("database is locked"), True),
    (OperationalError("disk I/O error"), True),
    (OperationalError("database or disk is full"), True),
    (InterfaceError("connection already closed"), True),
    (OperationalError("integer overflow"), False),
    (OperationalError("string or blob too big"), False),
    (IntegrityError("UNIQUE constraint failed"), False),
    (InterfaceError("Error binding parameter 3: type 'dict' is not supported"), False),
    (OverflowError("Python int too large to convert to SQLite INTEGER"), False),
    (UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"), False),
])
def test_unavailable_database_is_told_from_bad_data(exc, unavailable):
    assert database_unavailable(exc) is unavailable
