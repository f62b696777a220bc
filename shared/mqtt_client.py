"""How every ClawFleet MQTT connection is set up (agent publisher, enrollment check, server ingest,
dynamic-security admin, CLI sessions): paho-mqtt 2.x, MQTT 5, user name and password, optional TLS
context, TCP_NODELAY. Callbacks, last will, session properties and timing stay with the caller.
"""

from __future__ import annotations

import socket
import ssl
from typing import Any, TypeVar

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

C = TypeVar("C", bound=mqtt.Client)


def mqtt5_client(client_id: str, username: str, password: str, tls: ssl.SSLContext | None = None, *,
                 insecure: bool = False, cls: type[C] = mqtt.Client, **kwargs: Any) -> C:  # type: ignore[assignment]
    """A new, unconnected paho client (callback API version 2, MQTT 5) with credentials set.

    Args:
        client_id: the MQTT client id (a device's id, or a unique id for a short-lived session).
        username, password: the broker account (a device's API key is its password).
        tls: TLS context to connect with (None: plain MQTT, loopback only).
        insecure: skip the host-name check of the broker's certificate (testing only).
        cls: a subclass of ``paho.mqtt.client.Client`` to build.
        kwargs: further ``Client`` arguments (e.g. ``manual_ack=True``).
    """
    client = cls(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5, **kwargs)
    client.username_pw_set(username, password)
    if tls is not None:
        client.tls_set_context(tls)
        if insecure:
            client.tls_insecure_set(True)
    client.on_socket_open = no_delay
    return client


def no_delay(_client: mqtt.Client, _userdata: object, sock: object) -> None:
    """Send small MQTT packets at once (Nagle + delayed ACK add ~40 ms per QoS 1 round trip)."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # type: ignore[attr-defined]
    except (OSError, AttributeError):  # not a TCP socket (e.g. a unix socket or websocket)
        pass
