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


def delete_device(dynsec: DynSecClient, device_id: str, keep_data: bool = False) -> None:
    """Remove a device from the broker (kicking a live session) and the database.

    With ``keep_data`` the samples, usage and log records stay; otherwise they are purged.

    Raises:
        DeviceError: no such device.
    """
    if Device.get_or_none(Device.id == device_id) is None:
        raise DeviceError(f"no device {device_id!r}")
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
