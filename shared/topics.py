"""MQTT topic names: ``clawfleet/v1/<device_id>/<channel>``.

A device id equals the device's MQTT username and client id and matches
``[a-z0-9][a-z0-9-]{0,62}``. The server itself publishes on
``clawfleet/v1/_server/status`` (``_`` can never start a device id).
"""

from __future__ import annotations

import re
from enum import Enum

ROOT = "clawfleet/v1"
SERVER_STATUS_TOPIC = f"{ROOT}/_server/status"
DEVICE_ID_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


class Channel(str, Enum):
    """The per-device topic leaves, with who publishes them."""

    STATUS = "status"  # agent (last will: offline); retained, QoS 1
    META = "meta"  # agent; retained, QoS 1
    TELEMETRY = "telemetry"  # agent; retained, QoS 1, one sample
    USAGE = "usage"  # agent; QoS 1 batches of token-usage records
    LOGS = "logs"  # agent; QoS 1 batches of log records
    CMD = "cmd"  # server -> agent; QoS 1
    SNOOZE = "snooze"  # agent -> server; QoS 1: "snooze alerts for this machine until …" (tray)
    AVAILABILITY = "availability"  # server; retained, QoS 1: the server's verdict (online/stale/paused/…)
    RECEIPT = "receipt"  # server -> agent; retained, QoS 0: what the server has stored (shared.payloads.Receipt)


DEVICE_PUBLISH_CHANNELS = (Channel.STATUS, Channel.META, Channel.TELEMETRY, Channel.USAGE, Channel.LOGS,
                           Channel.SNOOZE)
"""Channels a device may publish to (its own only)."""

SERVER_CHANNELS = (Channel.CMD, Channel.AVAILABILITY, Channel.RECEIPT)
"""Per-device channels only the server publishes (ingest ignores them)."""

DEVICE_READ_CHANNELS = (Channel.CMD, Channel.RECEIPT)
"""Per-device channels the device itself may subscribe to (its own only)."""

RETAINED_CHANNELS = (Channel.STATUS, Channel.META, Channel.TELEMETRY, Channel.AVAILABILITY, Channel.RECEIPT)
"""Channels whose messages are retained by the broker."""

ALL_DEVICES_FILTER = f"{ROOT}/+/+"
"""Subscription filter the server uses for every device channel."""


class TopicError(ValueError):
    """A topic or device id that is not part of the ClawFleet protocol."""


def is_valid_device_id(device_id: str) -> bool:
    """Return True when ``device_id`` matches ``[a-z0-9][a-z0-9-]{0,62}``."""
    return bool(DEVICE_ID_RE.fullmatch(device_id))


def check_device_id(device_id: str) -> str:
    """Return ``device_id`` unchanged, or raise :class:`TopicError` saying what is wrong."""
    if not is_valid_device_id(device_id):
        raise TopicError(
            f"invalid device id {device_id!r}: use 1-63 characters a-z, 0-9 and '-', "
            "starting with a letter or digit"
        )
    return device_id


def device_topic(device_id: str, channel: Channel | str) -> str:
    """Build ``clawfleet/v1/<device_id>/<channel>``.

    Raises:
        TopicError: the device id or the channel is not valid.
    """
    check_device_id(device_id)
    try:
        ch = Channel(channel)
    except ValueError:
        raise TopicError(f"unknown channel {channel!r}; known: {[c.value for c in Channel]}") from None
    return f"{ROOT}/{device_id}/{ch.value}"


def parse_device_topic(topic: str) -> tuple[str, Channel]:
    """Split a device topic into ``(device_id, channel)``.

    Raises:
        TopicError: the topic is not ``clawfleet/v1/<valid device id>/<known channel>``.
    """
    parts = topic.split("/")
    if len(parts) != 4 or f"{parts[0]}/{parts[1]}" != ROOT:
        raise TopicError(f"not a ClawFleet device topic: {topic!r}")
    device_id, leaf = parts[2], parts[3]
    check_device_id(device_id)
    try:
        return device_id, Channel(leaf)
    except ValueError:
        raise TopicError(f"unknown channel {leaf!r} in topic {topic!r}") from None


def suggest_device_id(name: str) -> str:
    """Turn a free-form name (e.g. a hostname) into a valid device id.

    ``"My-Laptop.local"`` -> ``"my-laptop-local"``. Raises :class:`TopicError` when nothing
    usable is left.
    """
    slug = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:63].strip("-")
    return check_device_id(slug)
