"""The writer thread: takes batches off the subscriber's queue, stores each in one transaction,
acknowledges its messages after the commit, then applies the cache change.

A batch that fails because the database is unavailable (locked, down, disk full) is retried
unchanged with backoff. A batch that fails for any other reason is split in halves until the
message that fails is alone; that one is rejected (``store_error``) and acknowledged, the rest
is stored. So one message can never stall the writer for everyone.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable

from peewee import Database, InterfaceError, OperationalError

from fleet_server.ingest import receipts
from fleet_server.ingest.fairness import FairBatcher
from fleet_server.ingest.messages import CacheChange, Item, Rejected
from fleet_server.ingest.rejects import RejectLog, store_rejects
from fleet_server.ingest.writers import WRITERS, write_last_seen
from fleet_server.state import FleetState
from fleet_server.store import write_health
from fleet_server.store.locks import write_transaction
from fleet_server.store.models import Device, db
from shared.clock import now_ms

log = logging.getLogger("clawfleet.ingest")

BATCH_MAX = 1000
BATCH_WAIT_S = 0.2
GATHER_S = 0.05
"""After a quiet spell, how long the first message waits for others to share its commit (seconds)."""
RETRY_MAX_S = 30.0
UNKNOWN_RECHECK_S = 5.0
"""An id that is not in the devices table is looked up again after this long, seconds (messages
of a deleted device still queued by the broker cost no query each)."""
_DATA_ERRORS = ("integer overflow", "too big", "too many", "datatype mismatch")


def database_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` says the database cannot be used right now (retry later), False when the
    data being written is at fault (split the batch). Locked, busy, I/O, disk full, connection
    lost: unavailable. Value errors, constraint failures, SQLite binding errors: the data."""
    text = str(exc).lower()
    if isinstance(exc, OperationalError):
        return not any(s in text for s in _DATA_ERRORS)
    if isinstance(exc, InterfaceError):  # PostgreSQL: connection closed; SQLite: a value it cannot bind
        return "connection" in text or "closed" in text
    return False


