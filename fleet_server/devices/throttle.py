"""A device that keeps flooding past its budget is stopped at the broker, for a while.

Ingest rejects what a device sends over its budget (:mod:`fleet_server.ingest.limits`) for a
dictionary lookup per message, but the broker has already taken those bytes: it queues them for
ingest, saves them, and sends them down ingest's one connection, ahead of every other device's
messages. A device that goes on sending far over budget (more than :data:`BLOCK_AFTER` rejected
messages of one channel within :data:`WINDOW_S`) therefore loses the broker's permission to publish
on that channel for :data:`FIRST_BLOCK_S` (doubling for each repeat, up to :data:`MAX_BLOCK_S`):
its own role's ACL for that topic is removed (``removeRoleACL``: no kick, the broker refuses its
next publish with PUBACK 0x87 and queues nothing) and added back when the time is up. Audited as
``device.throttle`` by ``server``.

A block outlives nothing: the server restores the ACL when it stops, and at start-up
(:func:`restore_blocked`) from the marks it keeps in the database (``JobMark`` ``block/<device>/<channel>``);
the managed broker's file also gets every device's ACLs back at start.
"""

from __future__ import annotations

import heapq
import logging
import queue
import threading
import time
from collections.abc import Callable

from broker.acl import device_role_name
from broker.dynsec import DynSecClient, DynSecConnectionError, DynSecError
from fleet_server.store import audit
from fleet_server.store.models import JobMark
from shared.topics import Channel, device_topic

log = logging.getLogger("clawfleet.throttle")

WINDOW_S = 60.0
"""Seconds over which rejected messages are counted."""
BLOCK_AFTER = 100
"""Rejected messages of one device and channel within :data:`WINDOW_S` that block it at the broker."""
BLOCK_AFTER_BYTES = 4 * 1024 * 1024
"""Rejected payload bytes of one device and channel within :data:`WINDOW_S` that block it too."""
FIRST_BLOCK_S = 60.0
MAX_BLOCK_S = 3600.0
MARK = "block/"


def _acl(device_id: str, channel: Channel) -> dict:
    return {"acltype": "publishClientSend", "topic": device_topic(device_id, channel)}


