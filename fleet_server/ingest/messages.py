"""What flows through ingest: messages from the subscriber to the writer, and the cache change a
write returns (applied to :class:`fleet_server.state.FleetState` only after the commit)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shared.topics import Channel


@dataclass(frozen=True)
class DeliveryMark:
    """A message's place in its device's outbox (delivery receipts): ``channel`` (telemetry, usage,
    logs), the outbox id, the message's sequence number ``seq`` in that channel and ``floor``, the
    lowest number of the channel the agent still held when it sent it (at most ``seq``)."""

    channel: str
    outbox: str
    seq: int
    floor: int


@dataclass(frozen=True)
class Received:
    """A valid payload from a device, not stored yet.

    ``mid``/``qos`` identify the MQTT message to acknowledge after the commit; ``received_ms`` is
    the server's clock when it arrived (epoch ms); ``retained`` is True for a retained message the
    broker replayed on subscribe (sent at some earlier, unknown time); ``mark`` is set for a message
    that carries outbox delivery fields.
    """

    mid: int
    qos: int
    device_id: str
    channel: Channel
    payload: Any  # the schemas model of ``channel``
    received_ms: int
    retained: bool = False
    mark: DeliveryMark | None = None

    @property
    def heard_ms(self) -> int:
        """When the device was last heard of through this message: the receive time, or for a
        retained replay the earlier of its own timestamp and the receive time."""
        return min(self.payload.ts, self.received_ms) if self.retained else self.received_ms


@dataclass(frozen=True)
class Rejected:
    """A message that is not stored: ``reason`` ``""`` means "ignore quietly" (our own server
    status, a cleared retained topic), anything else is counted per device and reason. ``mark``: its
    delivery fields, when they could be read (a message rejected for good still counts as received)."""

    mid: int
    qos: int
    device_id: str
    reason: str
    error: str
    mark: DeliveryMark | None = None


Item = Received | Rejected


@dataclass(frozen=True)
class RejectNote:
    """One rejected message to count: device id (``""`` when the topic had none), reason, error text."""

    device_id: str
    reason: str
    error: str


@dataclass
class CacheChange:
    """What a committed write changes in the in-memory cache.

    ``devices``: device id -> :class:`fleet_server.state.DeviceView` fields to set (``last_seen_ms``
    only ever moves forward). ``usage``: the devices whose stored token usage grew.
    ``rejects``: messages to count as rejected. ``stored``: channel name -> messages stored.
    ``receipts``: devices whose receipt marks the write changed or confirmed again (published
    after the commit, :mod:`fleet_server.ingest.receipts`).
    """

    devices: dict[str, dict[str, Any]] = field(default_factory=dict)
    usage: set[str] = field(default_factory=set)
    rejects: list[RejectNote] = field(default_factory=list)
    stored: dict[str, int] = field(default_factory=dict)
    receipts: dict[str, Any] = field(default_factory=dict)

    def set(self, device_id: str, **fields: Any) -> None:
        """Set view fields of one device (``last_seen_ms``: the larger value wins)."""
        cur = self.devices.setdefault(device_id, {})
        seen = fields.pop("last_seen_ms", None)
        if seen is not None:
            cur["last_seen_ms"] = max(seen, cur.get("last_seen_ms") or 0)
        cur.update(fields)

    def reject(self, device_id: str, reason: str, error: str) -> None:
        """Count one message as rejected."""
        self.rejects.append(RejectNote(device_id, reason, error))

    def merge(self, other: CacheChange) -> CacheChange:
        """Add ``other`` (a later change) into self; returns self."""
        for device_id, fields in other.devices.items():
            self.set(device_id, **fields)
        self.usage |= other.usage
        self.rejects += other.rejects
        for channel, n in other.stored.items():
            self.stored[channel] = self.stored.get(channel, 0) + n
        self.receipts.update(other.receipts)
        return self

