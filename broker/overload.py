"""Messages the broker drops, and how the server notices.

Mosquitto 2.0.11 keeps, per client, the QoS 1 messages it could not deliver yet: up to the
client's Receive Maximum in flight, then a queue. A message that arrives for a client whose queue
already holds ``max_queued_messages`` (beyond its in-flight window; ``max_queued_bytes`` when set)
is dropped — *after* the broker has acknowledged it to the publisher — with one log line per
client connection, ``Outgoing messages are being dropped for client <id>.``, and a count in
``$SYS/broker/publish/messages/dropped`` (every ``sys_interval``, 10 s). For ingest that happens
when it stores less than the fleet sends for long enough to fill the queue: the broker itself
saving its persistence after every change was what slowed delivery to ingest before.

Agents keep every message until the server's receipt confirms it, so a dropped message is sent
again; the server still makes the overload visible: a WARNING for the broker's line and for every
rise of the count (:class:`DropCounter`), ``clawfleet_broker_dropped_messages_total`` in
``/metrics`` and ``broker_dropping`` in ``/healthz``.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable

log = logging.getLogger("clawfleet.broker")

DROPPING_RE = re.compile(r"Outgoing messages are being dropped for client (.+?)\.?$")
"""Mosquitto's line when a client's queue overflows (logged once per client connection)."""
DROPPING_RECENT_S = 60.0
"""``dropping`` stays True this long after the count last rose, seconds."""


def dropping_client(line: str) -> str | None:
    """The client id in Mosquitto's "Outgoing messages are being dropped for client …" line, else None."""
    m = DROPPING_RE.search(line)
    return m.group(1) if m else None


class DropCounter:
    """The broker's count of dropped messages, as ``$SYS/broker/publish/messages/dropped`` reports it.
    Thread-safe.

    Args:
        clock: monotonic clock in seconds (tests pass a fake one).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.total: int | None = None
        """Messages the broker dropped since it started (None: it never said)."""
        self.last_rise: float | None = None
        """Monotonic time the count last rose."""

    def update(self, raw: bytes) -> int:
        """Take a ``$SYS/broker/publish/messages/dropped`` payload (a decimal count); returns how many
        were dropped since the previous one (the first value is the baseline: 0; a lower value means
        the broker restarted). Malformed payloads are ignored. Logs a WARNING whenever the count rose."""
        try:
            total = int(raw.decode("ascii").strip())
        except (UnicodeDecodeError, ValueError):
            return 0
        with self._lock:
            previous, self.total = self.total, total
            new = 0 if previous is None else total - previous if total >= previous else total
            if new:
                self.last_rise = self._clock()
        if previous is None and total:
            log.warning("the broker has dropped %d messages since it started (a subscriber's queue was full)", total)
        if new:
            log.warning("the broker dropped %d messages it had acknowledged (%d since it started): a subscriber's "
                        "queue is full, usually ingest falling behind the fleet; agents send them again when no "
                        "receipt confirms them", new, total)
        return new

    def dropping(self) -> bool:
        """True when the count rose within the last :data:`DROPPING_RECENT_S` seconds."""
        with self._lock:
            return self.last_rise is not None and self._clock() - self.last_rise < DROPPING_RECENT_S
