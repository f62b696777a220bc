"""Delivery receipts, server side: after each batch commits, tell each device what is stored.

Agents number the telemetry, usage and log messages of their outbox per channel (``outbox``,
``seq``, ``seq_floor`` in the payload, :class:`shared.schemas._Delivered`). Inside the batch's
transaction :meth:`ReceiptBook.record` adds each message's number to its device's marks
(:class:`~fleet_server.store.models.ReceiptMark`): per channel the highest number up to which
everything arrived (``upto``) and the ranges above it. After the commit :class:`ReceiptPublisher`
publishes the device's marks as a retained receipt on ``clawfleet/v1/<device>/receipt``
(:class:`shared.payloads.Receipt`), at most once per :data:`RECEIPT_INTERVAL_S` per device. Only
that device may read the topic and only the server may publish it (broker ACLs). QoS 0: a receipt
holds everything confirmed so far, so one lost on the way is made good by the next (the agent keeps
sampling) or by the retained copy at its next connect — and paho spends 13 µs of CPU on a QoS 0
publish against 58-65 µs with its PUBACK (measured), at up to one receipt per device per second.

Pitfalls and how they are handled:

- A message rejected for good (invalid, outside the time window, refused by the database) counts
  as received, so one poison record never stalls a watermark; one rejected for a reason that may
  pass later (:data:`RETRYABLE_REJECTS`) does not, and the agent sends it again.
- Gaps the agent made itself (telemetry dropped from a full outbox) never arrive: each message
  carries ``seq_floor``, the lowest number of its channel the agent still holds, and ``upto`` moves
  to at least ``seq_floor - 1``.
- A recreated outbox has a new id: the marks start again for it; late messages of the one before
  (``prev_outbox``) change nothing.
- Duplicates (resends) change no mark but make the receipt go out again, so a receipt the agent
  missed is repeated.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import paho.mqtt.client as mqtt

from fleet_server.ingest.messages import DeliveryMark, Item, Received
from fleet_server.store import bulk
from fleet_server.store.receipts import MarkRow, load_marks, save_marks
from shared.payloads import MAX_RECEIPT_RANGES, RECEIPT_CHANNELS, Coverage, merge_coverage
from shared.topics import Channel, device_topic
from shared.version import PROTOCOL_VERSION

log = logging.getLogger("clawfleet.ingest")

RECEIPT_INTERVAL_S = 1.0
"""A device gets at most one receipt per this many seconds (the newest marks), seconds."""
RETRYABLE_REJECTS = frozenset({"unknown_device", "revoked_device", "rate_limited", ""})
"""Reject reasons that do not count as received: the same message may be stored later (the device
gets enrolled or re-enabled, its rate drops), so the agent must keep it."""


@dataclass
class DeviceMarks:
    """What is committed of one device's outbox ``outbox``: per channel a :class:`Coverage`."""

    outbox: str
    prev_outbox: str | None
    channels: dict[str, Coverage]

    @classmethod
    def from_row(cls, row: MarkRow) -> DeviceMarks:
        """Parse a stored row (a damaged ``channels`` value starts the marks afresh)."""
        _device, outbox, prev, text = row
        try:
            channels = {name: merge_coverage(int(v[0]), [(int(lo), int(hi)) for lo, hi in v[1]])
                        for name, v in json.loads(text).items() if name in RECEIPT_CHANNELS}
        except (ValueError, TypeError, KeyError, IndexError):
            channels = {}
        return cls(outbox, prev, channels)

    def to_row(self, device_id: str) -> MarkRow:
        """The row to store (``channels`` as compact JSON, written without the json module: this runs for
        every device of every batch)."""
        text = ",".join(f'"{k}":[{c.upto},[{",".join(f"[{lo},{hi}]" for lo, hi in c.ranges)}]]'
                        for k, c in sorted(self.channels.items()))
        return device_id, self.outbox, self.prev_outbox, "{" + text + "}"

    def copy(self) -> DeviceMarks:
        """A copy to change (its coverages are immutable)."""
        return DeviceMarks(self.outbox, self.prev_outbox, dict(self.channels))

    def add(self, mark: DeliveryMark) -> None:
        """Count ``mark`` as received (see the module docstring for outbox changes and floors)."""
        if mark.outbox != self.outbox:
            if mark.outbox == self.prev_outbox:  # a late message of the outbox before: nothing to confirm
                return
            self.prev_outbox, self.outbox, self.channels = self.outbox, mark.outbox, {}
        cov = self.channels.get(mark.channel, Coverage())
        self.channels[mark.channel] = merge_coverage(max(cov.upto, mark.floor - 1),
                                                     [*cov.ranges, (mark.seq, mark.seq)], MAX_RECEIPT_RANGES)

    def receipt(self, ts_ms: int) -> bytes:
        """The receipt payload (``{"v": 1, "ts", "outbox", "channels": {name: {"upto", "ranges"?}}}``)."""
        channels = {}
        for name, c in sorted(self.channels.items()):
            channels[name] = {"upto": c.upto, "ranges": [list(r) for r in c.ranges]} if c.ranges else {"upto": c.upto}
        return json.dumps({"v": PROTOCOL_VERSION, "ts": ts_ms, "outbox": self.outbox, "channels": channels},
                          separators=(",", ":")).encode()


