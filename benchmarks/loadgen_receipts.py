"""A simulated device's outbox, in memory, handling delivery receipts the way the agent does
(:mod:`agent_tray.sender`, :mod:`agent_tray.receipts`), for the load generator: every telemetry,
usage and log message is stamped with the outbox id, its sequence number and the channel's lowest
unconfirmed number, kept until a receipt confirms it, and sent again (not retained) when the agent
would send it again (:meth:`agent_tray.receipts.Unconfirmed.due`, paced by
:class:`agent_tray.receipts.ResendPacer`). Unlike the agent it does not hold back at
:data:`~agent_tray.receipts.RECEIPT_WINDOW`: the load generator offers a fixed rate, so an overload
stays an overload.

Receipts count only once the server's retained birth says ``"receipts": true`` (a server from
before receipts never confirms anything; then a PUBACK is the end of a message, as before)."""

from __future__ import annotations

import secrets
import time
from collections import deque

from agent_tray.receipts import Confirmed, ResendPacer, Unconfirmed
from shared import payloads


class SimOutbox:
    """Messages of one simulated device waiting for a receipt. Not thread-safe (one asyncio loop)."""

    def __init__(self) -> None:
        self.outbox_id = secrets.token_hex(8)
        self.confirmed = Confirmed(self.outbox_id)
        self.unconfirmed = Unconfirmed()
        self.server_receipts = False
        self.server_online_since = 0.0
        self.resent = 0
        self._pacer = ResendPacer()
        self._messages: dict[int, tuple[str, int, str, bytes]] = {}  # key -> (channel, seq, topic, payload)
        self._order: dict[str, deque[int]] = {}  # channel -> keys in sequence order (confirmed ones popped lazily)
        self._last_seq: dict[str, int] = {}
        self._key = 0

    def __len__(self) -> int:
        return len(self._messages)

    def on_server_status(self, raw: bytes) -> None:
        """The server's retained birth/will."""
        try:
            status = payloads.parse_server_status(raw)
        except ValueError:
            return
        if status.state == "online":
            self.server_receipts = status.receipts
            self.server_online_since = time.monotonic()

    def on_receipt(self, raw: bytes) -> None:
        """A receipt: forget what it confirms."""
        try:
            receipt = payloads.parse_receipt(raw)
        except ValueError:
            return
        if self.confirmed.merge(receipt, self._last_seq):
            for key in self.unconfirmed.settle(self.confirmed):
                self._messages.pop(key, None)
            self._pacer.progress()

    def new(self, channel: str, topic: str, payload: bytes) -> bytes:
        """Take a new message of ``channel``; returns what to publish (stamped while receipts are on)."""
        if not self.server_receipts or channel not in payloads.RECEIPT_CHANNELS:
            return payload
        seq = self._last_seq[channel] = self._last_seq.get(channel, 0) + 1
        self._key += 1
        self._messages[self._key] = (channel, seq, topic, payload)
        self._order.setdefault(channel, deque()).append(self._key)
        self.unconfirmed.sent(self._key, channel, seq, time.monotonic())
        return payloads.stamp(payload, self.outbox_id, seq, self._floor(channel, seq))

    def due(self) -> list[tuple[str, bytes]]:
        """``(topic, stamped payload)`` of each message to send again now (and marks it sent)."""
        if not self.server_receipts:
            return []
        now = time.monotonic()
        out = []
        for key in self._pacer.take(self.unconfirmed.due(now, self.server_online_since), now):
            msg = self._messages.get(key)
            if msg is None:
                continue
            channel, seq, topic, payload = msg
            self.unconfirmed.sent(key, channel, seq, now)
            out.append((topic, payloads.stamp(payload, self.outbox_id, seq, self._floor(channel, seq))))
        self.resent += len(out)
        return out

    def _floor(self, channel: str, seq: int) -> int:
        order = self._order[channel]
        while order and order[0] not in self._messages:
            order.popleft()
        return min(seq, self._messages[order[0]][1]) if order else seq
