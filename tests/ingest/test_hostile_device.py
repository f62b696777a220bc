"""One hostile device must never stop the fleet: poison payloads through a real Mosquitto, a real
FleetServer and a real SQLite file. Each test has a canary device whose good messages must keep
being stored while (and after) the hostile device sends its payload."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator

import pytest
from e2e_helpers import wait_for
from payload_helpers import DeviceConn, batch, dumps, log_record, now_ms, telemetry, usage_record

from fleet_server.server import FleetServer
from fleet_server.store.models import LogRecord, RejectCount, Sample, UsageRecord
from fleet_server.store.usage import sums
from shared.topics import Channel


def rejects(device_id: str) -> dict[str, int]:
    return {r.reason: r.count for r in RejectCount.select().where(RejectCount.device == device_id)}


def samples(device_id: str) -> int:
    return Sample.select().where(Sample.device == device_id).count()


def usage_ids(device_id: str) -> set[str]:
    return {r.id for r in UsageRecord.select(UsageRecord.id).where(UsageRecord.device == device_id)}


@contextlib.contextmanager
def write_lock(server: FleetServer) -> Iterator[None]:
    """Hold SQLite's write lock from a second connection (as a CLI command writing would)."""
    con = sqlite3.connect(server.opts.data_dir / "clawfleet.sqlite", isolation_level=None)
    try:
        con.execute("BEGIN IMMEDIATE")
        yield
        con.execute("COMMIT")
    finally:
        con.close()


def canary_sample_stored(canary: DeviceConn, ts: int) -> None:
    canary.publish(Channel.TELEMETRY, telemetry(canary.device_id, ts=ts))
    wait_for(lambda: Sample.get_or_none((Sample.device == canary.device_id) & (Sample.ts == ts)), 10,
             what="the canary's sample to be stored")




@pytest.mark.parametrize(("channel", "raw"), [
    (Channel.USAGE, b"[" * 100_000),
    (Channel.USAGE, b'{"v":1,"records":' + b"[" * 5_000 + b"]" * 5_000 + b"}"),
    (Channel.TELEMETRY, b'{"v":1,"device_id":"x","ts":1,"cpu_pct":' + b"9" * 5000 + b"}"),
    (Channel.META, b'{"v":1,"cpu_count":1' + b"0" * 5000 + b".5}"),
], ids=["100k-brackets", "deep-records", "5000-digit-int", "5000-digit-float"])
def test_poison_payload_is_rejected_and_ingest_goes_on(fleet: FleetServer, channel, raw):
    with DeviceConn(fleet, "hostile") as hostile, DeviceConn(fleet, "canary") as canary:
        hostile.publish(channel, raw)
        canary_sample_stored(canary, now_ms())
        wait_for(lambda: rejects(hostile.device_id), 5, what="the reject to be counted")
        assert sum(rejects(hostile.device_id).values()) == 1
        assert fleet.health().ok, fleet.health()
    # acked as rejected: a restart (persistent session, broker persistence) does not redeliver it
    fleet.stop()
    fleet.start()
    assert fleet.ingest is not None and fleet.ingest.connected.wait(10)
    with canary.reopen():
        canary_sample_stored(canary, now_ms() + 1)
    assert sum(rejects(hostile.device_id).values()) == 1


def test_integer_above_int64_is_rejected_without_stalling_the_writer(fleet: FleetServer):
    with DeviceConn(fleet, "hostile") as hostile, DeviceConn(fleet, "canary") as canary:
        hostile.publish(Channel.USAGE, batch(hostile.device_id, [usage_record(input_tokens=2**63)]))
        hostile.publish(Channel.TELEMETRY, telemetry(hostile.device_id, mem_total_bytes=2**64))
        good = usage_record()
        canary.publish(Channel.USAGE, batch(canary.device_id, [good]))
        wait_for(lambda: usage_ids(canary.device_id) == {good["id"]}, 10, what="the canary's usage record")
        canary_sample_stored(canary, now_ms())
        assert rejects(hostile.device_id) == {"invalid": 2}
        assert usage_ids(hostile.device_id) == set() and samples(hostile.device_id) == 0


