"""Who may do what on the broker: the server role, the device roles, the default access.

Each device gets one dynsec client (username = client id = device id) holding two roles: its own
``device-<id>`` with the literal topics only it may use (Mosquitto 2.0 dynsec matches ACL topics
literally: no ``%u``/``%c`` substitution, which arrives in 2.1), and the shared
``clawfleet-device`` with what every device may do (subscribe to the server status). Devices
enrolled before the shared role existed carry the server status in their own role; both layouts
grant exactly the same (see :func:`device_role_acls`, :func:`legacy_device_role_acls`). Devices
enrolled before receipts lack the subscription to their own ``receipt`` topic; it is added at
start-up (managed broker: in its file; external broker: by :func:`fleet_server.devices.reconcile.reconcile_roles`).

Why it matters: Mosquitto 2.0.11 rewrites its whole dynsec file after every command that changes
something (``dynsec__config_save`` in each handler; several commands in one message still save
once each), so the bytes each device costs there set the price of every later enrollment,
rotation and revocation: about 24 ms per 1,000 enrolled devices per save, measured here.

The server account holds the role ``clawfleet-server``. Default access denies publishing and
subscribing; receiving is allowed, which is safe because a client only receives what it may
subscribe to. Topic names come from :mod:`shared.topics`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from shared.topics import (
    DEVICE_PUBLISH_CHANNELS,
    DEVICE_READ_CHANNELS,
    RETAINED_CHANNELS,
    ROOT,
    SERVER_STATUS_TOPIC,
    Channel,
    TopicError,
    check_device_id,
    device_topic,
)

CONTROL_FILTER = "$CONTROL/dynamic-security/#"
"""The dynamic-security plugin's command and response topics."""
BROKER_DROPPED_TOPIC = "$SYS/broker/publish/messages/dropped"
"""Mosquitto's count of messages it dropped since it started (queues full), published on change
every ``sys_interval`` (10 s by default); the server reads it (:mod:`broker.overload`)."""

SERVER_USERNAME = "clawfleet-server"
"""Username of the server's own broker account (reserved: no device may take this id)."""
SERVER_ROLE = "clawfleet-server"
"""Role holding the server account's ACLs."""
DEVICE_ROLE_PREFIX = "device-"
"""A device's own role is ``device-<device id>``."""
DEVICE_SHARED_ROLE = "clawfleet-device"
"""Role every device holds besides its own: what all devices may do (subscribe to the server status).
It does not start with ``device-``, so it is never a device's own role."""

DEFAULT_ACL_ACCESS: dict[str, bool] = {
    "publishClientSend": False,
    "publishClientReceive": True,
    "subscribe": False,
    "unsubscribe": True,
}
"""What applies when no role ACL matches: deny publish and subscribe, allow receive/unsubscribe."""


def _acl(acltype: str, topic: str) -> dict[str, Any]:
    return {"acltype": acltype, "topic": topic, "priority": 0, "allow": True}


def server_role_acls() -> list[dict[str, Any]]:
    """ACLs of the ``clawfleet-server`` role, as dynsec ACL dicts.

    Administer dynsec; subscribe to every device channel (also via any ``$share/<group>/``) and
    to the broker's dropped-message count; publish commands, the server status, its verdicts
    (``availability``), receipts and (to clear them, or to mark a kicked device offline) any device's
    retained topics.
    """
    acls = [_acl(t, CONTROL_FILTER) for t in ("publishClientSend", "publishClientReceive", "subscribePattern")]
    acls += [
        _acl("subscribePattern", f"{ROOT}/#"),
        _acl("subscribePattern", f"$share/+/{ROOT}/#"),
        _acl("publishClientReceive", f"{ROOT}/#"),
        _acl("publishClientSend", f"{ROOT}/+/{Channel.CMD.value}"),
        _acl("publishClientSend", SERVER_STATUS_TOPIC),
        _acl("subscribeLiteral", BROKER_DROPPED_TOPIC),
    ]
    acls += [_acl("publishClientSend", f"{ROOT}/+/{ch.value}") for ch in RETAINED_CHANNELS]
    return acls


def device_role_name(device_id: str) -> str:
    """``device-<id>``; raises :class:`TopicError` for an invalid id."""
    return DEVICE_ROLE_PREFIX + check_device_id(device_id)


def device_role_acls(device_id: str) -> list[dict[str, Any]]:
    """ACLs of ``device-<id>``: publish its own status/meta/telemetry/usage/logs/snooze; subscribe
    (exact filter only) to its own ``cmd`` and ``receipt``. The server status comes with
    :data:`DEVICE_SHARED_ROLE`. Devices enrolled before ``snooze`` or receipts existed get them at
    the next start: the managed broker's file (:func:`broker.dynsec_file.migrate_device_layout`) or,
    on an external broker, :func:`fleet_server.devices.reconcile.reconcile_roles`."""
    acls = [_acl("publishClientSend", device_topic(device_id, ch)) for ch in DEVICE_PUBLISH_CHANNELS]
    acls += [_acl("subscribeLiteral", device_topic(device_id, ch)) for ch in DEVICE_READ_CHANNELS]
    return acls