class BatchWriter:
    """Stores what the subscriber queued. Run :meth:`run` in its own thread.

    Args:
        database: the open peewee database.
        items: the subscriber's queue.
        state: the latest-state cache (read by the writes, changed after each commit).
        ack: ``ack(mid, qos)`` acknowledges one MQTT message.
        counters: ingest's counters (``stored_<channel>``, ``rejected_<reason>``, ``acked``, ``batches``;
            :attr:`batch_seconds` sums the batches' time).
        publish: called with each batch's cache change inside its transaction, before the commit
            (several server processes: :class:`fleet_server.ingest.change_feed.ChangePublisher`).
        on_receipts: called after each commit with the devices whose receipt marks the batch touched
            (:meth:`fleet_server.ingest.receipts.ReceiptPublisher.offer`); None: no receipt marks kept.
    """

    def __init__(self, database: Database, items: queue.Queue[Item], state: FleetState,
                 ack: Callable[[int, int], None], counters: Counter[str],
                 publish: Callable[[CacheChange], None] | None = None,
                 on_receipts: Callable[[dict], None] | None = None) -> None:
        self.database, self.items, self.state, self._ack, self.counters = database, items, state, ack, counters
        self._publish = publish
        self._on_receipts = on_receipts
        self._receipt_book = receipts.ReceiptBook()
        self.stopping = threading.Event()
        self.last_commit_monotonic: float | None = None
        self.oldest_waiting_since: float | None = None  # monotonic time the current batch was taken
        self.batch_seconds = 0.0
        """Seconds spent storing batches (commit, ack, cache), summed; ``counters["batches"]`` counts them."""
        self._known: dict[str, bool] = {}  # device id -> enrolled and not revoked
        self._unknown: dict[str, float] = {}  # device id not in the table -> monotonic time it was looked up
        self._log_reject = RejectLog(log)
        self.batcher = FairBatcher(items, BATCH_MAX, gather_s=GATHER_S)

    def forget_device(self, device_id: str) -> None:
        """Drop a device from the known-device cache (after revoke, rotate or delete)."""
        self._known.pop(device_id, None)
        self._unknown.pop(device_id, None)
        self._receipt_book.forget(device_id)

    def run(self) -> None:
        """Store batches until :attr:`stopping` is set and the queue is empty."""
        with self.database.connection_context():
            while True:
                batch = self._next_batch()
                if batch:
                    self.oldest_waiting_since = started = time.monotonic()
                    self._store(batch)
                    self.oldest_waiting_since = None
                    self.counters["batches"] += 1
                    self.batch_seconds += time.monotonic() - started  # /metrics: batch latency
                elif self.stopping.is_set():
                    return

    def _next_batch(self) -> list[Item]:
        # round-robin over devices, bounded by records: a backlog of one device never delays the others
        return self.batcher.next_batch(BATCH_WAIT_S)

    def _store(self, batch: list[Item], split: bool = True) -> None:
        delay = 0.5
        while True:
            try:
                with self._transaction():
                    change = self._write(batch)
                    if self._publish is not None:
                        self._publish(change)
            except Exception as exc:
                if database_unavailable(exc):
                    write_health.failed(exc)  # /healthz: not ok while this lasts (e.g. a full disk)
                    if self.stopping.is_set():
                        log.warning("stopping with %d messages not stored (the broker keeps them)", len(batch))
                        return
                    log.warning("database unavailable (%s); retrying %d messages in %.1f s", exc, len(batch), delay)
                    time.sleep(delay)
                    delay = min(delay * 2, RETRY_MAX_S)
                    continue
                if len(batch) > 1 and split:
                    log.warning("a batch of %d messages failed (%s: %s); storing it in halves", len(batch),
                                type(exc).__name__, str(exc)[:200])
                    half = len(batch) // 2
                    self._store(batch[:half])
                    self._store(batch[half:])
                elif split:
                    self._store_failed(batch[0], exc)
                else:  # even counting the reject failed: acknowledge, so it cannot come back
                    log.exception("could not count a rejected message; dropping it")
                    self._finish(batch, CacheChange())
                return
            self._finish(batch, change)
            return

    @staticmethod
    def _transaction() -> object:
        # on the models' database (the connection the writes use); SQLite: take the write lock first,
        # so a concurrent writer (the CLI, the rollup job) is waited for (busy_timeout)
        return write_transaction(db.obj)

    def _store_failed(self, item: Item, exc: Exception) -> None:
        device_id = item.device_id
        error = f"the database refused it: {type(exc).__name__}: {exc}"
        self._store([Rejected(item.mid, item.qos, device_id, "store_error", error, item.mark)], split=False)

    def _write(self, batch: list[Item]) -> CacheChange:
        change = CacheChange()
        by_channel: dict = {}
        for item in batch:
            if isinstance(item, Rejected):
                if item.reason:
                    change.reject(item.device_id, item.reason, item.error)
                    if item.device_id:
                        self._check_device(item.device_id, change)  # so the cache can count it
                continue
            refused = self._check_device(item.device_id, change)
            if refused:
                change.reject(item.device_id if refused == "revoked_device" else "", refused,
                              f"device {item.device_id!r} is not enrolled or is revoked")
                continue
            by_channel.setdefault(item.channel, []).append(item)
        for channel, write in WRITERS.items():
            if channel in by_channel:
                change.merge(write(by_channel[channel], self.state))
        write_last_seen(change)
        store_rejects(change.rejects, now_ms())
        if self._on_receipts is not None:  # after the checks above, ``_known`` holds every device of the batch
            change.receipts = self._receipt_book.record((i for i in batch if self._known.get(i.device_id)
                                                         and receipts.counts_as_received(i)), now_ms())
        return change

    def _check_device(self, device_id: str, change: CacheChange) -> str | None:
        """None for an enrolled device, else the reject reason. Known devices cost no query; on a miss
        the table is read (the CLI may have added it), at most every :data:`UNKNOWN_RECHECK_S` per
        unknown id. A device missing from the cache is added to it with the change."""
        missing = self.state.get(device_id) is None
        if device_id not in self._known or missing:
            unknown_since = self._unknown.get(device_id)
            if unknown_since is not None and time.monotonic() - unknown_since < UNKNOWN_RECHECK_S:
                return "unknown_device"
            dev = Device.get_or_none(Device.id == device_id)
            if dev is None:
                if len(self._unknown) >= 10_000:
                    self._unknown.clear()
                self._unknown[device_id] = time.monotonic()
                return "unknown_device"
            self._unknown.pop(device_id, None)
            self._known[device_id] = dev.revoked_ms is None
            if missing:
                change.set(device_id, name=dev.name, status="revoked" if dev.revoked_ms else dev.status)
        return None if self._known[device_id] else "revoked_device"

    def _finish(self, batch: list[Item], change: CacheChange) -> None:
        write_health.succeeded()
        for item in batch:
            if item.qos > 0:
                self._ack(item.mid, item.qos)
        self.counters["acked"] += len(batch)
        self.last_commit_monotonic = time.monotonic()
        updates = {}
        for device_id, fields in change.devices.items():
            cur = self.state.get(device_id)
            if cur is not None and (cur.last_seen_ms or 0) >= fields.get("last_seen_ms", 0):
                fields = {k: v for k, v in fields.items() if k != "last_seen_ms"}
            if fields:
                updates[device_id] = fields
        if change.receipts and self._on_receipts is not None:
            self._receipt_book.committed(change.receipts)
            self._on_receipts(change.receipts)
        self.state.upsert_many(updates)  # one lock, one version step for the whole batch
        if change.usage:
            self.state.note_usage(change.usage)
        for channel, n in change.stored.items():
            self.counters[f"stored_{channel}"] += n
        for note in change.rejects:
            self.counters[f"rejected_{note.reason}"] += 1
            self._log_reject(note)
            if note.device_id and self.state.get(note.device_id) is not None:
                self.state.count_reject(note.device_id, note.reason)