def test_a_batch_the_database_refuses_is_split_and_only_the_culprit_rejected(fleet: FleetServer):
    """A payload that passes the schema but fails in the database (here: a trigger refuses the
    model name "poison") is rejected alone; the rest of its batch is stored and nothing is retried."""
    assert fleet.database is not None
    fleet.database.execute_sql(
        "CREATE TRIGGER refuse_poison BEFORE INSERT ON usage_record WHEN NEW.model = 'poison' "
        "BEGIN SELECT RAISE(ABORT, 'poison model refused'); END")
    assert fleet.ingest is not None
    with DeviceConn(fleet, "hostile") as hostile, DeviceConn(fleet, "canary") as canary:
        ok = [usage_record() for _ in range(3)]
        with write_lock(fleet):  # the writer waits, so what follows arrives while it is blocked: one batch
            received = fleet.ingest.counters["received"]
            canary.publish(Channel.USAGE, batch(canary.device_id, [ok[0]]))
            wait_for(lambda: fleet.ingest.counters["received"] > received, 5, what="the first message")
            hostile.publish(Channel.USAGE, batch(hostile.device_id, [usage_record(model="poison")]))
            for rec in ok[1:]:
                canary.publish(Channel.USAGE, batch(canary.device_id, [rec]))
            hostile.publish(Channel.TELEMETRY, telemetry(hostile.device_id))
            wait_for(lambda: fleet.ingest.counters["received"] >= received + 5, 5, what="all messages received")
        wait_for(lambda: usage_ids(canary.device_id) == {r["id"] for r in ok}, 10, what="the canary's records")
        wait_for(lambda: rejects(hostile.device_id), 5, what="the poison batch to be rejected")
        assert rejects(hostile.device_id) == {"store_error": 1}
        assert samples(hostile.device_id) == 1  # the hostile device's good message of the same batch is kept
        canary_sample_stored(canary, now_ms())
        assert rejects(hostile.device_id) == {"store_error": 1}  # acked: not retried


def test_non_finite_and_absurd_values_are_rejected(fleet: FleetServer):
    day = 86_400_000
    with DeviceConn(fleet, "hostile") as hostile, DeviceConn(fleet, "canary") as canary:
        d = hostile.device_id
        bad_telemetry = [
            dumps(telemetry(d))[:-1] + b',"uptime_s":Infinity}',
            dumps(telemetry(d))[:-1] + b',"cpu_pct":NaN}',
            dumps(telemetry(d))[:-1] + b',"net_rx_bps":1e999}',
            dumps(telemetry(d, ts=946_684_800_000)),  # 2000-01-01
            dumps(telemetry(d, ts=4_102_444_000_000)),  # 2099-12-31
            dumps(telemetry(d, ts=now_ms() + day)),  # a day ahead of the server's clock
            dumps(telemetry(d, ts=now_ms() - 40 * day)),
        ]
        for raw in bad_telemetry:
            hostile.publish(Channel.TELEMETRY, raw)
        bad_usage = [usage_record(input_tokens=10**18), usage_record(cost_usd=1e300),
                     usage_record(ts=now_ms() + 2 * day), usage_record(ts=1_000_000_000_000)]  # 2001
        for rec in bad_usage:
            hostile.publish(Channel.USAGE, batch(d, [rec]))
        hostile.publish(Channel.USAGE, dumps(batch(d, [usage_record()]))[:-2] + b',"cost_usd":Infinity}]}')
        lie = usage_record(input_tokens=10, output_tokens=5, cache_read_tokens=0, cache_write_tokens=0,
                           total_tokens=10**11)
        canary.publish(Channel.USAGE, batch(canary.device_id, [lie]))
        wait_for(lambda: usage_ids(canary.device_id), 10, what="the canary's record")
        canary_sample_stored(canary, now_ms())
        wait_for(lambda: sum(rejects(d).values()) == len(bad_telemetry) + len(bad_usage) + 1, 5,
                 what=f"every bad payload rejected, got {rejects(d)}")
        assert samples(d) == 0 and usage_ids(d) == set()
        assert set(rejects(d)) <= {"not_json", "invalid", "ts_out_of_window"}
        assert rejects(d).get("ts_out_of_window") == 6
        assert UsageRecord.get(UsageRecord.device == canary.device_id).total_tokens == 15  # recomputed


