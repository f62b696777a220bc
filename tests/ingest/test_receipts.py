"""Receipt marks on the server (real SQLite file, messages classified from their raw bytes as paho
delivers them, no broker): what a device's receipt confirms after each committed batch."""

from __future__ import annotations

import json
import queue
import uuid
from collections import Counter

import paho.mqtt.client as mqtt
import pytest
from payload_helpers import batch, now_ms, telemetry, usage_record
from writer_helpers import writer_database

from fleet_server.ingest.receipts import DeviceMarks, ReceiptPublisher
from fleet_server.ingest.subscriber import classify
from fleet_server.ingest.writer import BatchWriter
from fleet_server.state import FleetState
from fleet_server.store.models import Device, ReceiptMark, UsageRecord
from shared import payloads
from shared.payloads import Coverage

OUTBOX = "0123456789abcdef"


def message(device_id: str, channel: str, data: dict | bytes, seq: int | None = None, floor: int | None = None,
            outbox: str = OUTBOX, mid: int = 1) -> mqtt.MQTTMessage:
    """An MQTT message as paho hands it to ingest, stamped like the agent stamps it."""
    raw = data if isinstance(data, bytes) else json.dumps(data, separators=(",", ":")).encode()
    if seq is not None:
        raw = payloads.stamp(raw, outbox, seq, 1 if floor is None else floor)  # default: the agent holds them all
    m = mqtt.MQTTMessage(mid=mid, topic=f"clawfleet/v1/{device_id}/{channel}".encode())
    m.payload, m.qos = raw, 1
    return m


class Harness:
    """A batch writer on a real SQLite file that keeps what it would publish as receipts."""

    def __init__(self, database) -> None:
        self.database = database
        self.offered: list[dict[str, DeviceMarks]] = []
        self.counters: Counter = Counter()

    def store(self, *messages: mqtt.MQTTMessage) -> None:
        """Classify and store ``messages`` as one batch (one transaction)."""
        q: queue.Queue = queue.Queue()
        for m in messages:
            q.put(classify(m, now_ms()))
        writer = BatchWriter(self.database, q, FleetState(), lambda mid, qos: None, self.counters,
                             on_receipts=self.offered.append)
        writer.stopping.set()
        writer.run()

    def marks(self, device_id: str) -> DeviceMarks:
        """The stored marks of ``device_id``."""
        row = ReceiptMark.get_by_id(device_id)
        return DeviceMarks.from_row((row.device, row.outbox, row.prev_outbox, row.channels))

    def receipt(self, device_id: str) -> payloads.Receipt:
        """The newest receipt offered for ``device_id``, parsed as the agent parses it."""
        last = next(o[device_id] for o in reversed(self.offered) if device_id in o)
        return payloads.parse_receipt(last.receipt(now_ms()))


@pytest.fixture
def harness(tmp_path):
    database = writer_database(tmp_path)
    yield Harness(database)
    database.close()


def usage(device_id: str, seq: int, floor: int | None = None, **record) -> mqtt.MQTTMessage:
    return message(device_id, "usage", batch(device_id, [usage_record(**record)]), seq, floor)


def test_marks_are_contiguous_with_ranges_above_a_gap(harness):
    harness.store(usage("a", 1), usage("a", 2), usage("a", 4), message("a", "telemetry", telemetry("a"), 1))
    assert harness.receipt("a").channels == {"usage": Coverage(2, ((4, 4),)), "telemetry": Coverage(1)}
    harness.store(usage("a", 3, floor=3))  # the gap arrives (a resend): the watermark closes over the range
    assert harness.receipt("a").channels["usage"] == Coverage(4)
    assert harness.marks("a").channels["usage"] == Coverage(4)  # stored in the database, not only in memory


def test_a_poison_record_and_an_invalid_message_count_as_received(harness):
    harness.store(usage("a", 1), usage("a", 2, model="poison"), usage("a", 3))
    assert UsageRecord.select().count() == 2 and harness.counters["rejected_store_error"] == 1
    bad = batch("a", [usage_record()])
    bad["records"][0]["input_tokens"] = -5  # invalid: rejected, its delivery fields still readable
    harness.store(message("a", "usage", bad, seq=4))
    harness.store(message("a", "usage", b'{"v":1,"outbox":"' + OUTBOX.encode() + b'","seq":5,"ts":"x"}'))
    assert harness.counters["rejected_invalid"] == 2
    assert harness.receipt("a").channels["usage"] == Coverage(5)