def device_shared_role_acls() -> list[dict[str, Any]]:
    """ACLs of :data:`DEVICE_SHARED_ROLE`: subscribe (exact filter only) to the server status."""
    return [_acl("subscribeLiteral", SERVER_STATUS_TOPIC)]


def legacy_device_role_acls(device_id: str) -> list[dict[str, Any]]:
    """ACLs of ``device-<id>`` as enrolled before :data:`DEVICE_SHARED_ROLE` (its own role alone
    granted everything): :func:`device_role_acls` plus the server status."""
    return device_role_acls(device_id) + device_shared_role_acls()


def device_client_roles(device_id: str) -> list[dict[str, str]]:
    """The ``roles`` list of a device's dynsec client: its own role, then the shared one."""
    return [{"rolename": device_role_name(device_id)}, {"rolename": DEVICE_SHARED_ROLE}]


def same_acls(a: Iterable[dict[str, Any]], b: Iterable[dict[str, Any]]) -> bool:
    """True when two dynsec ACL lists grant the same (order ignored; missing priority = 0)."""

    def key(acls: Iterable[dict[str, Any]]) -> set[tuple[str, str, bool, int]]:
        return {(x["acltype"], x["topic"], bool(x.get("allow", False)), int(x.get("priority", 0))) for x in acls}

    return key(a) == key(b)


SERVER_CLIENT_ID_PREFIXES = ("clawfleet-server", "clawfleet-ingest", "clawfleet-dynsec", "clawfleet-cli")
"""Client ids of the server's own MQTT connections start with one of these (``clawfleet-ingest``,
``clawfleet-ingest-<n>``, ``clawfleet-dynsec``, ``clawfleet-cli-<random>``, ``clawfleet-server-dynsec-…``).
They all log in as the server account, which has no fixed client id; no device may have such an id,
because a device's client id is its id (see :func:`is_server_client_id`)."""


def is_server_client_id(client_id: str) -> bool:
    """True for a client id reserved for the server's own connections (:data:`SERVER_CLIENT_ID_PREFIXES`)."""
    return client_id.startswith(SERVER_CLIENT_ID_PREFIXES)


def check_device_account(device_id: str) -> str:
    """Return ``device_id`` or raise :class:`TopicError`: invalid, or reserved for the server's own
    account and connections (:func:`is_server_client_id`)."""
    check_device_id(device_id)
    if is_server_client_id(device_id):
        raise TopicError(f"device id {device_id!r} is reserved for the server's own broker connections "
                         f"(ids starting with {', '.join(SERVER_CLIENT_ID_PREFIXES)}); choose another id")
    return device_id


# --- read-only integration accounts (Home Assistant, Node-RED, scripts) ---

INTEGRATION_PREFIX = "integration."
"""Integration usernames and roles are ``integration.<name>``: a dot, so never a device id."""
INTEGRATION_CHANNELS = (Channel.STATUS, Channel.META, Channel.TELEMETRY, Channel.USAGE, Channel.LOGS)
"""Device channels an integration account may be allowed to read."""
DEFAULT_INTEGRATION_CHANNELS = (Channel.STATUS, Channel.META, Channel.TELEMETRY)


def is_integration_username(username: str) -> bool:
    """True for ``integration.<name>`` usernames (:func:`integration_username`)."""
    return username.startswith(INTEGRATION_PREFIX)


def integration_username(name: str) -> str:
    """``integration.<name>`` for a name of ``[a-z0-9][a-z0-9-]{0,40}``; raises TopicError otherwise."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,40}", name or ""):
        raise TopicError("integration names are 1-41 characters of a-z, 0-9 and '-', starting with a letter or digit")
    return INTEGRATION_PREFIX + name


def integration_role_acls(channels: Iterable[Channel]) -> list[dict[str, Any]]:
    """ACLs of a read-only integration role: subscribe to ``clawfleet/v1/+/<channel>`` for each
    allowed channel, and to the server's ``availability`` verdicts with ``status``; nothing else (the
    default access denies every publish and other subscriptions)."""
    allowed = set(channels)
    bad = allowed - set(INTEGRATION_CHANNELS)
    if bad:
        raise TopicError(f"integrations may read {', '.join(c.value for c in INTEGRATION_CHANNELS)} only")
    acls = [_acl("subscribePattern", f"{ROOT}/+/{ch.value}") for ch in INTEGRATION_CHANNELS if ch in allowed]
    if Channel.STATUS in allowed:
        acls.append(_acl("subscribePattern", f"{ROOT}/+/{Channel.AVAILABILITY.value}"))
    return acls
