"""Device actions as one step each, for the dashboard and the CLI.

Each action combines :mod:`fleet_server.devices.registry` (database + broker credentials) with what
follows from it: the audit row, the broker's retained topics, the in-memory
:class:`~fleet_server.state.FleetState` and ingest's device cache. In the server process all of
them are present; the CLI has no cache and no ingest (the running server's registry sync,
:func:`fleet_server.state.registry.sync_registry`, picks its changes up within seconds).

API keys and enrollment tokens are returned to the caller once; they never reach a log line or
an audit row.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import paho.mqtt.client as mqtt

from broker.dynsec import DynSecClient, DynSecConnectionError, DynSecError
from fleet_server.devices import registry as devices
from fleet_server.devices.registry import NewDevice
from fleet_server.endpoints.broker_link import AgentEndpoint
from fleet_server.state import FleetState
from fleet_server.store import audit
from fleet_server.store.models import Device, db
from shared.mqtt_client import mqtt5_client
from shared.topics import RETAINED_CHANNELS, device_topic

log = logging.getLogger("clawfleet.devices")

PUBLISH_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class DeleteResult:
    """Outcome of :meth:`DeviceActions.delete`.

    ``broker_client`` — the broker had a client for the device (now deleted);
    ``retained_cleared`` — its retained status/meta/telemetry/receipt were cleared on the broker;
    ``data_kept`` — its history stayed in the database.
    """

    broker_client: bool
    retained_cleared: bool
    data_kept: bool


@dataclass(frozen=True)
class RevokeResult:
    """Outcome of :meth:`DeviceActions.revoke`.

    ``revoked_ms`` — when the device was revoked in the database (epoch ms; always done, with its
    audit row); ``broker_error`` — None when the broker confirmed it disabled the client (a live
    session is closed), else why not (the broker may still apply the command once it answers,
    and the server's start-up reconciliation disables the client otherwise);
    ``retained_cleared`` — its retained status/meta/telemetry/receipt were cleared on the broker.
    """

    revoked_ms: int
    broker_error: str | None
    retained_cleared: bool

    @property
    def broker_confirmed(self) -> bool:
        """True when the broker disabled the client."""
        return self.broker_error is None


class ForgetsDevices(Protocol):
    """What the actions need of ingest: drop a device from its known-device cache."""

    def forget_device(self, device_id: str) -> None: ...


class DeviceActions:
    """Add, rename, rotate, revoke and delete devices, with audit and cache upkeep.

    Args:
        dynsec: admin connection to the broker's dynamic-security plugin (None: only
            :meth:`rename` works, the others raise :class:`RuntimeError`).
        target: returns the broker URL and CA for new tokens
            (:class:`fleet_server.endpoints.broker_link.AgentEndpoint`; asked for every token).
        state: the server's latest-state cache, or None (CLI).
        ingest: the server's ingest (anything with ``forget_device(id)``), or None (CLI).
        publisher: a connected paho client of the server account, used to clear a device's
            retained topics (ingest's own session in the server); None: they are not cleared.
        broker_down: why ``dynsec`` is None when a broker connection was attempted and failed (the
            CLI with a frozen or stopped broker): :meth:`revoke` then still stores the revocation and
            reports this as the broker's error.

    Every method takes ``actor`` (a username, or :func:`fleet_server.store.audit.cli_actor`) for the
    audit row and raises :class:`fleet_server.devices.registry.DeviceError` for a bad request (unknown
    device, empty name, duplicate id) and ``DynSecError`` / ``DynSecConnectionError`` when the
    broker refuses or does not answer. Methods block (broker round trips, up to seconds): call
    them from a worker thread in async code.
    """

    def __init__(self, dynsec: DynSecClient | None, target: Callable[[], AgentEndpoint | None],
                 state: FleetState | None = None,
                 ingest: ForgetsDevices | None = None, publisher: mqtt.Client | None = None,
                 broker_down: str | None = None) -> None:
        self.dynsec = dynsec
        self.broker_down = broker_down
        self.target = target
        self.state = state
        self.ingest = ingest
        self.publisher = publisher

    @property
    def _dynsec(self) -> DynSecClient:
        if self.dynsec is None:
            raise RuntimeError("this device action needs a broker connection")
        return self.dynsec

    def _target(self) -> AgentEndpoint:
        target = self.target()
        if target is None:
            raise RuntimeError("no broker URL for enrollment tokens")
        return target

    @contextlib.contextmanager
    def _registry(self) -> Iterator[None]:
        if self.state is None:
            yield
        else:
            with self.state.registry_lock:
                yield

    def _cache(self, device_id: str) -> None:
        """Copy the device's row into the cache (registry and status fields) and make ingest re-read it."""
        if self.ingest is not None:
            self.ingest.forget_device(device_id)
        if self.state is None:
            return
        dev = Device.get_or_none(Device.id == device_id)
        if dev is None:
            self.state.remove(device_id)
            return
        self.state.upsert(device_id, name=dev.name, tags=dev.tags, key_hint=dev.key_hint, created_ms=dev.created_ms,
                          revoked_ms=dev.revoked_ms, status=dev.status, status_reason=dev.status_reason,
                          status_ms=dev.status_ms)

    def add(self, actor: str, name: str, tags: str = "", device_id: str | None = None) -> NewDevice:
        """Enroll a device; returns its row, API key and enrollment token (show once). Audited ``device.add``."""
        t = self._target()
        with self._registry():
            new = devices.add_device(self._dynsec, name, t.url, device_id=device_id, tags=tags, ca_pem=t.ca_pem,
                                     token_extra=t.token_extra())
            self._cache(new.device.id)
        d = new.device
        audit.record(actor, "device.add", target=d.id, detail=f"name {d.name!r}" + (f", tags {d.tags}" if d.tags
                                                                                        else ""))
        return new

    def rename(self, actor: str, device_id: str, name: str, tags: str | None = None) -> Device:
        """Change name (and tags, when not None); returns the row. Audited ``device.rename``."""
        with self._registry():
            old = devices.get_device(device_id)
            dev = devices.rename_device(device_id, name, tags)
            self._cache(device_id)
        changes = []
        if dev.name != old.name:
            changes.append(f"name {old.name!r} -> {dev.name!r}")
        if dev.tags != old.tags:
            changes.append(f"tags {old.tags!r} -> {dev.tags!r}")
        audit.record(actor, "device.rename", target=device_id, detail="; ".join(changes) or "no change")
        return dev

    def rotate_key(self, actor: str, device_id: str) -> NewDevice:
        """New API key (the old one and its live session stop at once); returns the new token (show
        once). Re-enables a revoked device. Audited ``device.rotate_key``."""
        t = self._target()
        with self._registry():
            was_revoked = devices.get_device(device_id).revoked_ms is not None
            new = devices.rotate_key(self._dynsec, device_id, t.url, t.ca_pem, token_extra=t.token_extra())
            self._cache(device_id)
        audit.record(actor, "device.rotate_key", target=device_id,
                     detail=f"new key …{new.device.key_hint}" + ("; re-enabled after revocation" if was_revoked
                                                                else ""))
        return new

    def revoke(self, actor: str, device_id: str) -> RevokeResult:
        """Revoke the key: the device is revoked in the database together with its ``device.revoke``
        audit row (one transaction), shown offline with reason "revoked"; then the broker disables
        the client (the live session is kicked with 0x98, logins are refused with 0x87) and its
        retained status/meta/telemetry/receipt are cleared (so ingest does not replay them as rejects).

        A broker that does not answer (or, with ``broker_down``, could not be reached at all) does
        not undo the revocation: the result says so, and the audit row's detail records it; a
        running server disables the client once the broker answers (its registry sync), else its
        next start does.

        Raises:
            DeviceError: no such device.
            RuntimeError: these actions have no broker connection and no ``broker_down`` reason
                (nothing is changed).
        """
        dynsec = self.dynsec if self.broker_down is not None else self._dynsec  # refuse before any change
        with self._registry():
            with db.atomic():
                ts = devices.mark_revoked(device_id)
                event = audit.record(actor, "device.revoke", target=device_id, detail="key revoked", strict=True)
            self._cache(device_id)
            try:
                if dynsec is None:
                    raise DynSecConnectionError(self.broker_down or "no broker connection")
                devices.disable_on_broker(dynsec, device_id)
                broker_error = None
            except (DynSecConnectionError, DynSecError) as exc:
                broker_error = str(exc)
                log.warning("device %s is revoked in the database, but the broker did not confirm: %s", device_id,
                            exc)
        cleared = self.clear_retained(device_id) if broker_error is None else False
        if broker_error is None:
            detail = "key revoked, session closed" + ("" if cleared else "; retained topics not cleared")
        else:
            detail = f"key revoked; the broker did not confirm ({broker_error}); retained topics not cleared"
        if event is not None:
            audit.amend(event, detail)
        log.info("device %s revoked", device_id)
        return RevokeResult(revoked_ms=ts, broker_error=broker_error, retained_cleared=cleared)

    def delete(self, actor: str, device_id: str, keep_data: bool = False) -> DeleteResult:
        """Delete: broker client removed (live session kicked), retained topics cleared, history
        purged unless ``keep_data``, gone from the cache. Audited ``device.delete``."""
        with self._registry():
            name = devices.get_device(device_id).name
            existed = devices.delete_device(self._dynsec, device_id, keep_data=keep_data)
            if self.ingest is not None:
                self.ingest.forget_device(device_id)
            if self.state is not None:
                self.state.remove(device_id, drop_usage=not keep_data)
        cleared = self.clear_retained(device_id)
        audit.record(actor, "device.delete", target=device_id,
                     detail=f"name {name!r}; " + ("data kept" if keep_data else "data purged")
                     + ("" if cleared else "; retained topics not cleared"))
        return DeleteResult(broker_client=existed, retained_cleared=cleared, data_kept=keep_data)

    def clear_retained(self, device_id: str) -> bool:
        """Publish empty retained payloads (QoS 1) on the device's status, meta, telemetry and receipt topics,
        which deletes them on the broker. True when all three were acknowledged within
        :data:`PUBLISH_TIMEOUT_S` seconds; False (and a warning) without a connected publisher."""
        if self.publisher is None or not self.publisher.is_connected():
            log.warning("could not clear the retained topics of %s: no broker session", device_id)
            return False
        infos = [self.publisher.publish(device_topic(device_id, ch), b"", qos=1, retain=True)
                 for ch in RETAINED_CHANNELS]
        try:
            for info in infos:
                info.wait_for_publish(PUBLISH_TIMEOUT_S)
        except (RuntimeError, ValueError) as exc:
            log.warning("could not clear the retained topics of %s: %s", device_id, exc)
            return False
        if not all(info.is_published() for info in infos):
            log.warning("could not clear the retained topics of %s: no PUBACK within %.0f s", device_id,
                        PUBLISH_TIMEOUT_S)
            return False
        return True


@contextlib.contextmanager
def server_session(host: str, port: int, username: str, password: str, tls: ssl.SSLContext | None = None,
                   timeout: float = 5.0) -> Iterator[mqtt.Client | None]:
    """A short-lived MQTT 5 session as the server account (for the CLI to clear retained topics).

    Yields the connected paho client, or None (with a warning) when the broker cannot be
    reached or refuses within ``timeout`` seconds. Disconnects on exit.
    """
    client = mqtt5_client(f"clawfleet-cli-{uuid.uuid4().hex[:8]}", username, password, tls)
    try:
        client.connect(host, port, keepalive=30)
    except OSError as exc:
        log.warning("cannot reach the broker at %s:%d to clear retained topics: %s", host, port, exc)
        yield None
        return
    client.loop_start()
    try:
        deadline = time.monotonic() + timeout
        while not client.is_connected() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not client.is_connected():
            log.warning("the broker at %s:%d did not accept the server account within %.0f s", host, port, timeout)
        yield client if client.is_connected() else None
    finally:
        client.disconnect()
        client.loop_stop()
