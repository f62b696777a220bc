"""Device lifecycle: add, list, delete. The database is the source of truth; the broker's
dynamic-security clients follow it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from broker.dynsec import DynSecClient
from fleet_server.keys import generate_api_key, hash_api_key, key_hint
from fleet_server.state import now_ms
from fleet_server.store.models import Device, LogRecord, RejectCount, Sample, StatusEvent, UsageRecord, db
from shared.enrollment import Enrollment, encode_token
from shared.topics import check_device_id, suggest_device_id

log = logging.getLogger("clawfleet.devices")


class DeviceError(ValueError):
    """A device operation that cannot be done (duplicate id, unknown device, …)."""


@dataclass(frozen=True)
class NewDevice:
    """Result of :func:`add_device`. ``api_key`` and ``token`` are shown once and never stored."""

    device: Device
    api_key: str
    token: str


def add_device(dynsec: DynSecClient, name: str, broker_url: str, *, device_id: str | None = None,
               tags: str = "", ca_pem: str | None = None) -> NewDevice:
    """Enroll a device: database row (key hash only) + broker client and role.

    Args:
        dynsec: admin connection to the broker's dynamic-security plugin.
        name: display name; the device id is derived from it unless ``device_id`` is given.
        broker_url: the URL agents use (goes into the enrollment token).
        tags: comma-separated free-form tags.
        ca_pem: CA certificate the agent will pin (for ``mqtts://``).

    Raises:
        DeviceError: the id is invalid or already enrolled.
    """
    try:
        did = check_device_id(device_id) if device_id else suggest_device_id(name)
    except ValueError as exc:
        raise DeviceError(str(exc)) from None
    if Device.get_or_none(Device.id == did) is not None:
        raise DeviceError(f"device {did!r} already exists; pick another name or pass --id")
    key = generate_api_key()
    with db.atomic():
        device = Device.create(id=did, name=name, tags=tags, key_hash=hash_api_key(key), key_hint=key_hint(key),
                               created_ms=now_ms())
        dynsec.create_device(did, key)  # inside the transaction: a broker failure leaves no row behind
    log.info("device %s added (key …%s)", did, key_hint(key))
    token = encode_token(Enrollment(url=broker_url, device_id=did, api_key=key, ca_pem=ca_pem))
    return NewDevice(device=device, api_key=key, token=token)


def _get(device_id: str) -> Device:
    dev = Device.get_or_none(Device.id == device_id)
    if dev is None:
        raise DeviceError(f"no device {device_id!r}; see 'clawfleet-server device list'")
    return dev


def rotate_key(dynsec: DynSecClient, device_id: str, broker_url: str, ca_pem: str | None = None) -> NewDevice:
    """Give a device a new API key. The broker kicks the live session at once and refuses the old
    key from then on; the agent needs the new enrollment token (returned, shown once).

    A revoked device is re-enabled by a rotation (it gets a fresh key).

    Raises:
        DeviceError: no such device.
    """
    dev = _get(device_id)
    key = generate_api_key()
    with db.atomic():
        Device.update(key_hash=hash_api_key(key), key_hint=key_hint(key), revoked_ms=None).where(
            Device.id == device_id).execute()
        if dev.revoked_ms:
            dynsec.create_device(device_id, key)  # re-creates the client and role, enabled
        else:
            dynsec.set_device_password(device_id, key)
    log.info("device %s: key rotated (now …%s)", device_id, key_hint(key))
    token = encode_token(Enrollment(url=broker_url, device_id=device_id, api_key=key, ca_pem=ca_pem))
    return NewDevice(device=_get(device_id), api_key=key, token=token)


def revoke_device(dynsec: DynSecClient, device_id: str) -> int:
    """Revoke a device's key: the broker disables the client (kicking a live session with reason
    0x98 within milliseconds) and the device is recorded offline with reason "revoked" (a kick
    does not publish the last will). Returns the revocation time, epoch ms.

    Raises:
        DeviceError: no such device.
    """
    _get(device_id)
    ts = now_ms()
    dynsec.disable_device(device_id)
    with db.atomic():
        Device.update(revoked_ms=ts, status="offline", status_reason="revoked", status_ms=ts).where(
            Device.id == device_id).execute()
        StatusEvent.create(device=device_id, ts=ts, state="offline", reason="revoked")
    log.info("device %s revoked", device_id)
    return ts


def rename_device(device_id: str, name: str, tags: str | None = None) -> None:
    """Change a device's display name (and tags); the id, key and data stay.

    Raises:
        DeviceError: no such device or an empty name.
    """
    _get(device_id)
    if not name.strip():
        raise DeviceError("a device name cannot be empty")
    changes = {Device.name: name.strip()[:200]}
    if tags is not None:
        changes[Device.tags] = tags[:500]
    Device.update(changes).where(Device.id == device_id).execute()


def delete_device(dynsec: DynSecClient, device_id: str, keep_data: bool = False) -> None:
    """Remove a device from the broker (kicking a live session) and the database.

    With ``keep_data`` the samples, usage and log records stay; otherwise they are purged.
    Clearing its retained topics on the broker is the caller's job (it owns an MQTT session).

    Raises:
        DeviceError: no such device.
    """
    _get(device_id)
    dynsec.delete_device(device_id)
    with db.atomic():
        if not keep_data:
            for model in (Sample, StatusEvent, UsageRecord, LogRecord, RejectCount):
                model.delete().where(model.device == device_id).execute()
        Device.delete().where(Device.id == device_id).execute()
    log.info("device %s deleted%s", device_id, " (data kept)" if keep_data else "")


def list_devices() -> list[Device]:
    """All devices, by id."""
    return list(Device.select().order_by(Device.id))
