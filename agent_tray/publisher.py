"""MQTT 5 publisher: connection, availability, and draining the persistent outbox.

- Client id and username are the device id; the password is the device's API key.
- Last will: retained ``offline`` on ``…/status`` (QoS 1), published by the broker when the
  connection is lost without a DISCONNECT (power loss, kill -9, network gone) — within about
  1.5 × keepalive.
- On connect: retained ``online`` status and retained ``meta``; subscribe to the device's
  ``cmd`` and the server status (a server ``online`` makes us republish both).
- Every QoS 1 message goes through :class:`agent_tray.outbox.Outbox`; a sender thread publishes
  pending rows in order while connected (:class:`agent_tray.sender.OutboxSender`). A message leaves
  the outbox when the server's delivery receipt confirms it, or, with a server that sends none, on
  its PUBACK. paho re-sends in-flight messages after a reconnect; after an agent restart the
  outbox sends them again (the server de-duplicates).
- Also subscribed: the device's ``receipt`` topic (retained; only this device may read it).
- Reconnect: exponential backoff with full jitter (1 s … 60 s), so a fleet does not reconnect
  in lockstep after a broker restart.
- Route: MQTT over TLS to the broker URL, or MQTT over secure WebSockets when that port is blocked
  (:mod:`agent_tray.transport` picks; the publisher asks it before every attempt).
"""

from __future__ import annotations

import logging
import random
import socket
import ssl
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from agent_tray.config import AgentConfig
from agent_tray.outbox import Outbox
from agent_tray.sender import SEND_WINDOW, OutboxSender
from agent_tray.transport import RoutePicker, picker_for, probe_direct
from shared import payloads
from shared.clock import now_ms
from shared.mqtt_client import mqtt5_client
from shared.topics import SERVER_STATUS_TOPIC, Channel, device_topic

log = logging.getLogger("clawfleet.agent.mqtt")

BACKOFF_MIN_S = 1.0
BACKOFF_MAX_S = 60.0
SENDER_IDLE_S = 30.0
"""The sender thread sleeps until woken (new outbox messages, a PUBACK, a receipt, a connect); this
is only its safety net, seconds. An idle agent should not query its outbox every second."""
FAIL_REPEAT_LOG_S = 600.0
"""A connection failure is logged when it first happens or changes, then again at most this often (seconds)."""
X509_V_ERR_HOSTNAME_MISMATCH = 62
"""OpenSSL's verify code for a certificate that does not name the host."""


def jittered_backoff(attempt: int, base: float = BACKOFF_MIN_S, cap: float = BACKOFF_MAX_S) -> float:
    """Seconds to wait before reconnect attempt ``attempt`` (0-based): full jitter in
    ``[base, min(cap, base * 2**attempt)]``."""
    return random.uniform(base, min(cap, base * (2 ** min(attempt, 16))))


