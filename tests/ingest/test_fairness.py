"""Fair batches: a device's backlog does not make another device's message wait behind it; each
device's messages keep their order; a batch is bounded by records (real queue, real payload models)."""

from __future__ import annotations

import queue

from payload_helpers import batch, telemetry, usage_record

from fleet_server.ingest.fairness import FairBatcher, weight
from fleet_server.ingest.messages import Received, Rejected
from shared import schemas
from shared.topics import Channel


def usage_message(device: str, n: int, mid: int) -> Received:
    payload = schemas.UsageBatch.model_validate(batch(device, [usage_record() for _ in range(n)]))
    return Received(mid, 1, device, Channel.USAGE, payload, 0)


def sample(device: str, mid: int) -> Received:
    return Received(mid, 1, device, Channel.TELEMETRY, schemas.Telemetry.model_validate(telemetry(device)), 0)


def test_a_backlog_does_not_delay_another_device():
    items: queue.Queue = queue.Queue()
    for mid in range(40):  # 20,000 records from one device, queued first
        items.put(usage_message("busy", 500, mid))
    items.put(sample("canary", 1000))
    items.put(Rejected(1001, 1, "", "bad_topic", "x"))
    batcher = FairBatcher(items, max_items=1000, max_records=5000, per_device_records=500)
    first = batcher.next_batch(0.1)
    assert [i.mid for i in first if i.device_id == "canary"] == [1000], "the canary is in the very first batch"
    assert sum(weight(i) for i in first) <= 5000 + 2
    taken = list(first)
    while batcher.waiting:
        taken += batcher.next_batch(0.1)
    assert [i.mid for i in taken if i.device_id == "busy"] == list(range(40)), "each device keeps its order"
    assert batcher.next_batch(0.01) == [] and batcher.waiting == 0


def test_batches_alternate_between_busy_devices():
    items: queue.Queue = queue.Queue()
    for mid in range(10):
        items.put(usage_message("a", 500, mid))
        items.put(usage_message("b", 500, 100 + mid))
    batcher = FairBatcher(items, max_items=1000, max_records=1000, per_device_records=500)
    devices = [[i.device_id for i in batcher.next_batch(0.1)] for _ in range(4)]
    assert all(sorted(d) == ["a", "b"] for d in devices), devices


def test_after_a_quiet_spell_the_first_message_waits_for_others_to_share_its_commit():
    import threading

    items: queue.Queue = queue.Queue()
    items.put(sample("a", 1))
    late = threading.Timer(0.05, lambda: items.put(sample("b", 2)))
    late.start()
    try:
        gathered = FairBatcher(items, gather_s=2.0).next_batch(0.1)  # b arrives while a waits
    finally:
        late.cancel()
    assert sorted(i.mid for i in gathered) == [1, 2]
    items.put(sample("c", 3))
    assert [i.mid for i in FairBatcher(items).next_batch(0.1)] == [3], "without gathering: at once"
