"""Ingest: MQTT 5 subscriber → validate (``shared.schemas``) → batch writer → database + cache.

- Persistent session (clean start off, session expiry 7 days) and QoS 1, so the broker queues
  for the server while it restarts.
- Manual acknowledgement: a PUBACK is sent only after the message's batch is committed, so a
  crash between receipt and commit loses nothing (the broker redelivers).
- Inserts are idempotent: samples on ``(device, ts)``, usage and log records on their ``id``.
- A bad message never stops ingest: it is rejected, counted per device and reason, and acked.
- Server birth: retained ``online`` on ``clawfleet/v1/_server/status``; last will ``offline``.
"""

from __future__ import annotations

import logging
import queue
import socket
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions
from peewee import Database

from fleet_server.state import DeviceView, FleetState, LatestError, meta_json, now_ms, telemetry_row
from fleet_server.store.logs import is_hint
from fleet_server.store.models import Device, LogRecord, RejectCount, Sample, StatusEvent
from fleet_server.store.usage import insert_usage
from shared import schemas
from shared.topics import ALL_DEVICES_FILTER, SERVER_STATUS_TOPIC, Channel, TopicError, parse_device_topic

log = logging.getLogger("clawfleet.ingest")

SESSION_EXPIRY_S = 7 * 24 * 3600
BATCH_MAX = 1000
BATCH_WAIT_S = 0.2
_NO_VIEW = DeviceView(device_id="", name="")


@dataclass(frozen=True)
class _Accepted:
    mid: int
    qos: int
    device_id: str
    channel: Channel
    payload: schemas.BaseModel


@dataclass(frozen=True)
class _Rejected:
    mid: int
    qos: int
    device_id: str
    reason: str
    error: str


@dataclass(frozen=True)
class BrokerAccount:
    """How the server reaches the broker: host, port, credentials, optional TLS context."""

    host: str
    port: int
    username: str
    password: str
    tls: ssl.SSLContext | None = None