def counts_as_received(item: Item) -> bool:
    """True for a stored message, or one rejected for good, that carries delivery fields."""
    if item.mark is None:
        return False
    return isinstance(item, Received) or item.reason not in RETRYABLE_REJECTS


class ReceiptBook:
    """Records receipt marks inside the writer's transactions, keeping the committed marks in memory
    so a batch costs no parsing of unchanged rows and, on SQLite (one writing process), no reading.
    The memory follows only what committed (:meth:`committed`), so a rolled-back batch never makes a
    later one confirm what was not stored. On PostgreSQL the rows are always read ``FOR UPDATE``
    (another ingest worker may have changed them)."""

    MAX_CACHED = 200_000

    def __init__(self) -> None:
        self._cache: dict[str, tuple[MarkRow, DeviceMarks]] = {}
        self._rows: dict[str, MarkRow] = {}  # the rows the last record() left, for committed()

    def record(self, items: Iterable[Item], now_ms: int) -> dict[str, DeviceMarks]:
        """Add the marks of ``items`` (already filtered with :func:`counts_as_received`, devices
        enrolled) to their devices' stored marks, inside the batch's transaction. Returns every device
        touched with its marks (to publish after the commit, even when nothing changed: the agent may
        have missed the last receipt), for :meth:`committed`."""
        by_device: dict[str, list[DeliveryMark]] = {}
        for item in items:
            if item.mark is not None:
                by_device.setdefault(item.device_id, []).append(item.mark)
        if not by_device:
            return {}
        cached = self._cache if bulk.is_sqlite() else {}
        stored = {d: c[0] for d, c in cached.items() if d in by_device}
        stored.update(load_marks([d for d in by_device if d not in stored], now_ms))
        out: dict[str, DeviceMarks] = {}
        changed: list[MarkRow] = []
        self._rows = {}
        for device_id, marks in by_device.items():
            row = stored.get(device_id)
            hit = self._cache.get(device_id)
            if hit is not None and hit[0] == row:
                dm = hit[1].copy()
            elif row and row[1]:
                dm = DeviceMarks.from_row(row)
            else:  # none yet (or PostgreSQL's placeholder)
                dm = DeviceMarks(marks[0].outbox, None, {})
            for mark in marks:
                dm.add(mark)
            new = self._rows[device_id] = dm.to_row(device_id)
            if new != row:
                changed.append(new)
            out[device_id] = dm
        save_marks(changed, now_ms)
        return out

    def committed(self, marks: dict[str, DeviceMarks]) -> None:
        """The transaction that recorded ``marks`` committed: remember them."""
        if len(self._cache) + len(marks) > self.MAX_CACHED:
            self._cache.clear()
        for device_id, dm in marks.items():
            row = self._rows.get(device_id)
            self._cache[device_id] = (row if row is not None else dm.to_row(device_id), dm)

    def forget(self, device_id: str) -> None:
        """Drop a device's cached marks (deleted or re-enrolled)."""
        self._cache.pop(device_id, None)


class ReceiptPublisher:
    """Publishes the newest marks of each device offered to it, retained (QoS 0), at most once per
    ``interval_s`` per device, from its own thread, while ``client`` is connected (what waits
    meanwhile goes out after the reconnect). Counts ``receipts_published`` in ``counters``.

    Args:
        client: ingest's paho client.
        counters: ingest's counters.
        interval_s: seconds between two receipts of one device.
    """

    TICK_S = 0.1

    def __init__(self, client: mqtt.Client, counters: Counter[str], interval_s: float = RECEIPT_INTERVAL_S) -> None:
        self.client, self.counters, self.interval_s = client, counters, interval_s
        self._due: dict[str, DeviceMarks] = {}
        self._last: dict[str, float] = {}  # device -> monotonic time of its last receipt
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="clawfleet-receipts", daemon=True)

    def offer(self, marks: dict[str, DeviceMarks]) -> None:
        """Queue the marks of a committed batch (newer marks of a device replace older ones)."""
        if marks:
            with self._lock:
                self._due.update(marks)

    def start(self) -> None:
        """Start the publishing thread."""
        self._thread.start()

    def stop(self) -> None:
        """Publish what is due (when connected) and stop the thread."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self.flush(force=True)

    def forget(self, device_id: str) -> None:
        """Drop a deleted device."""
        with self._lock:
            self._due.pop(device_id, None)
            self._last.pop(device_id, None)

    def _run(self) -> None:
        while not self._stop.wait(self.TICK_S):
            try:
                self.flush()
            except Exception:  # a bug here must not end receipts for everyone
                log.exception("publishing receipts failed")

    def flush(self, force: bool = False) -> int:
        """Publish the receipts that are due (``force``: all waiting); returns how many."""
        if not self.client.is_connected():
            return 0
        now = time.monotonic()
        with self._lock:
            due = [d for d in self._due if force or now - self._last.get(d, -1e9) >= self.interval_s]
            items = [(d, self._due.pop(d)) for d in due]
            for d in due:
                self._last[d] = now
            if len(self._last) > 100_000:  # forget devices quiet for longer than the interval
                self._last = {d: t for d, t in self._last.items() if now - t < self.interval_s}
        ts = int(time.time() * 1000)
        for device_id, dm in items:
            self.client.publish(device_topic(device_id, Channel.RECEIPT), dm.receipt(ts), qos=0, retain=True)
        if items:
            self.counters["receipts_published"] += len(items)
        return len(items)
