"""The batch writer on a real SQLite file (no broker): a batch the database refuses is split
until the culprit is alone; an unavailable database is retried, never split."""

from __future__ import annotations

import queue
import sqlite3
import threading
from collections import Counter

import pytest
from payload_helpers import batch, meta, now_ms, status, telemetry, usage_record
from peewee import IntegrityError, InterfaceError, OperationalError
from writer_helpers import writer_database

from fleet_server.ingest.messages import Received, Rejected
from fleet_server.ingest.writer import BatchWriter, database_unavailable
from fleet_server.state import FleetState
from fleet_server.store.models import Device, RejectCount, Sample, StatusEvent, UsageRecord
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
    return writer_database(tmp_path)


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


def store_batches(database, *batches: list) -> FleetState:
    """Run the writer over ``batches`` (each one writer batch, in order) with one cache; returns it."""
    state = FleetState()
    state.load_from_db()
    for items in batches:
        q: queue.Queue = queue.Queue()
        for item in items:
            q.put(item)
        writer = BatchWriter(database, q, state, lambda mid, qos: None, Counter())
        writer.stopping.set()
        writer.run()
    return state


def test_a_batch_with_many_messages_per_device_applies_them_in_order(database):
    t = now_ms() - 10_000
    items = [received(1, "a", Channel.TELEMETRY, telemetry("a", ts=t + 1000)),
             received(2, "a", Channel.TELEMETRY, telemetry("a", ts=t + 3000)),
             received(3, "a", Channel.TELEMETRY, telemetry("a", ts=t + 2000)),
             received(4, "a", Channel.TELEMETRY, telemetry("a", ts=t + 3000)),  # a redelivery: ignored
             received(5, "a", Channel.STATUS, status("a", "online", ts=t)),
             received(6, "a", Channel.STATUS, status("a", "offline", ts=t, reason="stopped")),
             received(7, "a", Channel.STATUS, status("a", "online", ts=t)),
             received(8, "b", Channel.META, meta("b", hostname="first")),
             received(9, "b", Channel.META, meta("b", hostname="second"))]
    state = store_batches(database, items)
    assert [s.ts for s in Sample.select().where(Sample.device == "a").order_by(Sample.ts)] == [t + 1000, t + 2000,
                                                                                             t + 3000]
    assert state.get("a").telemetry.ts == t + 3000  # the newest, not the last received
    events = StatusEvent.select().where(StatusEvent.device == "a").order_by(StatusEvent.id)
    assert [(e.state, e.reason) for e in events] == [("online", None), ("offline", "stopped"), ("online", None)]
    a, b = Device.get_by_id("a"), Device.get_by_id("b")
    assert (a.status, state.get("a").status) == ("online", "online")
    assert a.last_seen_ms == state.get("a").last_seen_ms is not None
    assert schemas.Meta.model_validate_json(b.meta_json).hostname == "second" == state.get("b").meta.hostname


def test_last_seen_never_moves_back(database):
    t = now_ms()
    late = Received(1, 1, "a", Channel.TELEMETRY, schemas.Telemetry.model_validate(telemetry("a", ts=t)), t)
    early = Received(2, 1, "a", Channel.TELEMETRY, schemas.Telemetry.model_validate(telemetry("a", ts=t - 5000)),
                     t - 5000)
    state = store_batches(database, [late], [early])
    assert Device.get_by_id("a").last_seen_ms == t == state.get("a").last_seen_ms


def test_a_device_enrolled_after_a_reject_is_stored_once_ingest_forgets_it(database):
    q: queue.Queue = queue.Queue()
    counters: Counter = Counter()
    writer = BatchWriter(database, q, FleetState(), lambda mid, qos: None, counters)
    writer.stopping.set()
    q.put(received(1, "c", Channel.TELEMETRY, telemetry("c")))
    writer.run()
    assert counters["rejected_unknown_device"] == 1
    Device.create(id="c", name="c", key_hash="x", key_hint="abcd", created_ms=1)
    writer.forget_device("c")  # what the registry sync and the device actions do
    q.put(received(2, "c", Channel.TELEMETRY, telemetry("c")))
    writer.run()
    assert counters["stored_telemetry"] == 1 and Sample.select().where(Sample.device == "c").count() == 1


def test_sample_tuples_match_the_sample_rows():
    from fleet_server.store.bulk import columns
    from fleet_server.store.rows import SAMPLE_COLUMNS, telemetry_row, telemetry_values
    assert (*SAMPLE_COLUMNS, "received_ms") == columns(Sample)  # ingest adds the receive time
    for data in (telemetry("a"), telemetry("a", load_avg=None, openclaw={"up": True})):
        t = schemas.Telemetry.model_validate(data)
        assert dict(zip(SAMPLE_COLUMNS, telemetry_values(t), strict=True)) == telemetry_row(t)