def test_record_ids_are_scoped_per_device(fleet: FleetServer):
    """Device B cannot pre-empt device A's record ids: the same id from two devices is two records."""
    with DeviceConn(fleet, "alice") as a, DeviceConn(fleet, "bob") as b:
        b.publish(Channel.USAGE, batch(b.device_id, [usage_record("shared-id-0001", input_tokens=1)]))
        b.publish(Channel.LOGS, batch(b.device_id, [log_record("shared-id-0002", message="bob's")]))
        a.publish(Channel.USAGE, batch(a.device_id, [usage_record("shared-id-0001", input_tokens=1000)]))
        a.publish(Channel.LOGS, batch(a.device_id, [log_record("shared-id-0002", message="alice's")]))
        wait_for(lambda: usage_ids(a.device_id) == {"shared-id-0001"}, 10, what="alice's usage record")
        wait_for(lambda: LogRecord.select().where(LogRecord.device == a.device_id).count() == 1, 5,
                 what="alice's log record")
        assert UsageRecord.get((UsageRecord.device == a.device_id) & (UsageRecord.id == "shared-id-0001")
                               ).input_tokens == 1000
        assert LogRecord.get(LogRecord.device == a.device_id).message == "alice's"
        assert sums.total_usage(devices=[a.device_id]).input_tokens == 1000  # every view reads these sums
        assert rejects(a.device_id) == {} and rejects(b.device_id) == {}


def test_a_duplicate_id_with_different_content_is_counted(fleet: FleetServer):
    with DeviceConn(fleet, "dup") as dev:
        d = dev.device_id
        first = usage_record("record-0001", input_tokens=7)
        dev.publish(Channel.USAGE, batch(d, [first]))
        dev.publish(Channel.USAGE, batch(d, [first]))  # a redelivery: identical, silently idempotent
        dev.publish(Channel.USAGE, batch(d, [{**first, "input_tokens": 9999, "total_tokens": 0}]))
        dev.publish(Channel.LOGS, batch(d, [log_record("log-0001", message="one")]))
        dev.publish(Channel.LOGS, batch(d, [log_record("log-0001", message="another")]))
        wait_for(lambda: rejects(d).get("duplicate_conflict") == 2, 10, what=f"two conflicts, got {rejects(d)}")
        assert UsageRecord.get(UsageRecord.device == d).input_tokens == 7  # the first one stays
        assert LogRecord.get(LogRecord.device == d).message == "one"
        assert sums.total_usage(devices=[d]).input_tokens == 7


def test_reject_logging_is_rate_limited_per_device_and_reason(fleet: FleetServer, caplog):
    with DeviceConn(fleet, "spammer") as dev, DeviceConn(fleet, "canary") as canary:
        with caplog.at_level("WARNING", logger="clawfleet.ingest"):
            for i in range(200):
                dev.publish(Channel.TELEMETRY, b"not json %d" % i, retain=False)
            dev.publish(Channel.TELEMETRY, json.dumps(telemetry(dev.device_id, cpu_pct=500)).encode())
            canary_sample_stored(canary, now_ms())
            wait_for(lambda: sum(rejects(dev.device_id).values()) == 201, 10, what="every reject counted")

            def lines() -> list[str]:
                return [r.getMessage() for r in caplog.records if "rejected" in r.getMessage()]

            # the writer logs after its commit: the counts may be in the database a moment before the line
            wait_for(lambda: any("invalid" in m for m in lines()), 10, what="the invalid message's log line")
    lines = lines()
    assert len([m for m in lines if "not_json" in m]) == 1, lines
    assert len([m for m in lines if "invalid" in m]) == 1, lines
    assert rejects(dev.device_id) == {"not_json": 200, "invalid": 1}


def test_an_unexpected_error_while_validating_is_counted_and_acked(fleet: FleetServer, monkeypatch):
    """A bug in validation (simulated: the classifier raises for one device) must not reach paho's
    network thread: the message is rejected as ``internal_error``, acknowledged, and ingest goes on."""
    from fleet_server.ingest import subscriber

    real = subscriber.classify

    def buggy(msg, received_ms):
        if "/hostile/" in msg.topic:
            raise RuntimeError("simulated bug")
        return real(msg, received_ms)

    monkeypatch.setattr(subscriber, "classify", buggy)
    with DeviceConn(fleet, "hostile") as hostile, DeviceConn(fleet, "canary") as canary:
        hostile.publish(Channel.TELEMETRY, telemetry(hostile.device_id))
        canary_sample_stored(canary, now_ms())
        wait_for(lambda: rejects(hostile.device_id) == {"internal_error": 1}, 5, what="the internal_error reject")
        assert fleet.health().ok
