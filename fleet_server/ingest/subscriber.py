"""The MQTT side of ingest: a paho MQTT 5 client that validates each message and queues it for
the writer. It never touches the database, and nothing a device sends can raise out of its
callbacks (an unexpected error is queued as a ``internal_error`` reject), so paho's network thread
keeps running whatever arrives.

- Persistent session (clean start off, session expiry 7 days) and QoS 1, so the broker queues
  for the server while it restarts; manual acknowledgement (the writer acks after the commit),
  with a Receive Maximum of :data:`RECEIVE_MAXIMUM` messages in flight.
- Server birth: retained ``online`` on ``clawfleet/v1/_server/status`` (saying that this server
  sends delivery receipts); last will ``offline``.
- Also subscribed: the broker's count of dropped messages (:mod:`broker.overload`), in :attr:`Subscriber.drops`.
"""

from __future__ import annotations

import logging
import queue
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from broker.acl import BROKER_DROPPED_TOPIC
from broker.overload import DropCounter
from fleet_server.ingest.limits import DeviceLimits
from fleet_server.ingest.messages import DeliveryMark, Item, Received, Rejected
from shared import schemas
from shared.clock import now_ms
from shared.mqtt_client import mqtt5_client
from shared.payloads import RECEIPT_CHANNELS
from shared.topics import (
    ALL_DEVICES_FILTER,
    SERVER_CHANNELS,
    SERVER_STATUS_TOPIC,
    TopicError,
    parse_device_topic,
)

log = logging.getLogger("clawfleet.ingest")

SESSION_EXPIRY_S = 7 * 24 * 3600
RECEIVE_MAXIMUM = 4000
"""QoS 1 messages the broker may have in flight to ingest before it waits for PUBACKs (MQTT 5
Receive Maximum; Mosquitto uses it instead of its ``max_inflight_messages``). Ingest acknowledges
only after the commit, so this window bounds throughput: with Mosquitto's 100, at most 100
messages per commit cycle were delivered (measured ~300 msg/s stored on a loaded machine while the
broker delivered 700/s to a plain subscriber). 4,000 lets the next batches (1,000 each) arrive
while one commits; it costs at most a few MB of queued payloads."""


@dataclass(frozen=True)
class BrokerAccount:
    """How the server reaches the broker: host, port, credentials, optional TLS context."""

    host: str
    port: int
    username: str
    password: str
    tls: ssl.SSLContext | None = None


def classify(msg: mqtt.MQTTMessage, received_ms: int) -> Item:
    """Turn one MQTT message into a :class:`Received` or a :class:`Rejected` (never raises for
    anything a device can send; the payload is validated against the server's clock)."""
    if msg.topic == SERVER_STATUS_TOPIC:  # our own birth/will, retained from an earlier run
        return Rejected(msg.mid, msg.qos, "", "", "")
    try:
        device_id, channel = parse_device_topic(msg.topic)
    except (TopicError, UnicodeDecodeError) as exc:
        return Rejected(msg.mid, msg.qos, "", "bad_topic", str(exc)[:300])
    if channel in SERVER_CHANNELS or not msg.payload:  # ours (commands, verdicts, receipts) / cleared retained topics
        return Rejected(msg.mid, msg.qos, "", "", "")
    try:
        payload = schemas.decode(channel, msg.payload, expected_device_id=device_id, now_ms=received_ms)
    except schemas.PayloadError as exc:
        if msg.retain and exc.reason == "ts_out_of_window":  # an old retained sample replayed on subscribe
            return Rejected(msg.mid, msg.qos, "", "", "")
        fields = schemas.delivery_fields(msg.payload) if channel.value in RECEIPT_CHANNELS else None
        mark = DeliveryMark(channel.value, *fields) if fields else None  # rejected for good still counts as received
        return Rejected(msg.mid, msg.qos, device_id, exc.reason, str(exc), mark)
    mark = None
    if getattr(payload, "seq", None) is not None and payload.outbox is not None:
        mark = DeliveryMark(channel.value, payload.outbox, payload.seq, min(payload.seq_floor or 1, payload.seq))
    return Received(msg.mid, msg.qos, device_id, channel, payload, received_ms, retained=bool(msg.retain), mark=mark)


