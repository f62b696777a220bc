"""Ingest: MQTT 5 subscriber → validate (``shared.schemas``) → batch writer → database + cache.

- :mod:`.subscriber`: paho callbacks → queue (validation only; nothing a device sends can stop it).
- :mod:`.writer`: the writer thread: one transaction per batch, PUBACK only after the commit (a
  crash between receipt and commit loses nothing: the broker redelivers), then the cache change.
  A batch the database refuses for a reason other than being unavailable is split until the
  culprit is alone, and that message is rejected.
- :mod:`.writers`: one write per channel (``write_telemetry``, ``write_status``, ``write_meta``,
  ``write_usage``, ``write_logs``), each returning the cache change.
- :mod:`.rejects`: reject counters per device and reason, rate-limited reject log lines.
- :mod:`.limits`: per-device budgets per channel, checked before validation (``rate_limited``).
- :mod:`.receipts`: delivery receipts: what is committed of each device's outbox, published to it
  after the commit (agents keep messages until a receipt confirms them).

Inserts are idempotent: samples on ``(device, ts)``, usage and log records on ``(device, id)``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from peewee import Database

from fleet_server.ingest.limits import DeviceLimits
from fleet_server.ingest.messages import CacheChange
from fleet_server.ingest.receipts import ReceiptPublisher
from fleet_server.ingest.subscriber import BrokerAccount, Subscriber
from fleet_server.ingest.writer import BatchWriter
from fleet_server.state import FleetState

__all__ = ["BrokerAccount", "Ingest", "IngestHealth"]


@dataclass(frozen=True)
class IngestHealth:
    """Whether ingest works. ``ok`` False comes with a one-line ``reason``; ``detail`` holds
    ``connected``, ``network_thread``, ``writer_thread`` (bools), ``queued`` (messages waiting),
    ``last_commit_age_s`` (seconds since the last commit, None before the first),
    ``broker_dropped_messages`` (what the broker says it dropped since it started; None when it does
    not say) and ``broker_dropping`` (that count rose within the last minute: overloaded; with a
    ``warning`` line — ingest still works and agents send the dropped messages again)."""

    ok: bool
    reason: str = ""
    detail: dict = field(default_factory=dict)


class Ingest:
    """Subscribes to every device topic and writes what it receives.

    Args:
        database: the open peewee database (models already bound).
        account: broker connection details (the server's own dynsec account).
        state: the latest-state cache to update after each commit.
        client_id: MQTT client id; keep it stable so the persistent session is resumed.
        shared_group: when set, subscribe as ``$share/<group>/…`` (several ingest workers).
        publish: sends each batch's cache change to the other server processes (see
            :class:`fleet_server.ingest.writer.BatchWriter`).
        limits: per-device budgets checked before validation (:mod:`.limits`); None: none.
    """

    DISCONNECTED_GRACE_S = 30.0
    """How long ingest may be without a broker connection before :meth:`health` says so, seconds."""
    STALLED_AFTER_S = 60.0
    """A batch taking longer than this to store makes :meth:`health` report a stalled writer, seconds."""

    def __init__(self, database: Database, account: BrokerAccount, state: FleetState,
                 client_id: str = "clawfleet-ingest", shared_group: str | None = None,
                 publish: Callable[[CacheChange], None] | None = None, limits: DeviceLimits | None = None) -> None:
        self.state = state
        self.subscriber = Subscriber(account, client_id, shared_group, limits)
        self.counters = self.subscriber.counters
        self.connected = self.subscriber.connected
        self.receipts = ReceiptPublisher(self.subscriber.client, self.counters)
        self.writer = BatchWriter(database, self.subscriber.items, state, self.subscriber.ack, self.counters, publish,
                                  on_receipts=self.receipts.offer)
        self._writer_thread = threading.Thread(target=self.writer.run, name="clawfleet-ingest-writer", daemon=True)

    @property
    def client(self) -> mqtt.Client:
        """The paho client (the server also publishes commands with it)."""
        return self.subscriber.client

    @property
    def batch_seconds(self) -> float:
        """Seconds spent storing batches so far (``counters["batches"]`` counts them), for ``/metrics``."""
        return self.writer.batch_seconds

    def start(self) -> None:
        """Connect (retrying in the background) and start the writer thread."""
        self.subscriber.start()
        self._writer_thread.start()
        self.receipts.start()

    def stop(self) -> None:
        """Flush what was received, publish the server's ``offline`` status, disconnect."""
        self.writer.stopping.set()
        self._writer_thread.join(timeout=10)
        self.receipts.stop()
        self.subscriber.stop()

    def forget_device(self, device_id: str) -> None:
        """Drop a device from the known-device cache (after revoke, rotate or delete)."""
        self.writer.forget_device(device_id)
        self.receipts.forget(device_id)

    def health(self) -> IngestHealth:
        """Is ingest alive: network thread running, connected (or not for long), writer running and
        not stuck on one batch. Cheap; safe to call from any thread."""
        now = time.monotonic()
        sub, w = self.subscriber, self.writer
        last = w.last_commit_monotonic
        detail = {"connected": sub.connected.is_set(), "network_thread": sub.network_alive,
                  "writer_thread": self._writer_thread.is_alive(), "queued": sub.items.qsize() + w.batcher.waiting,
                  "last_commit_age_s": None if last is None else round(now - last, 1),
                  "broker_dropped_messages": sub.drops.total, "broker_dropping": sub.drops.dropping()}
        if detail["broker_dropping"]:
            detail["warning"] = ("the broker is dropping messages it acknowledged (a queue is full: ingest is behind "
                                 "the fleet); agents send them again")
        if not detail["network_thread"]:
            return IngestHealth(False, "ingest's MQTT network thread is not running", detail)
        if not detail["writer_thread"]:
            return IngestHealth(False, "ingest's database writer stopped", detail)
        since = sub.disconnected_since
        if since is not None and now - since >= self.DISCONNECTED_GRACE_S:
            return IngestHealth(False, f"ingest has not been connected to the broker for {now - since:.0f} s", detail)
        busy = w.oldest_waiting_since
        if busy is not None and now - busy >= self.STALLED_AFTER_S:
            return IngestHealth(False, f"ingest's database writer has been storing one batch for {now - busy:.0f} s "
                                       "(database unavailable?)", detail)
        return IngestHealth(True, "", detail)