class ChannelBlocker:
    """Counts over-budget messages per (device, channel) and blocks floods at the broker.

    :meth:`note` is called from ingest's network thread (cheap: a counter); broker commands run on
    this object's own thread.

    Args:
        dynsec: returns the broker admin client (None while there is none).
        database: the open database (for the marks and audit rows written from the worker thread).
        clock: monotonic seconds (tests pass a fake one).
    """

    def __init__(self, dynsec: Callable[[], DynSecClient | None], database: object,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._dynsec, self._database, self._clock = dynsec, database, clock
        self._counts: dict[tuple[str, Channel], list[float]] = {}  # -> [window start, rejects, bytes]
        self._blocked: dict[tuple[str, Channel], float] = {}  # -> block length, s (kept for the doubling)
        self._active: set[tuple[str, Channel]] = set()
        self._due: list[tuple[float, str, str]] = []  # heap of (unblock at, device, channel)
        self._requests: queue.Queue[tuple[str, Channel, int] | None] = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def note(self, device_id: str, channel: Channel, size: int = 0) -> None:
        """One message (``size`` payload bytes) of ``device_id`` on ``channel`` was over budget."""
        key, now = (device_id, channel), self._clock()
        with self._lock:
            c = self._counts.get(key)
            if c is None or now - c[0] >= WINDOW_S:
                if len(self._counts) > 50_000:
                    self._counts.clear()
                c = self._counts[key] = [now, 0.0, 0.0]
            c[1] += 1
            c[2] += size
            if (c[1] >= BLOCK_AFTER or c[2] >= BLOCK_AFTER_BYTES) and key not in self._active:
                self._active.add(key)
                self._requests.put((device_id, channel, int(c[1])))

    @property
    def blocked(self) -> set[tuple[str, Channel]]:
        """(device, channel) pairs blocked at the broker now."""
        with self._lock:
            return set(self._active)

    def start(self) -> None:
        """Start the worker thread."""
        self._thread = threading.Thread(target=self._run, name="clawfleet-throttle", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the worker and give every blocked device its ACL back."""
        if self._thread is not None:
            self._requests.put(None)
            self._thread.join(30)
            self._thread = None

    def _run(self) -> None:
        with self._database.connection_context():  # type: ignore[attr-defined]
            while True:
                wait = max(0.0, self._due[0][0] - self._clock()) if self._due else 1.0
                try:
                    req = self._requests.get(timeout=min(wait, 1.0))
                except queue.Empty:
                    req = ()
                if req is None:
                    for _, device_id, channel in list(self._due):
                        self._unblock(device_id, Channel(channel))
                    return
                if req:
                    self._block(*req)
                while self._due and self._due[0][0] <= self._clock():
                    _, device_id, channel = heapq.heappop(self._due)
                    self._unblock(device_id, Channel(channel))

    def _block(self, device_id: str, channel: Channel, rejects: int) -> None:
        key = (device_id, channel)
        length = min(MAX_BLOCK_S, self._blocked.get(key, FIRST_BLOCK_S / 2) * 2)
        ds = self._dynsec()
        try:
            if ds is None:
                raise DynSecConnectionError("no broker connection")
            ts = int(time.time() * 1000)
            JobMark.insert(job=f"{MARK}{device_id}/{channel.value}", requested_ms=ts, finished_ms=None).on_conflict(
                conflict_target=[JobMark.job], update={JobMark.requested_ms: ts}).execute()
            ds.execute([{"command": "removeRoleACL", "rolename": device_role_name(device_id),
                         **_acl(device_id, channel)}])
        except Exception as exc:  # whatever went wrong, the worker goes on
            log.warning("could not block %s's %s at the broker: %s", device_id, channel.value, exc)
            with self._lock:
                self._active.discard(key)
            return
        self._blocked[key] = length
        heapq.heappush(self._due, (self._clock() + length, device_id, channel.value))
        log.warning("device %s sent %d %s messages over its budget within %.0f s: the broker refuses its %s "
                    "for %.0f s", device_id, rejects, channel.value, WINDOW_S, channel.value, length)
        try:
            audit.record("server", "device.throttle", target=device_id,
                         detail=f"{channel.value} refused at the broker for {length:.0f} s: {rejects} messages over "
                                f"budget within {WINDOW_S:.0f} s")
        except Exception:  # the database may be busy; the block stands
            log.exception("could not audit the block of %s", device_id)

    def _unblock(self, device_id: str, channel: Channel) -> None:
        ds = self._dynsec()
        try:
            if ds is not None:
                restore(ds, device_id, channel)
            JobMark.delete().where(JobMark.job == f"{MARK}{device_id}/{channel.value}").execute()
        except Exception as exc:  # retried at the next start (restore_blocked)
            log.warning("could not give %s its %s back at the broker: %s", device_id, channel.value, exc)
        with self._lock:
            self._active.discard((device_id, channel))
            self._counts.pop((device_id, channel), None)
        log.info("device %s may publish %s again", device_id, channel.value)


def restore(ds: DynSecClient, device_id: str, channel: Channel) -> None:
    """Give the device's role its publish ACL for ``channel`` back (a deleted device: nothing to do)."""
    try:
        ds.execute([{"command": "addRoleACL", "rolename": device_role_name(device_id), "priority": 0,
                     "allow": True, **_acl(device_id, channel)}])
    except DynSecError as exc:
        if exc.error not in ("Role not found", "ACL with this topic already exists"):
            raise


def restore_blocked(ds: DynSecClient) -> list[str]:
    """At start-up: give back the ACLs of blocks a stopped or killed server left (their marks)."""
    done = []
    for mark in JobMark.select().where(JobMark.job.startswith(MARK)):
        _, device_id, channel = mark.job.split("/", 2)
        try:
            restore(ds, device_id, Channel(channel))
        except (DynSecError, DynSecConnectionError, ValueError) as exc:
            log.warning("could not give %s its %s back at the broker: %s", device_id, channel, exc)
            continue
        mark.delete_instance()
        done.append(f"{device_id}/{channel}")
    return done
