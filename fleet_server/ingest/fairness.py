"""Fair batches: one busy device cannot make the others wait behind its backlog.

The subscriber queues messages in arrival order. Taken first-in first-out, a device that sent a
burst (an agent emptying its outbox after an outage, or a flood within its budget) fills the next
batches, and a sample of any other device waits until all of it is stored — seconds, for tens of
thousands of records. :class:`FairBatcher` moves what is queued into one lane per device and
builds each batch round-robin over the lanes: at most :data:`PER_DEVICE_RECORDS` records of one
device per batch (always at least one message), at most :data:`MAX_RECORDS` records and
``max_items`` messages in all, starting each batch with the device after the last one served. So
every device with something waiting is in one of the next batches, and a batch's size (its
commit time) is bounded by records, not messages. Each device's messages keep their order.

Weights: a usage or logs message counts its records; every other message counts 1. Rejected
messages cost nothing to store (one counter per device and reason per batch) and hold the broker's
in-flight window until acknowledged, so they skip the lanes: every batch takes all of them.
"""

from __future__ import annotations

import queue
import time
from collections import OrderedDict, deque

from fleet_server.ingest.messages import Item, Received, Rejected

PER_DEVICE_RECORDS = 500
"""Records of one device a batch takes at most (one full usage or logs message)."""
MAX_RECORDS = 5000
"""Records a batch holds at most (messages of other channels count 1)."""
DRAIN_MAX = 20_000
"""Messages moved from the queue into lanes per batch at most (bounds the work per call)."""


def weight(item: Item) -> int:
    """Records of a usage or logs message, else 1."""
    if isinstance(item, Received):
        records = getattr(item.payload, "records", None)
        if records is not None:
            return max(1, len(records))
    return 1


class FairBatcher:
    """Builds the writer's batches from the subscriber's queue, fairly across devices.

    Only the writer thread calls :meth:`next_batch`; :attr:`waiting` may be read from any thread.

    Args:
        items: the subscriber's queue.
        max_items: messages per batch at most.
        max_records: records per batch at most (:func:`weight`).
        per_device_records: records of one device per batch at most (one message at least).
        gather_s: when a message arrives after a quiet spell (nothing waiting), how long to let more
            arrive before the batch is built (seconds; 0: at once). A fleet reporting a few hundred
            messages a second then commits a few dozen batches a second instead of one per message.
    """

    def __init__(self, items: queue.Queue[Item], max_items: int = 1000, max_records: int = MAX_RECORDS,
                 per_device_records: int = PER_DEVICE_RECORDS, gather_s: float = 0.0) -> None:
        self.items, self.max_items, self.gather_s = items, max_items, gather_s
        self.max_records, self.per_device_records = max_records, per_device_records
        self._lanes: OrderedDict[str, deque[Item]] = OrderedDict()
        self._rejected: list[Item] = []
        self.waiting = 0
        """Messages taken off the queue that no batch has taken yet."""

    def _take(self, item: Item) -> None:
        if isinstance(item, Rejected):
            self._rejected.append(item)
        else:
            self._lanes.setdefault(item.device_id, deque()).append(item)
        self.waiting += 1

    def _drain(self, wait_s: float) -> None:
        if not self._lanes and not self._rejected:
            try:
                self._take(self.items.get(timeout=wait_s))
            except queue.Empty:
                return
            if self.gather_s > 0 and self.items.qsize() < self.max_items:
                time.sleep(self.gather_s)
        for _ in range(DRAIN_MAX):
            try:
                self._take(self.items.get_nowait())
            except queue.Empty:
                break

    def next_batch(self, wait_s: float) -> list[Item]:
        """The next batch (empty when nothing arrived within ``wait_s`` seconds)."""
        self._drain(wait_s)
        rejected, self._rejected = self._rejected, []
        batch: list[Item] = []
        records = 0
        served: list[str] = []
        while self._lanes and len(batch) < self.max_items and records < self.max_records:
            progressed = False
            for device in list(self._lanes):
                lane, mine = self._lanes[device], 0
                while lane and len(batch) < self.max_items and (mine == 0 or mine + weight(lane[0])
                                                                 <= self.per_device_records):
                    item = lane.popleft()
                    batch.append(item)
                    mine += weight(item)
                    progressed = True
                if mine:
                    records += mine
                    served.append(device)
                if not lane:
                    del self._lanes[device]
                if len(batch) >= self.max_items or records >= self.max_records:
                    break
            if not progressed:
                break
            if records >= self.max_records or not any(self._lanes):
                break
        for device in served:  # those served go to the back: the next batch starts with the others
            if device in self._lanes:
                self._lanes.move_to_end(device)
        batch += rejected
        self.waiting -= len(batch)
        return batch