def tls_context(cfg: AgentConfig) -> ssl.SSLContext | None:
    """TLS context for ``mqtts://`` URLs: verifies the broker against the pinned CA.

    Returns None for plain ``mqtt://``. ``insecure`` disables verification (testing only; logged
    as a warning on every connect).
    """
    scheme, _host, _port = cfg.broker()
    if scheme != "mqtts":
        return None
    ctx = ssl.create_default_context(cadata=cfg.ca_pem) if cfg.ca_pem else ssl.create_default_context()
    if cfg.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Publisher:
    """Owns the paho client and the sender thread.

    Args:
        cfg: agent configuration (broker URL, device id, API key, keepalive).
        outbox: where QoS 1 messages wait for their PUBACK.
        meta: callable returning the current :class:`shared.payloads.Meta` (sent on every connect).
        on_command: called with each valid :class:`shared.payloads.Command` from the server.
        on_connection: called with True/False when the connection comes up or goes down.
    """

    def __init__(
        self,
        cfg: AgentConfig,
        outbox: Outbox,
        meta: Callable[[], payloads.Meta],
        on_command: Callable[[payloads.Command], None] | None = None,
        on_connection: Callable[[bool], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.outbox = outbox
        self._meta = meta
        self._on_command = on_command
        self._on_connection = on_connection
        self.connected = threading.Event()
        self.last_error: str | None = None
        self.last_refusal: ReasonCode | None = None  # CONNACK failure reason, until the next successful connect
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._attempt = 0
        self._fail_logged: tuple[str, float] | None = None  # last connect failure logged, monotonic time
        self._status_topic = device_topic(cfg.device_id, Channel.STATUS)
        self.routes: RoutePicker = picker_for(cfg.broker_url, cfg.wss_url)
        self._conn_lock = threading.Lock()  # start/stop/route switch
        self.presence: tuple[str, str | None] = ("online", None)
        """The status announced on every connect: ``online``, or ``paused`` while reporting is paused."""
        self._client = self._make_client()
        self.sender = OutboxSender(outbox, self._client, device_topic(cfg.device_id, Channel.RECEIPT), self._wake.set)
        """Publishes the outbox; knows what receipts confirmed."""
        self._sender = threading.Thread(target=self._send_loop, name="clawfleet-sender", daemon=True)

    def _make_client(self) -> mqtt.Client:
        cfg = self.cfg
        client = mqtt5_client(cfg.device_id, cfg.device_id, cfg.api_key, tls_context(cfg), insecure=cfg.insecure,
                              cls=_Client)
        client.loop_timeout_s = network_loop_timeout(cfg.keepalive_s)
        client.routes = self.routes
        will = payloads.Status(device_id=cfg.device_id, ts=now_ms(), state="offline", reason="last-will")
        client.will_set(self._status_topic, payloads.encode(will), qos=1, retain=True)
        client.max_inflight_messages_set(SEND_WINDOW)
        client.max_queued_messages_set(0)
        client.reconnect_delay_set(BACKOFF_MIN_S, BACKOFF_MIN_S)
        client.on_connect = self._handle_connect
        client.on_connect_fail = self._handle_connect_fail
        client.on_disconnect = self._handle_disconnect
        client.on_message = self._handle_message
        client.on_publish = self._handle_publish
        client.on_subscribe = lambda _c, _u, mid, reasons, _p: self.sender.on_subscribe(mid, reasons)
        return client

    # ---- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        """Connect in the background (retrying forever with jittered backoff) and start sending."""
        if self.cfg.insecure:
            log.warning("TLS verification is OFF (--insecure): anyone on the path can impersonate the broker")
        log.info("connecting to %s as %s", self.cfg.broker_url, self.cfg.device_id)
        with self._conn_lock:
            self._connect_async()
        self._sender.start()

    def _connect_async(self) -> None:
        route = self.routes.current
        route.apply(self._client)
        props = Properties(mqtt.PacketTypes.CONNECT)
        props.SessionExpiryInterval = 0
        self._client.connect_async(route.host, route.port, keepalive=self.cfg.keepalive_s, clean_start=True,
                                   properties=props)
        self._client.loop_start()

    def _back_to_direct(self) -> None:
        """While on the WebSockets fallback: check the direct port; when it answers, reconnect there
        (a clean DISCONNECT first, so the broker publishes no last will)."""
        if not probe_direct(self.routes.direct, tls_context(self.cfg)):
            self.routes.checked_direct()
            return
        with self._conn_lock:
            if self._stop.is_set():
                return
            self.routes.use_direct()
            self._client.disconnect()
            self._client.loop_stop()
            self._connect_async()

    def stop(self, state: str = "shutdown", reason: str | None = "agent stopped") -> None:
        """Publish a final retained status (``shutdown`` by default), disconnect cleanly, stop threads.

        A clean DISCONNECT means the broker does not publish the last will, so the final status is
        what the fleet sees.
        """
        self._stop.set()
        self._wake.set()
        with self._conn_lock:  # not during a route switch (which looks at _stop under this lock)
            if self.connected.is_set():
                info = self._client.publish(self._status_topic, self._status(state, reason), qos=1, retain=True)
                try:
                    info.wait_for_publish(timeout=3)
                except (RuntimeError, ValueError):
                    pass
            self._client.disconnect()
            self._client.loop_stop()
        if self._sender.is_alive():
            self._sender.join(timeout=5)

    def wake(self) -> None:
        """Tell the sender that the outbox has new messages."""
        self._wake.set()

    # ---- callbacks (paho network thread) ----------------------------------------------
    def _status(self, state: str, reason: str | None = None) -> bytes:
        return payloads.encode(payloads.Status(device_id=self.cfg.device_id, ts=now_ms(), state=state, reason=reason))

    def announce(self) -> None:
        """Publish the retained status (:attr:`presence`) and ``meta`` (on connect and on server birth)."""
        self._client.publish(self._status_topic, self._status(*self.presence), qos=1, retain=True)
        try:
            meta = payloads.encode(self._meta())
        except Exception:  # a collector bug must not keep the device offline
            log.exception("could not build meta; sending status only")
            return
        self._client.publish(device_topic(self.cfg.device_id, Channel.META), meta, qos=1, retain=True)

    def set_presence(self, state: str, reason: str | None = None) -> None:
        """Change the announced status (``online`` / ``paused``) and publish it now when connected."""
        self.presence = (state, reason)
        if self.connected.is_set():
            self._client.publish(self._status_topic, self._status(state, reason), qos=1, retain=True)

    def snooze_alerts(self, until_ms: int) -> bool:
        """Ask the server for no alert notifications about this device until ``until_ms`` (QoS 1 on the
        device's own ``snooze`` topic). Returns False when not connected (nothing is sent)."""
        if not self.connected.is_set():
            return False
        req = payloads.SnoozeRequest(device_id=self.cfg.device_id, ts=now_ms(), until_ms=until_ms,
                                     reason="from the tray")
        self._client.publish(device_topic(self.cfg.device_id, Channel.SNOOZE), payloads.encode(req), qos=1)
        return True

    def _handle_connect(self, client: mqtt.Client, _userdata: object, _flags: object,
                        reason: ReasonCode, _props: Properties | None) -> None:
        if reason.is_failure:
            self.last_error = f"broker refused the connection: {reason}"
            self.last_refusal = reason
            log.error("%s (check the device's API key; a revoked device cannot connect)", self.last_error)
            self._schedule_retry()
            return
        self._attempt = 0
        self.last_error = None
        self.last_refusal = None
        self._fail_logged = None
        self.routes.connected()
        log.info("connected to %s", self.routes.current.url)
        _rc, mid = client.subscribe([(device_topic(self.cfg.device_id, Channel.CMD), 1), (SERVER_STATUS_TOPIC, 1),
                                     (self.sender.receipt_topic, 1)])  # the receipt topic last (see OutboxSender)
        self.sender.on_connect(mid)
        self.announce()
        self.connected.set()
        self._wake.set()
        if self._on_connection:
            self._on_connection(True)

    def _handle_connect_fail(self, client: mqtt.Client, _userdata: object) -> None:
        # paho passes no exception to on_connect_fail; _Client keeps the one reconnect() raised
        route = self.routes.current
        level, self.last_error = describe_connect_error(getattr(client, "last_connect_error", None), route.host,
                                                        tls=route.tls)
        self.routes.failed(self.last_error)
        now = time.monotonic()
        if self._fail_logged is None or self._fail_logged[0] != self.last_error:
            log.log(level, "%s; retrying with backoff", self.last_error)
            self._fail_logged = (self.last_error, now)
        elif now - self._fail_logged[1] >= FAIL_REPEAT_LOG_S:
            log.log(level, "still failing: %s", self.last_error)
            self._fail_logged = (self.last_error, now)
        self._schedule_retry()

    def _handle_disconnect(self, _client: mqtt.Client, _userdata: object, _flags: object,
                           reason: ReasonCode, _props: Properties | None) -> None:
        was = self.connected.is_set()
        self.connected.clear()
        self.routes.disconnected()
        if self._stop.is_set():
            return
        if was:
            self.last_error = f"disconnected: {reason}"
            log.warning("%s; reconnecting", self.last_error)
            if self._on_connection:
                self._on_connection(False)
        self._schedule_retry()

    def _schedule_retry(self) -> None:
        delay = jittered_backoff(self._attempt)
        self._attempt += 1
        # paho waits min(previous * 2, max) seconds; with min == max it waits exactly `delay`.
        self._client.reconnect_delay_set(delay, delay)
        log.debug("next connection attempt in %.1f s", delay)

    def _handle_publish(self, _client: mqtt.Client, _userdata: object, mid: int,
                        reason: ReasonCode, _props: Properties | None) -> None:
        if reason.is_failure:
            log.warning("broker refused message %d: %s", mid, reason)
        self._wake.set()

    def _handle_message(self, _client: mqtt.Client, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == SERVER_STATUS_TOPIC:
            try:
                status = payloads.parse_server_status(msg.payload)
            except ValueError:
                return
            self.sender.on_server_status(status)
            # msg.retain: the stored birth delivered on subscribe, which our connect already answered
            if status.state == "online" and not msg.retain:
                log.info("fleet server is online: republishing status and meta")
                self.announce()
            return
        if msg.topic == self.sender.receipt_topic:
            self.sender.on_receipt(msg.payload)
            return
        try:
            cmd = payloads.parse_command(msg.payload)
        except ValueError as exc:
            log.warning("ignored an invalid command: %s", exc)
            return
        if self._on_command:
            self._on_command(cmd)

    # ---- sender thread ----------------------------------------------------------------
    def _send_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(timeout=SENDER_IDLE_S)
            self._wake.clear()
            try:
                self._drain()
            except Exception:
                log.exception("outbox sender failed; retrying")
                time.sleep(1)
            if self.routes.direct_due() and not self._stop.is_set():
                self.routes.checked_direct()  # one check at a time
                threading.Thread(target=self._back_to_direct, name="clawfleet-direct-check", daemon=True).start()

    def _drain(self) -> None:
        self.sender.drain(self.connected.is_set())

    @property
    def last_publish_ms(self) -> int | None:
        """Epoch ms of the last PUBACK of an outbox message (None before the first)."""
        return self.sender.last_publish_ms


def network_loop_timeout(keepalive_s: float) -> float:
    """How long paho's network thread may sleep in ``select`` when nothing arrives, seconds.

    paho checks the keepalive (sends PINGREQ) only when its loop wakes, so a ping can go out this
    much after the keepalive; the broker drops a client after 1.5 x keepalive of silence. A sixth of
    the keepalive (at most 5 s) keeps every ping well inside that, while an idle agent wakes 5 times
    less often than with paho's default of 1 s. Outgoing messages wake the loop at once anyway.
    """
    return max(0.5, min(5.0, keepalive_s / 6))


class _Client(mqtt.Client):
    """paho's client, remembering why the last connection attempt failed in ``last_connect_error``
    (paho calls ``on_connect_fail(client, userdata)`` without the exception), and running its
    network thread with :attr:`loop_timeout_s` instead of paho's fixed 1 s."""

    last_connect_error: OSError | None = None
    loop_timeout_s: float = 1.0
    routes: RoutePicker | None = None

    def _thread_main(self) -> None:
        # paho 2.x's loop_start() target (paho-mqtt is pinned < 3): the same call, with our timeout
        try:
            self.loop_forever(timeout=self.loop_timeout_s, retry_first_connection=True)
        finally:
            self._thread = None

    def reconnect(self) -> mqtt.MQTTErrorCode:
        if self.routes is not None:  # the route may have changed since the last attempt
            self.routes.current.apply(self)
        try:
            rc = super().reconnect()
        except OSError as exc:  # ssl.SSLError, ConnectionRefusedError, socket.gaierror, TimeoutError, ...
            self.last_connect_error = exc
            raise
        self.last_connect_error = None
        return rc


def describe_connect_error(exc: BaseException | None, host: str, tls: bool = False) -> tuple[int, str]:
    """``(log level, one-line message)`` for a failed connection attempt to the broker at ``host``
    (``tls``: over ``mqtts``).

    A certificate the agent does not trust (another CA, an expired certificate, or one that does
    not name ``host``) and other TLS handshake failures are errors that retrying will not fix;
    an unreachable broker is a warning (it may come back).
    """
    if isinstance(exc, ssl.SSLCertVerificationError):
        why = exc.verify_message or str(exc)
        if exc.verify_code == X509_V_ERR_HOSTNAME_MISMATCH:
            return logging.ERROR, (f"broker certificate not trusted: {why} — the server's certificate must name "
                                   f"{host} (on the server: clawfleet-server tls init --keep-ca --host {host} …), or "
                                   "re-enroll with a token from this server")
        return logging.ERROR, f"broker certificate not trusted: {why} — re-enroll with a token from this server"
    if isinstance(exc, ssl.SSLError):
        return logging.ERROR, (f"TLS handshake with the broker failed: {exc.reason or exc} — check that the token's "
                               "port is the server's TLS port (mqtts://…:8883) or re-enroll with a token from this "
                               "server")
    if tls and isinstance(exc, ConnectionResetError):  # what Mosquitto does to a TLS hello on a plain port
        return logging.WARNING, ("broker closed the connection during the TLS handshake — is the token's port the "
                                 "server's TLS port (mqtts://…:8883)?")
    if isinstance(exc, socket.gaierror):
        return logging.WARNING, f"broker unreachable: cannot resolve {host} ({exc.strerror or exc})"
    if exc is not None:
        return logging.WARNING, f"broker unreachable: {getattr(exc, 'strerror', None) or exc}"
    return logging.WARNING, "broker unreachable"