def test_retryable_rejects_and_unknown_devices_do_not_count(harness):
    harness.store(usage("a", 1), usage("zz-unknown", 1))
    assert "zz-unknown" not in {d for o in harness.offered for d in o}
    assert ReceiptMark.get_or_none(ReceiptMark.device == "zz-unknown") is None
    Device.update(revoked_ms=1).where(Device.id == "b").execute()
    harness.store(usage("b", 1))
    assert ReceiptMark.get_or_none(ReceiptMark.device == "b") is None


def test_the_floor_settles_what_the_agent_dropped(harness):
    t = now_ms() - 1000
    harness.store(*[message("a", "telemetry", telemetry("a", ts=t + seq), seq) for seq in (1, 2)])
    # 3..8 dropped from a full outbox; 10 overtakes 9 (sent again later)
    harness.store(message("a", "telemetry", telemetry("a", ts=t + 10), 10, floor=9))
    assert harness.receipt("a").channels["telemetry"] == Coverage(8, ((10, 10),))
    harness.store(message("a", "telemetry", telemetry("a", ts=t + 9), 9, floor=9))
    assert harness.receipt("a").channels["telemetry"] == Coverage(10)


def test_a_new_outbox_starts_afresh_and_late_messages_of_the_old_one_change_nothing(harness):
    harness.store(usage("a", 1), usage("a", 2))
    new = "fedcba9876543210"
    harness.store(message("a", "usage", batch("a", [usage_record()]), 1, outbox=new))
    assert harness.receipt("a").outbox == new and harness.receipt("a").channels == {"usage": Coverage(1)}
    harness.store(usage("a", 3))  # a straggler of the recreated outbox
    r = harness.receipt("a")
    assert r.outbox == new and r.channels == {"usage": Coverage(1)}


def test_duplicates_change_no_mark_but_the_receipt_goes_out_again(harness):
    rid = uuid.uuid4().hex
    harness.store(usage("a", 1, rid=rid))
    before = ReceiptMark.get_by_id("a").updated_ms
    harness.offered.clear()
    harness.store(usage("a", 1, rid=rid))  # a resend: stored once, confirmed again
    assert UsageRecord.select().count() == 1
    assert harness.receipt("a").channels["usage"] == Coverage(1)
    assert ReceiptMark.get_by_id("a").updated_ms == before  # nothing written


def test_messages_without_delivery_fields_are_stored_as_before(harness):
    harness.store(message("a", "usage", batch("a", [usage_record()])), message("a", "telemetry", telemetry("a")))
    assert UsageRecord.select().count() == 1 and harness.offered == []


def test_ranges_above_the_watermark_are_bounded(harness):
    harness.store(*[usage("a", seq) for seq in range(2, 200, 2)])  # 1 never arrives, nor any odd number
    cov = harness.receipt("a").channels["usage"]
    assert cov.upto == 0 and len(cov.ranges) == payloads.MAX_RECEIPT_RANGES and cov.ranges[0] == (2, 2)


class FakeClient:
    """Stands in for paho: records publishes (the publisher's pacing is what is tested here)."""

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes, int, bool]] = []

    def is_connected(self) -> bool:
        return True

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        self.published.append((topic, payload, qos, retain))


def test_receipts_are_coalesced_per_device():
    client = FakeClient()
    pub = ReceiptPublisher(client, Counter(), interval_s=60)  # type: ignore[arg-type]
    for upto in (1, 2, 3):
        pub.offer({"a": DeviceMarks(OUTBOX, None, {"usage": Coverage(upto)})})
    assert pub.flush() == 1
    pub.offer({"a": DeviceMarks(OUTBOX, None, {"usage": Coverage(4)}), "b": DeviceMarks(OUTBOX, None, {})})
    assert pub.flush() == 1  # b now; a waits for its interval
    assert pub.flush(force=True) == 1
    topics = [t for t, *_ in client.published]
    assert topics == ["clawfleet/v1/a/receipt", "clawfleet/v1/b/receipt", "clawfleet/v1/a/receipt"]
    assert all(qos == 0 and retain for _, _, qos, retain in client.published)
    assert payloads.parse_receipt(client.published[0][1]).channels["usage"] == Coverage(3)  # the newest only
