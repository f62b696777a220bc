"""Delivery receipts on the agent side: what the server confirmed, and what to send again.

The server publishes, per device, a retained receipt on ``clawfleet/v1/<device_id>/receipt``
(:class:`shared.payloads.Receipt`): for the outbox id the agent sent, per channel, every sequence
number up to ``upto`` and the ranges above it that it stored (or rejected for good). Only the server
may publish there and only the device may read it (broker ACLs). This module holds no I/O: the
publisher (and the benchmarks' simulated devices) feed it and act on its answers.

- :class:`Confirmed` merges receipts per channel. A receipt for another outbox id (an outbox that
  was recreated) is ignored; one that says less than an earlier one (a replayed retained receipt, or
  two ingest workers publishing out of order) changes nothing, because what the server stored stays
  stored; nothing beyond the newest sequence number the outbox ever assigned is taken.
- :class:`Unconfirmed` remembers when each message was last sent until a receipt confirms it, so the
  publisher can keep at most :data:`RECEIPT_WINDOW` messages unconfirmed (a backlog after an outage
  drains at the pace the server confirms it) and knows what to send again: a message *overtaken* by
  one sent :data:`OVERTAKEN_GRACE_S` after it that a receipt already confirmed (the messages of one
  connection arrive in order, so it was lost on the way, e.g. dropped by an overloaded broker),
  and, when no receipt confirmed anything for :data:`RESEND_AFTER_S`, every message that waited
  that long — counted from the later of its send and the server's last birth, so an outage of
  the server does not make every agent resend at once. A server that is merely behind (its
  receipts keep coming, for older messages) is not sent anything twice.
- :class:`ResendPacer` sends those again :data:`RESEND_BATCH` at a time, oldest first: the next
  batch once a receipt confirmed something (the server keeps up again), else after a growing,
  jittered pause — so an overloaded server is not buried under the fleet's resends.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from shared.payloads import RECEIPT_CHANNELS, Coverage, Receipt, merge_coverage

RECEIPT_WINDOW = 100
"""Messages sent but not yet confirmed by a receipt, at most; the sender waits for receipts beyond that."""
RESEND_AFTER_S = 300.0
"""When no receipt confirmed anything for this long (counted from the server's last birth too), every
message waiting that long is sent again, seconds. Only for losses that nothing overtakes (e.g. the
server lost its subscription): a server that is merely behind confirms something sooner, as the
broker queues at most 100,000 messages for it (~35 s of work at the ~3,000 msg/s measured)."""
OVERTAKEN_GRACE_S = 5.0
"""A message counts as lost once a message sent this much later was confirmed, seconds (leaves room
for several ingest workers storing one device's messages out of order)."""
RESEND_BATCH = 20
"""Messages sent again at a time because no receipt confirmed them in time."""
RESEND_PAUSE_S = 30.0
"""Without receipt progress, the pause after a batch of resends, seconds; it doubles up to
:data:`RESEND_BACKOFF_MAX` times this (with jitter)."""
RESEND_BACKOFF_MAX = 8


def _clamp(cov: Coverage, limit: int) -> Coverage:
    ranges = tuple((lo, min(hi, limit)) for lo, hi in cov.ranges if lo <= limit)
    return Coverage(min(cov.upto, limit), ranges)


class Confirmed:
    """What the server confirmed of one outbox, per channel (``{"usage": Coverage, …}``).

    Args:
        outbox_id: the outbox whose receipts count.
    """

    def __init__(self, outbox_id: str) -> None:
        self.outbox_id = outbox_id
        self.channels: dict[str, Coverage] = {}

    def merge(self, receipt: Receipt, last_assigned: Mapping[str, int]) -> dict[str, Coverage]:
        """Take ``receipt`` in. ``last_assigned``: per channel, the newest sequence number the outbox
        ever assigned (a receipt cannot confirm more). Returns the channels whose coverage grew, with
        their whole new coverage (what the caller may now delete); ``{}`` for another outbox or a
        receipt that adds nothing."""
        if receipt.outbox != self.outbox_id:
            return {}
        grown: dict[str, Coverage] = {}
        for name, cov in receipt.channels.items():
            if name not in RECEIPT_CHANNELS:
                continue
            cov = _clamp(cov, last_assigned.get(name, 0))
            old = self.channels.get(name, Coverage())
            new = merge_coverage(max(old.upto, cov.upto), [*old.ranges, *cov.ranges])
            if new != old:
                self.channels[name] = grown[name] = new
        return grown

    def covers(self, channel: str, seq: int) -> bool:
        """True when ``seq`` of ``channel`` is confirmed."""
        cov = self.channels.get(channel)
        return cov is not None and cov.covers(seq)


@dataclass
class _Sent:
    channel: str
    seq: int
    at: float


class Unconfirmed:
    """Messages sent and waiting for a receipt: outbox row ``key`` -> channel, sequence number and the
    monotonic time it was last sent. Not thread-safe (the sender thread owns it)."""

    def __init__(self) -> None:
        self._sent: dict[int, _Sent] = {}
        self.confirmed_sent_at = float("-inf")
        """Monotonic send time of the latest-sent message a receipt confirmed."""
        self.last_progress = float("-inf")
        """Monotonic time a receipt last confirmed something (set by :meth:`settle`)."""

    def __len__(self) -> int:
        return len(self._sent)

    def __contains__(self, key: int) -> bool:
        return key in self._sent

    def sent(self, key: int, channel: str, seq: int, now: float) -> None:
        """Record that row ``key`` (``channel`` number ``seq``) was sent at ``now`` (monotonic s)."""
        self._sent[key] = _Sent(channel, seq, now)

    def settle(self, confirmed: Confirmed, now: float | None = None) -> list[int]:
        """Forget the rows ``confirmed`` covers; returns their keys. ``now``: monotonic s (default: the clock)."""
        done = [k for k, s in self._sent.items() if confirmed.covers(s.channel, s.seq)]
        for k in done:
            self.confirmed_sent_at = max(self.confirmed_sent_at, self._sent.pop(k).at)
        if done:
            self.last_progress = time.monotonic() if now is None else now
        return done

    def forget(self, keys: Iterable[int]) -> None:
        """Forget rows (deleted from the outbox, or to be sent again)."""
        for k in keys:
            self._sent.pop(k, None)

    def due(self, now: float, since: float, after_s: float | None = None) -> list[int]:
        """Keys of rows to send again, oldest first: those overtaken (see the module docstring), and,
        when nothing was confirmed for ``after_s`` seconds (default :data:`RESEND_AFTER_S`), those
        unconfirmed that long, counted from the later of their last send and ``since`` (monotonic s:
        when the server last came online)."""
        after_s = RESEND_AFTER_S if after_s is None else after_s
        overtaken = self.confirmed_sent_at - OVERTAKEN_GRACE_S
        stalled = now - max(self.last_progress, since) >= after_s
        return sorted(k for k, s in self._sent.items()
                      if s.at < overtaken or (stalled and now - max(s.at, since) >= after_s))

    def keys(self) -> list[int]:
        """Every row waiting, oldest first."""
        return sorted(self._sent)


class ResendPacer:
    """Decides which overdue messages to send again now (see the module docstring). Not thread-safe."""

    def __init__(self) -> None:
        self.ready_at = 0.0
        self.backoff = 1

    def progress(self) -> None:
        """A receipt confirmed something: the next batch may go at once."""
        self.ready_at, self.backoff = 0.0, 1

    def take(self, due: list[int], now: float) -> list[int]:
        """The keys of ``due`` (oldest first) to send again at ``now`` (monotonic s): at most
        :data:`RESEND_BATCH`, or none while pausing."""
        if not due or now < self.ready_at:
            return []
        self.ready_at = now + RESEND_PAUSE_S * self.backoff * random.uniform(1.0, 1.5)
        self.backoff = min(self.backoff * 2, RESEND_BACKOFF_MAX)
        return due[:RESEND_BATCH]
