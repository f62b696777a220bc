"""Per-device budgets: how much each device may send per channel before ingest rejects the rest.

Checked in the subscriber's network thread before a payload is parsed (only the topic and the
payload's length are looked at), so a flood costs a dictionary lookup per message, not a JSON
parse or a database row. What exceeds the budget is rejected with reason ``rate_limited``
(counted per device and reason like every reject, shown on the device page). It does not count
as received: the reject carries no delivery mark and ``rate_limited`` is one of the
:data:`fleet_server.ingest.receipts.RETRYABLE_REJECTS`, so no delivery receipt covers it and the
agent sends it again later, paced. A device that goes on far over its budget is also stopped at the broker
for a while (:mod:`fleet_server.devices.throttle`): the broker takes a flood's bytes, queues them and
sends them to ingest ahead of everyone else's before ingest can reject them.

A budget is a token bucket per (device, channel): ``per_s`` messages per second sustained, up to
``burst`` at once; usage and logs also have a byte bucket (``bytes_per_s``, ``burst_bytes``),
which bounds the records a device can push through (a usage record is about 250 bytes of JSON).

What a real agent sends (``agent_tray``): one ``telemetry`` sample per ``interval_s`` (default 30 s,
at least 1 s, about 600 bytes); ``status`` on every (re)connect and state change; ``meta`` on
connect and when OpenClaw's version or agents change; per channel at most one ``usage`` and one
``logs`` batch per interval (up to 500 records, 256 KiB), more while it empties its outbox after an
outage. The defaults (:data:`DEFAULT_BUDGETS`) are 10 to 20 times the steady rate of an agent
sampling every second (usage and logs: about 2,000 records/s sustained), with bursts that cover a
ten-minute outage of such an agent.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

import paho.mqtt.client as mqtt

from fleet_server.ingest.messages import Rejected
from shared.topics import DEVICE_PUBLISH_CHANNELS, Channel, TopicError, parse_device_topic

OPTION = "--device-rate-limit"
"""The ``run`` option that changes the budgets (named in error messages)."""
REASON = "rate_limited"
"""Reject reason of a message over budget."""


@dataclass(frozen=True)
class Budget:
    """One channel's budget per device: messages per second (``per_s``, sustained) and at once
    (``burst``); bytes of payload per second and at once (None: no byte budget)."""

    per_s: float
    burst: float
    bytes_per_s: float | None = None
    burst_bytes: float | None = None

    def describe(self) -> str:
        """``"20 messages/s (burst 1,000), 512 KiB/s (burst 2 MiB)"``."""
        text = f"{self.per_s:g} messages/s (burst {self.burst:,.0f})"
        if self.bytes_per_s is not None:
            text += f", {_size(self.bytes_per_s)}/s (burst {_size(self.burst_bytes or 0)})"
        return text


MIB = 1024 * 1024
DEFAULT_BUDGETS: dict[Channel, Budget] = {
    Channel.STATUS: Budget(1, 60),
    Channel.META: Budget(1, 60),
    Channel.TELEMETRY: Budget(10, 1000),
    Channel.USAGE: Budget(20, 1000, MIB / 2, 2 * MIB),
    Channel.LOGS: Budget(20, 1000, MIB / 2, 2 * MIB),
    Channel.SNOOZE: Budget(0.1, 10),
}
"""Budgets per device and channel when ``run`` is given no :data:`OPTION`. Snooze (a tray click, one
database write and an audit row each): 10 at once, then one per 10 s. Usage and logs: 512 KiB/s
(about 2,000 records/s) with a 2 MiB burst (about 8,000 records: an agent emptying its outbox after
an outage, ``tests/integration/test_outbox_full.py``). Other devices do not wait behind such a
burst in the writer (batches are built round-robin over devices, :mod:`fleet_server.ingest.fairness`);
what it costs is validating and storing it (under 1.5 s on a busy 2-core machine, measured with
``tests/ingest/test_flood.py``; a 16 MiB burst held other devices up 12 s)."""

_UNITS = {"": 1, "b": 1, "kib": 1024, "kb": 1000, "mib": MIB, "mb": 1000**2, "gib": 1024**3, "gb": 1000**3}
_SPEC = re.compile(r"^\s*(?P<channel>[a-z]+)\s*=\s*(?P<rate>[0-9.]+)\s*(?P<unit>[a-z]*)\s*/\s*s"
                   r"(?:\s*:\s*(?P<burst>[0-9.]+)\s*(?P<burst_unit>[a-z]*))?\s*$", re.IGNORECASE)


def _size(n: float) -> str:
    for unit, f in (("GiB", 1024**3), ("MiB", MIB), ("KiB", 1024)):
        if n >= f:
            return f"{n / f:g} {unit}"
    return f"{n:g} B"


class LimitError(ValueError):
    """A bad :data:`OPTION` value; the message names the option and the fix."""


def parse_budgets(specs: Iterable[str]) -> dict[Channel, Budget] | None:
    """The budgets ``run`` was given: each spec is ``CHANNEL=N/s[:BURST]`` (messages) or
    ``CHANNEL=SIZE/s[:SIZE]`` with a unit (KiB, MiB, …: bytes, usage and logs only), changing that
    part of :data:`DEFAULT_BUDGETS`; a burst left out is 60 s worth of the rate for messages and
    4 s worth for bytes. ``off`` turns every budget off (returns None).

    Raises:
        LimitError: a value that is none of these (names :data:`OPTION` and an example).
    """
    budgets = dict(DEFAULT_BUDGETS)
    example = f"e.g. {OPTION} telemetry=20/s:2000 or {OPTION} usage=2MiB/s:32MiB, or {OPTION} off"
    for spec in specs:
        if spec.strip().lower() == "off":
            return None
        m = _SPEC.match(spec)
        if m is None:
            raise LimitError(f"{OPTION} {spec!r}: expected CHANNEL=RATE/s[:BURST]; {example}")
        try:
            channel = Channel(m["channel"].lower())
        except ValueError:
            channel = None
        if channel not in DEVICE_PUBLISH_CHANNELS:
            raise LimitError(f"{OPTION} {spec!r}: the channel is one of "
                             f"{', '.join(c.value for c in DEVICE_PUBLISH_CHANNELS)}; {example}")
        unit, burst_unit = m["unit"].lower(), (m["burst_unit"] or m["unit"]).lower()
        if unit not in _UNITS or burst_unit not in _UNITS:
            raise LimitError(f"{OPTION} {spec!r}: sizes are in B, KiB, MiB or GiB; {example}")
        try:
            rate = float(m["rate"]) * _UNITS[unit]
            burst = float(m["burst"]) * _UNITS[burst_unit] if m["burst"] else None
        except ValueError:
            raise LimitError(f"{OPTION} {spec!r}: not a number; {example}") from None
        if rate <= 0 or (burst is not None and burst < 1):
            raise LimitError(f"{OPTION} {spec!r}: the rate must be above 0 and the burst at least 1 ({example}); "
                             f"'{OPTION} off' turns the budgets off")
        cur = budgets[channel]
        if unit:  # bytes
            if channel not in (Channel.USAGE, Channel.LOGS):
                raise LimitError(f"{OPTION} {spec!r}: byte budgets apply to usage and logs only; give "
                                 f"{channel.value} a message rate such as {channel.value}=5/s")
            budgets[channel] = replace(cur, bytes_per_s=rate, burst_bytes=burst if burst is not None else 4 * rate)
        else:
            budgets[channel] = replace(cur, per_s=rate, burst=burst if burst is not None else 60 * rate)
    return budgets


class DeviceLimits:
    """Token buckets per (device, channel). Thread-safe; :meth:`allow` is called for every message.

    Args:
        budgets: per channel (:data:`DEFAULT_BUDGETS` when None); channels not in it are not limited.
        clock: monotonic seconds (tests pass a fake one).
    """

    MAX_BUCKETS = 200_000
    """Buckets kept at most; beyond it, full (idle) buckets are forgotten (they would refill anyway)."""

    def __init__(self, budgets: dict[Channel, Budget] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.budgets = dict(DEFAULT_BUDGETS if budgets is None else budgets)
        self.on_over: Callable[[str, Channel, int], None] | None = None
        """Called (network thread) for every message over budget, e.g. to stop a flood at the broker
        (:class:`fleet_server.devices.throttle.ChannelBlocker`)."""
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, Channel], list[float]] = {}  # -> [messages left, bytes left, at]

    def allow(self, device_id: str, channel: Channel, size: int) -> bool:
        """Take one message of ``size`` bytes from the device's budget for ``channel``; False (nothing
        taken) when it does not fit."""
        budget = self.budgets.get(channel)
        if budget is None:
            return True
        now = self._clock()
        key = (device_id, channel)
        with self._lock:
            b = self._buckets.get(key)
            if b is None:
                if len(self._buckets) >= self.MAX_BUCKETS:
                    self._prune(now)
                b = self._buckets[key] = [budget.burst, budget.burst_bytes or 0.0, now]
            elapsed = max(0.0, now - b[2])
            b[0] = min(budget.burst, b[0] + elapsed * budget.per_s)
            if budget.bytes_per_s is not None:
                b[1] = min(budget.burst_bytes or 0.0, b[1] + elapsed * budget.bytes_per_s)
            b[2] = now
            if b[0] < 1 or (budget.bytes_per_s is not None and b[1] < size):
                return False
            b[0] -= 1
            if budget.bytes_per_s is not None:
                b[1] -= size
            return True

    def check(self, msg: mqtt.MQTTMessage) -> Rejected | None:
        """The ``rate_limited`` reject (no delivery mark: not received) for a device message over its budget, else None
        (within budget, or not a device's message: the validation judges those). Never raises."""
        try:
            device_id, channel = parse_device_topic(msg.topic)
        except (TopicError, UnicodeDecodeError):
            return None
        if channel not in self.budgets or self.allow(device_id, channel, len(msg.payload)):
            return None
        if self.on_over is not None:
            self.on_over(device_id, channel, len(msg.payload))
        return Rejected(msg.mid, msg.qos, device_id, REASON, self.explain(channel))

    def explain(self, channel: Channel) -> str:
        """The reject's error text for ``channel``."""
        budget = self.budgets[channel]
        return (f"over the device's {channel.value} budget of {budget.describe()} (run {OPTION}); "
                "not stored: an agent sends it again later")

    def _prune(self, now: float) -> None:
        for key in [k for k, b in self._buckets.items()
                    if now - b[2] >= self.budgets[k[1]].burst / self.budgets[k[1]].per_s]:
            del self._buckets[key]
        if len(self._buckets) >= self.MAX_BUCKETS:
            self._buckets.clear()