class Ingest:
    """Subscribes to every device topic and writes what it receives.

    Args:
        database: the open peewee database (models already bound).
        account: broker connection details (the server's own dynsec account).
        state: the latest-state cache to update after each commit.
        client_id: MQTT client id; keep it stable so the persistent session is resumed.
        shared_group: when set, subscribe as ``$share/<group>/…`` (several ingest workers).
    """

    def __init__(self, database: Database, account: BrokerAccount, state: FleetState,
                 client_id: str = "clawfleet-ingest", shared_group: str | None = None) -> None:
        self.database = database
        self.account = account
        self.state = state
        self.counters: Counter[str] = Counter()
        self.batch_seconds = 0.0
        """Seconds spent storing batches (commit and ack), summed; ``counters["batches"]`` counts them."""
        self.connected = threading.Event()
        self._queue: queue.Queue[_Accepted | _Rejected] = queue.Queue()
        self._stop = threading.Event()
        self._known: dict[str, bool] = {}  # device id -> revoked?
        self._pending_usage: dict = {}
        self._filter = f"$share/{shared_group}/{ALL_DEVICES_FILTER}" if shared_group else ALL_DEVICES_FILTER
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5,
                                   manual_ack=True)
        self._client.username_pw_set(account.username, account.password)
        if account.tls is not None:
            self._client.tls_set_context(account.tls)
        self._client.will_set(SERVER_STATUS_TOPIC, self._server_status("offline"), qos=1, retain=True)
        self._client.reconnect_delay_set(1, 30)
        self._client.on_socket_open = _no_delay
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._writer = threading.Thread(target=self._write_loop, name="clawfleet-ingest-writer", daemon=True)

    @property
    def client(self) -> mqtt.Client:
        """The paho client (the server also publishes commands with it)."""
        return self._client

    @staticmethod
    def _server_status(state: str) -> bytes:
        return schemas.ServerStatus(ts=now_ms(), state=state).model_dump_json().encode()

    def start(self) -> None:
        """Connect (retrying in the background) and start the writer thread."""
        props = Properties(mqtt.PacketTypes.CONNECT)
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        self._client.connect_async(self.account.host, self.account.port, keepalive=30, clean_start=False,
                                   properties=props)
        self._client.loop_start()
        self._writer.start()

    def stop(self) -> None:
        """Flush what was received, publish the server's ``offline`` status, disconnect."""
        self._stop.set()
        self._writer.join(timeout=10)
        if self.connected.is_set():
            info = self._client.publish(SERVER_STATUS_TOPIC, self._server_status("offline"), qos=1, retain=True)
            try:
                info.wait_for_publish(timeout=2)
            except (RuntimeError, ValueError):
                pass
        self._client.disconnect()
        self._client.loop_stop()

    # ---- paho callbacks (network thread): validate only, never touch the database -------
    def _on_connect(self, client: mqtt.Client, _u: object, flags: mqtt.ConnectFlags, reason: ReasonCode,
                    _p: Properties | None) -> None:
        if reason.is_failure:
            log.error("broker refused the server's connection: %s", reason)
            return
        log.info("ingest connected (session %s)", "resumed" if flags.session_present else "new")
        client.subscribe(self._filter, options=SubscribeOptions(qos=1, noLocal=True))
        client.publish(SERVER_STATUS_TOPIC, self._server_status("online"), qos=1, retain=True)
        self.connected.set()

    def _on_disconnect(self, _c: mqtt.Client, _u: object, _f: object, reason: ReasonCode,
                       _p: Properties | None) -> None:
        self.connected.clear()
        if not self._stop.is_set():
            log.warning("ingest lost the broker connection (%s); reconnecting", reason)

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        self.counters["received"] += 1
        if msg.topic == SERVER_STATUS_TOPIC:  # our own birth/will, retained from an earlier run
            self._queue.put(_Rejected(msg.mid, msg.qos, "", "", ""))
            return
        try:
            device_id, channel = parse_device_topic(msg.topic)
        except (TopicError, UnicodeDecodeError) as exc:
            self._queue.put(_Rejected(msg.mid, msg.qos, "", "bad_topic", str(exc)))
            return
        if channel is Channel.CMD or not msg.payload:  # our own commands / cleared retained topics
            self._queue.put(_Rejected(msg.mid, msg.qos, "", "", ""))
            return
        try:
            payload = schemas.decode(channel, msg.payload, expected_device_id=device_id)
        except schemas.PayloadError as exc:
            self._queue.put(_Rejected(msg.mid, msg.qos, device_id, exc.reason, str(exc)))
            return
        self._queue.put(_Accepted(msg.mid, msg.qos, device_id, channel, payload))

    # ---- writer thread -------------------------------------------------------------------
    def _write_loop(self) -> None:
        with self.database.connection_context():
            while True:
                batch = self._next_batch()
                if batch:
                    self._commit_with_retry(batch)
                elif self._stop.is_set():
                    return

    def _next_batch(self) -> list[_Accepted | _Rejected]:
        try:
            batch = [self._queue.get(timeout=BATCH_WAIT_S)]
        except queue.Empty:
            return []
        while len(batch) < BATCH_MAX:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _commit_with_retry(self, batch: list[_Accepted | _Rejected]) -> None:
        delay, started = 0.5, time.monotonic()
        while True:
            try:
                with self.database.atomic():
                    updates = self._write(batch)
                break
            except Exception:  # database down or locked: keep the batch, do not ack, retry
                log.exception("could not store a batch of %d messages; retrying in %.1f s", len(batch), delay)
                time.sleep(delay)
                delay = min(delay * 2, 30)
        for item in batch:
            if item.qos > 0:
                self._client.ack(item.mid, item.qos)
        for device_id, changes in updates.items():
            self.state.upsert(device_id, **changes)
        self.state.add_usage(self._pending_usage)
        self._pending_usage = {}
        self.counters["batches"] += 1
        self.batch_seconds += time.monotonic() - started  # /metrics: batch latency (sum; count = batches)

    def _known_device(self, device_id: str) -> bool | None:
        """True: enrolled; False: revoked; None: unknown. Re-reads the table on a miss (CLI adds)."""
        if device_id not in self._known:
            dev = Device.get_or_none(Device.id == device_id)
            if dev is None:
                return None
            self._known[device_id] = dev.revoked_ms is None
            if self.state.get(device_id) is None:  # enrolled after the cache was loaded (e.g. by the CLI)
                self.state.upsert(device_id, name=dev.name, status="revoked" if dev.revoked_ms else dev.status)
        return self._known[device_id]

    def forget_device(self, device_id: str) -> None:
        """Drop a device from the known-device cache (after revoke, rotate or delete)."""
        self._known.pop(device_id, None)

    def _write(self, batch: list[_Accepted | _Rejected]) -> dict[str, dict]:
        updates: dict[str, dict] = {}
        samples: list[dict] = []
        usage: list[dict] = []
        logs: list[dict] = []
        for item in batch:
            if isinstance(item, _Rejected):
                if item.reason:
                    self._reject(item.device_id, item.reason, item.error)
                continue
            known = self._known_device(item.device_id)
            if not known:
                self._reject(item.device_id if known is False else "", "revoked_device" if known is False
                             else "unknown_device", f"device {item.device_id!r} is not enrolled or is revoked")
                continue
            p, upd = item.payload, updates.setdefault(item.device_id, {})
            if isinstance(p, schemas.Telemetry):
                samples.append(telemetry_row(p))
                cur = self.state.get(item.device_id)
                if cur is None or cur.telemetry is None or p.ts >= cur.telemetry.ts:
                    upd["telemetry"] = p
                upd["last_seen_ms"] = max(p.ts, upd.get("last_seen_ms") or 0)
            elif isinstance(p, schemas.Status):
                self._status(p, upd)
            elif isinstance(p, schemas.Meta):
                Device.update(meta_json=meta_json(p)).where(Device.id == p.device_id).execute()
                upd["meta"] = p
            elif isinstance(p, schemas.UsageBatch):
                usage += [{"device": p.device_id, **r.model_dump()} for r in p.records]
            elif isinstance(p, schemas.LogBatch):
                logs += [{"device": p.device_id, **r.model_dump()} for r in p.records]
            self.counters[f"stored_{item.channel.value}"] += 1
        for chunk in _chunks(samples):
            Sample.insert_many(chunk).on_conflict_ignore().execute()
        self._pending_usage = insert_usage(usage) if usage else {}
        for chunk in _chunks(logs):
            LogRecord.insert_many(chunk).on_conflict_ignore().execute()
        for row in logs:
            if row["level"] in ("error", "fatal") and not is_hint(row["message"]):  # the reason, not a hint
                upd = updates[row["device"]]
                cur = upd.get("latest_error") or (self.state.get(row["device"]) or _NO_VIEW).latest_error
                if cur is None or row["ts"] >= cur.ts:
                    upd["latest_error"] = LatestError(row["ts"], row["level"], row["subsystem"], row["message"])
        for device_id, upd in updates.items():
            if "last_seen_ms" in upd:
                Device.update(last_seen_ms=upd["last_seen_ms"]).where(
                    (Device.id == device_id) & ((Device.last_seen_ms.is_null()) |
                                                (Device.last_seen_ms < upd["last_seen_ms"]))).execute()
        return {k: v for k, v in updates.items() if v}

    def _status(self, p: schemas.Status, upd: dict) -> None:
        if p.state == "offline" and p.reason == "last-will":
            # the will was composed when the agent connected; the broker sends it when the device is lost
            p = p.model_copy(update={"ts": max(p.ts, now_ms())})
        dev = Device.get_or_none(Device.id == p.device_id)
        if dev is None or (dev.status_ms is not None and p.ts < dev.status_ms):
            return  # older than what we know (e.g. a retained message replayed)
        if dev.status_ms == p.ts and dev.status == p.state:
            return
        if dev.status != p.state:  # events are transitions; a repeated state only refreshes the timestamp
            StatusEvent.create(device=p.device_id, ts=p.ts, state=p.state, reason=p.reason)
            log.info("device %s is %s%s", p.device_id, p.state, f" ({p.reason})" if p.reason else "")
        Device.update(status=p.state, status_reason=p.reason, status_ms=p.ts).where(Device.id == p.device_id).execute()
        upd.update(status=p.state, status_reason=p.reason, status_ms=p.ts)

    def _reject(self, device_id: str, reason: str, error: str) -> None:
        self.counters[f"rejected_{reason}"] += 1
        log.warning("rejected a message from %s: %s: %s", device_id or "(unknown)", reason, error[:300])
        ts = now_ms()
        RejectCount.insert(device=device_id, reason=reason, count=1, last_ms=ts, last_error=error[:500]).on_conflict(
            conflict_target=[RejectCount.device, RejectCount.reason],
            update={RejectCount.count: RejectCount.count + 1, RejectCount.last_ms: ts,
                    RejectCount.last_error: error[:500]},
        ).execute()
        if device_id and self._known_device(device_id) is not None:
            self.state.count_reject(device_id, reason)


def _chunks(rows: list[dict], size: int = 200) -> list[list[dict]]:
    return [rows[i:i + size] for i in range(0, len(rows), size)]


def _no_delay(_client: mqtt.Client, _userdata: object, sock: object) -> None:
    """Send small MQTT packets at once (Nagle + delayed ACK add ~40 ms per QoS 1 round trip)."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # type: ignore[attr-defined]
    except (OSError, AttributeError):  # not a TCP socket (e.g. a unix socket or websocket)
        pass