class Subscriber:
    """Subscribes to every device topic and puts each message on :attr:`items`.

    Args:
        account: broker connection details (the server's own dynsec account).
        client_id: MQTT client id; keep it stable so the persistent session is resumed.
        shared_group: when set, subscribe as ``$share/<group>/…`` (several ingest workers).
        limits: per-device budgets (:mod:`fleet_server.ingest.limits`); None: no budgets.
    """

    def __init__(self, account: BrokerAccount, client_id: str = "clawfleet-ingest",
                 shared_group: str | None = None, limits: DeviceLimits | None = None) -> None:
        self.account = account
        self.limits = limits  # per-device budgets, checked before a payload is parsed (None: none)
        self.items: queue.Queue[Item] = queue.Queue()
        self.counters: Counter[str] = Counter()
        self.drops = DropCounter()
        """What the broker says it dropped (``$SYS/broker/publish/messages/dropped``)."""
        self.connected = threading.Event()
        self.disconnected_since: float | None = time.monotonic()  # monotonic; None while connected
        self._stopping = False
        self._filter = f"$share/{shared_group}/{ALL_DEVICES_FILTER}" if shared_group else ALL_DEVICES_FILTER
        c = mqtt5_client(client_id, account.username, account.password, account.tls, manual_ack=True)
        c.will_set(SERVER_STATUS_TOPIC, _server_status("offline"), qos=1, retain=True)
        c.reconnect_delay_set(1, 30)
        c.suppress_exceptions = True  # a bug in a callback is logged by paho instead of ending its thread
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.message_callback_add(BROKER_DROPPED_TOPIC, lambda _c, _u, msg: self.drops.update(msg.payload))
        self.client = c

    @property
    def network_alive(self) -> bool:
        """True while paho's network thread (``loop_start``) runs. paho keeps it in ``Client._thread``
        and sets that to None when the thread ends, for whatever reason."""
        thread = getattr(self.client, "_thread", None)
        return isinstance(thread, threading.Thread) and thread.is_alive()

    def start(self) -> None:
        """Connect (retrying in the background) on the network thread."""
        props = Properties(mqtt.PacketTypes.CONNECT)
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        props.ReceiveMaximum = RECEIVE_MAXIMUM
        self.client.connect_async(self.account.host, self.account.port, keepalive=30, clean_start=False,
                                  properties=props)
        self.client.loop_start()

    def stop(self) -> None:
        """Publish the server's ``offline`` status (when connected) and disconnect."""
        self._stopping = True
        if self.connected.is_set():
            info = self.client.publish(SERVER_STATUS_TOPIC, _server_status("offline"), qos=1, retain=True)
            try:
                info.wait_for_publish(timeout=2)
            except (RuntimeError, ValueError):
                pass
        self.client.disconnect()
        self.client.loop_stop()

    def ack(self, mid: int, qos: int) -> None:
        """Send the PUBACK of one message (after its batch committed)."""
        self.client.ack(mid, qos)

    # ---- paho callbacks (network thread): validate only, never touch the database -------
    def _on_connect(self, client: mqtt.Client, _u: object, flags: mqtt.ConnectFlags, reason: ReasonCode,
                    _p: Properties | None) -> None:
        if reason.is_failure:
            log.error("broker refused the server's connection: %s", reason)
            return
        log.info("ingest connected (session %s)", "resumed" if flags.session_present else "new")
        client.subscribe([(self._filter, SubscribeOptions(qos=1, noLocal=True)),
                          (BROKER_DROPPED_TOPIC, SubscribeOptions(qos=0))])
        client.publish(SERVER_STATUS_TOPIC, _server_status("online"), qos=1, retain=True)
        self.disconnected_since = None
        self.connected.set()

    def _on_disconnect(self, _c: mqtt.Client, _u: object, _f: object, reason: ReasonCode,
                       _p: Properties | None) -> None:
        self.connected.clear()
        if self.disconnected_since is None:
            self.disconnected_since = time.monotonic()
        if not self._stopping:
            log.warning("ingest lost the broker connection (%s); reconnecting", reason)

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        self.counters["received"] += 1
        try:
            item = (self.limits.check(msg) if self.limits is not None else None) or classify(msg, now_ms())
        except Exception as exc:  # a bug must not end the network thread: count it, ack it
            device_id = _device_of(msg)
            log.exception("unexpected error on a message from %s", device_id or "(unknown)")
            item = Rejected(msg.mid, msg.qos, device_id, "internal_error", f"{type(exc).__name__}: {exc}"[:300])
        self.items.put(item)


def _device_of(msg: mqtt.MQTTMessage) -> str:
    try:
        return parse_device_topic(msg.topic)[0]
    except Exception:  # best effort, for the reject's device
        return ""


def _server_status(state: str) -> bytes:
    # receipts: this server confirms what it stored (agents then keep messages until it does)
    return schemas.ServerStatus(ts=now_ms(), state=state, receipts=True).model_dump_json().encode()
