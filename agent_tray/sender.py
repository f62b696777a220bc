"""Draining the outbox: what to publish next, and when a message may leave the outbox.

:class:`OutboxSender` runs in the publisher's sender thread (:meth:`OutboxSender.drain`); paho's
network thread only reports to it (:meth:`~OutboxSender.on_connect`, :meth:`~OutboxSender.on_subscribe`,
:meth:`~OutboxSender.on_server_status`, :meth:`~OutboxSender.on_receipt`).

- **Receipts on** (the server's birth says ``"receipts": true`` and the broker granted this device
  its ``receipt`` topic): telemetry, usage and log messages go out stamped with the outbox id, their
  sequence number and the channel's lowest held number (:func:`shared.payloads.stamp`) and stay in
  the outbox until a receipt confirms them. What no receipt confirmed is sent again right after a
  reconnect (the broker may have lost what it acknowledged), once a message sent after it was
  confirmed (it was lost on the way), and when receipts stopped for
  :data:`~agent_tray.receipts.RESEND_AFTER_S` while the server was online (oldest first, paced by
  :class:`~agent_tray.receipts.ResendPacer`); at most :data:`~agent_tray.receipts.RECEIPT_WINDOW`
  messages are unconfirmed at a time, so a backlog drains at the pace the server stores it. The
  server's support is remembered in the outbox file, so it is known before its birth message
  arrives after a broker restart.
- **Receipts off** (an older server, or a broker that refuses the subscription): a message leaves
  the outbox on its PUBACK, as before receipts.

A late telemetry sample goes out without the retained flag unless it is the newest one, so the
broker's retained "latest sample" is never replaced by an older one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from agent_tray.outbox import Outbox, StoredMessage
from agent_tray.receipts import RECEIPT_WINDOW, Confirmed, ResendPacer, Unconfirmed
from shared import payloads
from shared.clock import now_ms

log = logging.getLogger("clawfleet.agent.mqtt")

SEND_WINDOW = 50
"""Messages published but not yet acknowledged (PUBACK), at most."""
RECEIPT_WAIT_S = 1.0
"""After connecting, the sender waits this long at most for the broker's retained server status and
receipt before it (re)sends, seconds (they normally arrive within milliseconds of the SUBACK)."""
RESUBSCRIBE_S = 600.0
"""A refused receipt subscription (a broker whose device ACLs are being updated) is tried again this
often, seconds."""
SERVER_RECEIPTS_INFO = "server_receipts"
"""Outbox info key remembering whether the server sends receipts ("1"/"0")."""
TRACKED = frozenset(payloads.RECEIPT_CHANNELS)
"""Outbox kinds that receipts confirm."""


def puback_received(info: mqtt.MQTTMessageInfo) -> bool:
    """Has the broker acknowledged the message of ``info``? paho's ``is_published`` raises for a QoS 1
    message published while the connection was down (``rc`` NO_CONN) — forever, although paho keeps
    that message, sends it after the reconnect and marks it published on its PUBACK like any other;
    so such an ``info`` is treated as queued."""
    if info.rc == mqtt.MQTT_ERR_NO_CONN:
        info.rc = mqtt.MQTT_ERR_SUCCESS
    return info.is_published()


class OutboxSender:
    """Publishes the outbox in order and deletes what is delivered (see the module docstring).

    Args:
        outbox: the persistent outbox.
        client: the connected (or connecting) paho client; ``publish``/``subscribe`` are thread-safe.
        receipt_topic: this device's ``…/receipt`` topic.
        wake: wakes the sender thread (called from timers and paho's thread).
    """

    def __init__(self, outbox: Outbox, client: mqtt.Client, receipt_topic: str, wake: Callable[[], None]) -> None:
        self.outbox, self._client, self.receipt_topic, self._wake = outbox, client, receipt_topic, wake
        self.confirmed = Confirmed(outbox.outbox_id)
        """What the server's receipts confirmed (sender thread)."""
        self.unconfirmed = Unconfirmed()
        """Messages sent and waiting for a receipt (sender thread)."""
        self._pacer = ResendPacer()
        self.last_publish_ms: int | None = None
        """Epoch ms of the last PUBACK of an outbox message."""
        self.last_confirmed_ms: int | None = None
        """Epoch ms of the last receipt that confirmed something."""
        self.resent = 0
        """Messages sent again because no receipt confirmed them."""
        self._inflight: dict[int, tuple[mqtt.MQTTMessageInfo, bool]] = {}  # seq -> (info, receipt-tracked)
        self._sent_upto = 0
        self._receipts_in: list[payloads.Receipt] = []
        self._lock = threading.Lock()
        self._server_receipts = outbox.info(SERVER_RECEIPTS_INFO) == "1"
        self._server_online = True
        self._server_online_since = 0.0  # monotonic
        self._receipt_sub: bool | None = None  # this connection's SUBACK for the receipt topic
        self._receipt_mid: int | None = None
        self._resubscribe_at = 0.0
        self._connected_at = 0.0  # monotonic
        self._heard = {"status": False, "receipt": False}  # since the connect
        self._after_connect = False  # the re-send after a connect is still to do
        self._was_active = False

    @property
    def receipts_active(self) -> bool:
        """True while messages leave the outbox on the server's receipts (not on the broker's PUBACK)."""
        return self._server_receipts and self._receipt_sub is True

    # ---- from paho's network thread ------------------------------------------------------
    def on_connect(self, subscribe_mid: int | None) -> None:
        """A connection is up; ``subscribe_mid``: the SUBSCRIBE that includes the receipt topic (last)."""
        self._receipt_sub, self._receipt_mid = None, subscribe_mid
        self._heard = {"status": False, "receipt": False}
        self._connected_at, self._after_connect = time.monotonic(), True

    def on_subscribe(self, mid: int, reasons: list[ReasonCode]) -> None:
        """A SUBACK: the last reason code of :meth:`on_connect`'s subscription is the receipt topic's."""
        if mid != self._receipt_mid or not reasons:
            return
        granted = not reasons[-1].is_failure
        if not granted and self._receipt_sub is not False and self._server_receipts:
            log.warning("the broker does not let this device read its delivery receipts (%s): messages leave the "
                        "outbox on the broker's acknowledgement until it does", reasons[-1])
        self._receipt_sub = granted
        self._resubscribe_at = time.monotonic() + RESUBSCRIBE_S
        self._wake()

    def on_server_status(self, status: payloads.ServerStatus) -> None:
        """The server's birth or will (retained or live)."""
        self._heard["status"] = True
        self._server_online = status.state == "online"
        if self._server_online:
            self._server_online_since = time.monotonic()
            if status.receipts != self._server_receipts:
                log.info("the fleet server %s delivery receipts", "sends" if status.receipts else "does not send")
                self._server_receipts = status.receipts
                self.outbox.set_info(SERVER_RECEIPTS_INFO, "1" if status.receipts else "0")
        self._wake()

    def on_receipt(self, raw: bytes) -> None:
        """A message on the receipt topic (empty: the retained receipt was cleared)."""
        self._heard["receipt"] = True
        if raw:
            try:
                receipt = payloads.parse_receipt(raw)
            except ValueError as exc:
                log.warning("ignored an invalid receipt: %s", exc)
                return
            with self._lock:
                self._receipts_in.append(receipt)
        self._wake()

    # ---- sender thread -----------------------------------------------------------------
    def drain(self, connected: bool) -> None:
        """Apply receipts and PUBACKs, then (when ``connected``) send what is due."""
        now = time.monotonic()
        active = self.receipts_active
        if self._was_active and not active:  # receipts stopped: what waits for one goes again, for a PUBACK
            self._send_again(self.unconfirmed.keys(), "the server no longer confirms them")
        self._was_active = active
        self._apply_receipts()
        done = [seq for seq, (info, _) in self._inflight.items() if puback_received(info)]
        if done:
            self.outbox.ack([seq for seq in done if not (active and self._inflight[seq][1])])
            self.last_publish_ms = now_ms()
            for seq in done:
                del self._inflight[seq]
        if not connected or not self._settled(now):
            return
        if active:
            if self._after_connect:  # the broker may have lost what it acknowledged (a restart without saving)
                self._send_again(self.unconfirmed.keys(), "sent before the reconnect")
            elif self._server_online:
                due = [k for k in self.unconfirmed.due(now, self._server_online_since) if k not in self._inflight]
                self._send_again(self._pacer.take(due, now), "no receipt confirmed them in time")
        elif self._receipt_sub is False and self._server_receipts and now >= self._resubscribe_at:
            self._resubscribe_at = now + RESUBSCRIBE_S
            _rc, self._receipt_mid = self._client.subscribe(self.receipt_topic, qos=1)
        self._after_connect = False
        self._send_new(active, now)

    def _settled(self, now: float) -> bool:
        """After a connect: have the retained server status and receipt had time to arrive?"""
        if not self._after_connect or now - self._connected_at >= RECEIPT_WAIT_S:
            return True
        heard_all = self._heard["status"] and (self._heard["receipt"] or not self._server_receipts)
        if heard_all and self._receipt_sub is not None:
            return True
        timer = threading.Timer(max(0.0, self._connected_at + RECEIPT_WAIT_S - now), self._wake)
        timer.daemon = True
        timer.start()
        return False

    def _apply_receipts(self) -> None:
        with self._lock:
            receipts, self._receipts_in = self._receipts_in, []
        grown = False
        for receipt in receipts:
            last = {kind: self.outbox.last_seq(kind) for kind in TRACKED}
            for kind, cov in self.confirmed.merge(receipt, last).items():
                self.outbox.confirm(kind, cov.upto, cov.ranges)
                grown = True
        if grown:
            self.unconfirmed.settle(self.confirmed)
            self.last_confirmed_ms = now_ms()
            self._pacer.progress()

    def _send_again(self, keys: list[int], why: str) -> None:
        keys = [k for k in keys if k not in self._inflight]  # paho itself re-sends what awaits a PUBACK
        if not keys:
            return
        self.unconfirmed.forget(keys)
        self._sent_upto = min(self._sent_upto, keys[0] - 1)
        self.resent += len(keys)
        log.info("sending %d messages again (%s)", len(keys), why)

    def _send_new(self, active: bool, now: float) -> None:
        budget = SEND_WINDOW - len(self._inflight)
        if active:
            budget = min(budget, RECEIPT_WINDOW - len(self.unconfirmed))
        while budget > 0:
            batch = self.outbox.pending(after_seq=self._sent_upto, limit=max(budget, SEND_WINDOW))
            if not batch:
                return
            floors = self.outbox.floors() if active else {}
            for msg in batch:
                if msg.seq in self._inflight or msg.seq in self.unconfirmed:  # on its way already
                    self._sent_upto = msg.seq
                    continue
                if budget <= 0:
                    return
                if not self._publish(msg, active and msg.kind in TRACKED, floors, now):
                    return
                budget -= 1

    def _publish(self, msg: StoredMessage, tracked: bool, floors: dict[str, int], now: float) -> bool:
        payload = msg.payload
        if tracked:
            floor = min(floors.get(msg.kind, msg.chan_seq), msg.chan_seq)
            payload = payloads.stamp(payload, self.outbox.outbox_id, msg.chan_seq, floor)
        retain = msg.retain and msg.chan_seq >= self.outbox.last_seq(msg.kind)
        info = self._client.publish(msg.topic, payload, qos=msg.qos, retain=retain)
        if info.rc == mqtt.MQTT_ERR_SUCCESS or info.rc == mqtt.MQTT_ERR_NO_CONN:
            self._inflight[msg.seq] = (info, tracked)  # NO_CONN: paho keeps QoS 1 messages, sends them on reconnect
            self._sent_upto = msg.seq
            if tracked:
                self.unconfirmed.sent(msg.seq, msg.kind, msg.chan_seq, now)
            return True
        log.warning("publish of %s failed (%s); will retry", msg.topic, mqtt.error_string(info.rc))
        return False
