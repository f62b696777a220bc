"""Reusable MQTT test helpers: free ports, a paho v5 probe client that records what the broker
says (CONNACK, PUBACK, SUBACK, DISCONNECT reason codes, messages), and device creation.

Import from tests as ``from mqtt_helpers import ...`` (``tests/`` is on ``sys.path`` because
``tests/conftest.py`` lives there and ``tests/`` is not a package).
"""

from __future__ import annotations

import queue
import secrets
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from broker.dynsec import DynSecClient

TIMEOUT = 5.0
"""Default wait for any broker answer, seconds."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def unique_device_id(prefix: str = "dev") -> str:
    """A fresh valid device id, so tests sharing a broker do not collide."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def make_device(dynsec: DynSecClient, device_id: str) -> str:
    """Create ``device_id`` on the broker with a new random key; return the key (password)."""
    password = "cfk_" + secrets.token_urlsafe(32)
    dynsec.create_device(device_id, password)
    return password


@dataclass
class Disconnect:
    """A DISCONNECT seen by a :class:`Probe`: ``reason`` and ``at`` (``time.monotonic()``)."""

    reason: ReasonCode
    at: float


class Probe:
    """A paho MQTT 5 client for tests, with its own network thread and no auto-reconnect.

    Every callback records what the broker answered, so a test can assert exact reason codes.
    Use :func:`connect_probe`, or construct and call :meth:`connect`; always :meth:`close`.
    """

    def __init__(self, host: str, port: int, username: str | None, password: str | None,
                 client_id: str | None = None) -> None:
        self.host, self.port = host, port
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or username or "",
                                  protocol=mqtt.MQTTv5)
        if username is not None:
            self.client.username_pw_set(username, password)
        self.connack: ReasonCode | None = None
        self.disconnected: Disconnect | None = None
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self._acks: dict[int, Any] = {}
        self._cond = threading.Condition()
        self._running = False
        self._thread: threading.Thread | None = None
        c = self.client
        c.on_connect, c.on_disconnect = self._on_connect, self._on_disconnect
        c.on_publish, c.on_subscribe, c.on_message = self._on_publish, self._on_subscribe, self._on_message

    # callbacks
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        with self._cond:
            self.connack = rc
            self._cond.notify_all()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        with self._cond:
            self.disconnected = Disconnect(rc, time.monotonic())
            self._running = False
            self._cond.notify_all()

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, rc: ReasonCode, props: Any) -> None:
        with self._cond:
            self._acks[mid] = rc
            self._cond.notify_all()

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, rcs: list[ReasonCode],
                      props: Any) -> None:
        with self._cond:
            self._acks[mid] = rcs
            self._cond.notify_all()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self.messages.put(msg)

    def _loop(self) -> None:
        while self._running:
            if self.client.loop(timeout=0.05) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                with self._cond:
                    if self.disconnected is None:
                        self.disconnected = Disconnect(ReasonCode(mqtt.PacketTypes.DISCONNECT, "Unspecified error"),
                                                       time.monotonic())
                    self._running = False
                    self._cond.notify_all()

    def _wait(self, pred: Any, timeout: float, what: str) -> None:
        with self._cond:
            if not self._cond.wait_for(pred, timeout):
                raise TimeoutError(f"no {what} within {timeout} s")

    # actions
    def connect(self, timeout: float = TIMEOUT, clean_start: bool = True) -> ReasonCode:
        """Connect, wait for CONNACK, return its reason code (0 = success, 0x87 not authorized...).
        ``clean_start`` False asks to resume the client id's session (kept 1 h)."""
        props = None
        if not clean_start:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 3600
        self.client.connect(self.host, self.port, keepalive=30, clean_start=clean_start, properties=props)
        self._running = True
        self._thread = threading.Thread(target=self._loop, daemon=True, name="mqtt-probe")
        self._thread.start()
        self._wait(lambda: self.connack is not None or self.disconnected is not None, timeout, "CONNACK")
        assert self.connack is not None, f"connection closed without CONNACK: {self.disconnected}"
        return self.connack

    def publish(self, topic: str, payload: bytes | str = b"", qos: int = 1, retain: bool = False,
                timeout: float = TIMEOUT) -> ReasonCode | None:
        """Publish; for QoS 1 wait and return the PUBACK reason code, for QoS 0 return None."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if qos == 0:
            return None
        self._wait(lambda: info.mid in self._acks, timeout, f"PUBACK for {topic}")
        return self._acks.pop(info.mid)

    def subscribe(self, topic: str, qos: int = 1, timeout: float = TIMEOUT) -> ReasonCode:
        """Subscribe to one filter; wait and return the SUBACK reason code."""
        _, mid = self.client.subscribe(topic, qos=qos)
        self._wait(lambda: mid in self._acks, timeout, f"SUBACK for {topic}")
        return self._acks.pop(mid)[0]

    def next_message(self, timeout: float = TIMEOUT) -> mqtt.MQTTMessage:
        """The next message received (raises queue.Empty after ``timeout`` s)."""
        return self.messages.get(timeout=timeout)

    def messages_until(self, topic: str, timeout: float = TIMEOUT) -> list[mqtt.MQTTMessage]:
        """Messages received up to and including the first one on ``topic`` (a sentinel the test
        sends after the thing it checks, so "nothing else arrived" needs no sleep)."""
        got = []
        deadline = time.monotonic() + timeout
        while True:
            msg = self.messages.get(timeout=max(0.0, deadline - time.monotonic()))
            got.append(msg)
            if msg.topic == topic:
                return got

    def wait_disconnect(self, timeout: float = TIMEOUT) -> Disconnect:
        """Wait until the broker closes the connection; return reason and time."""
        self._wait(lambda: self.disconnected is not None, timeout, "DISCONNECT")
        assert self.disconnected is not None
        return self.disconnected

    def close(self) -> None:
        """Disconnect (if connected) and stop the network thread."""
        if self._running:
            self.client.disconnect()
            self._wait(lambda: not self._running, TIMEOUT, "disconnect")
        self._running = False
        if self._thread is not None:
            self._thread.join(TIMEOUT)

    def __enter__(self) -> Probe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect_probe(host: str, port: int, username: str | None, password: str | None,
                  client_id: str | None = None, timeout: float = TIMEOUT,
                  clean_start: bool = True) -> tuple[Probe, ReasonCode]:
    """Connect a :class:`Probe` and return it with the CONNACK reason code (the caller closes it)."""
    probe = Probe(host, port, username, password, client_id)
    return probe, probe.connect(timeout, clean_start)
