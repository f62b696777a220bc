"""Device lifecycle: add, rotate key, revoke, rename, delete, list. The database is the source of
truth; the broker's dynamic-security clients follow it (and :mod:`fleet_server.devices.reconcile` repairs
the broker at start-up when they drifted apart).

These functions change the database and the broker only. Audit, the in-memory cache, ingest's
device cache and the broker's retained topics are handled by :mod:`fleet_server.devices.actions`.
API keys and tokens are returned to the caller once and never logged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from broker.acl import check_device_account
from broker.dynsec import DynSecClient, DynSecError
from fleet_server.devices.keys import generate_api_key, hash_api_key, key_hint
from fleet_server.store.models import ALL_MODELS, Device, StatusEvent, db
from shared.clock import now_ms
from shared.enrollment import Enrollment, encode_token
from shared.topics import check_device_id, suggest_device_id

log = logging.getLogger("clawfleet.devices")

MAX_NAME = 200
MAX_TAGS = 500
DEVICE_DATA_MODELS = tuple(m for m in ALL_MODELS if m is not Device and "device" in m._meta.fields)
"""Tables holding a device's data — every table with a ``device`` column but the devices table (samples,
rollup tiers and their watermark, status events, usage records and rollups, logs, reject counts) —
purged by :func:`delete_device` unless data is kept."""


class DeviceError(ValueError):
    """A device operation that cannot be done (duplicate id, unknown device, …)."""


@dataclass(frozen=True)
class NewDevice:
    """Result of :func:`add_device`. ``api_key`` and ``token`` are shown once and never stored."""

    device: Device
    api_key: str
    token: str


def add_device(dynsec: DynSecClient, name: str, broker_url: str, *, device_id: str | None = None,
               tags: str = "", ca_pem: str | None = None, token_extra: dict[str, str] | None = None) -> NewDevice:
    """Enroll a device: database row (key hash only) + broker client and role.

    Args:
        dynsec: admin connection to the broker's dynamic-security plugin.
        name: display name; the device id is derived from it unless ``device_id`` is given.
        broker_url: the URL agents use (goes into the enrollment token).
        tags: comma-separated free-form tags.
        ca_pem: CA certificate the agent will pin (for ``mqtts://``).
        token_extra: the token's optional fields (:meth:`AgentEndpoint.token_extra
            <fleet_server.endpoints.broker_link.AgentEndpoint.token_extra>`).

    Raises:
        DeviceError: empty name, the id is invalid or already enrolled.
        DynSecError, DynSecConnectionError: the broker refused or did not answer (no row is left).
    """
    did, name, tags = plan_device(name, tags, device_id)
    if Device.get_or_none(Device.id == did) is not None:
        raise DeviceError(f"device {did!r} already exists; pick another name or pass --id")
    key = generate_api_key()
    with db.atomic():
        device = Device.create(id=did, name=name, tags=tags, key_hash=hash_api_key(key), key_hint=key_hint(key),
                               created_ms=now_ms())
        dynsec.create_device(did, key)  # inside the transaction: a broker failure leaves no row behind
    log.info("device %s added (key …%s)", did, key_hint(key))
    token = encode_token(Enrollment(url=broker_url, device_id=did, api_key=key, ca_pem=ca_pem, **(token_extra or {})))
    return NewDevice(device=device, api_key=key, token=token)


def plan_device(name: str, tags: str = "", device_id: str | None = None) -> tuple[str, str, str]:
    """``(device id, name, tags)`` of a device to enroll, cleaned; the id is derived from the name
    unless given. Does not look at the database.

    Raises:
        DeviceError: empty name, or an invalid or reserved id.
    """
    name, tags = clean_name(name), clean_tags(tags)
    try:
        did = check_device_account(check_device_id(device_id) if device_id else suggest_device_id(name))
    except ValueError as exc:
        raise DeviceError(str(exc)) from None
    return did, name, tags


def clean_name(name: str) -> str:
    """``name`` stripped and cut to :data:`MAX_NAME` characters. Raises :class:`DeviceError` when empty."""
    name = " ".join((name or "").split())
    if not name:
        raise DeviceError("a device name cannot be empty")
    return name[:MAX_NAME]


def clean_tags(tags: str) -> str:
    """Comma-separated tags, each stripped, empty ones and repeats dropped: ``" a, b,,a "`` -> ``"a,b"``."""
    seen: list[str] = []
    for tag in (tags or "").split(","):
        tag = " ".join(tag.split())
        if tag and tag not in seen:
            seen.append(tag)
    return ",".join(seen)[:MAX_TAGS]


def get_device(device_id: str) -> Device:
    """The device's row. Raises :class:`DeviceError` when there is none."""
    dev = Device.get_or_none(Device.id == device_id)
    if dev is None:
        raise DeviceError(f"no device {device_id!r}; see 'clawfleet-server device list'")
    return dev


_get = get_device


def rotate_key(dynsec: DynSecClient, device_id: str, broker_url: str, ca_pem: str | None = None,
               token_extra: dict[str, str] | None = None) -> NewDevice:
    """Give a device a new API key. The broker kicks the live session at once (0x98) and refuses
    the old key from then on; the agent needs the new enrollment token (returned, shown once).
    The device is recorded offline with reason "key rotated" until the agent reports again.

    Also the fix for a revoked device (re-enabled with a fresh key) and for one whose broker
    client is missing (re-created; see :mod:`fleet_server.devices.reconcile`).

    Raises:
        DeviceError: no such device.
        DynSecError, DynSecConnectionError: the broker refused or did not answer (the old key stays).
    """
    dev = _get(device_id)
    key = generate_api_key()
    ts = now_ms()
    with db.atomic():
        Device.update(key_hash=hash_api_key(key), key_hint=key_hint(key), revoked_ms=None, status="offline",
                      status_reason="key rotated", status_ms=ts).where(Device.id == device_id).execute()
        if dev.status != "offline" or dev.status_reason != "key rotated":
            StatusEvent.create(device=device_id, ts=ts, state="offline", reason="key rotated")
        # one command (one save of the broker's dynsec file) for an active device, plus enableClient
        # for a revoked one; a live session with the old key is kicked either way
        try:
            dynsec.set_device_password(device_id, key, enable=dev.revoked_ms is not None)
        except DynSecError as exc:
            if exc.error != "Client not found":
                raise
            log.info("device %s has no broker client; creating it with the new key", device_id)
            dynsec.create_device(device_id, key)
    log.info("device %s: key rotated (now …%s)", device_id, key_hint(key))
    token = encode_token(Enrollment(url=broker_url, device_id=device_id, api_key=key, ca_pem=ca_pem,
                                    **(token_extra or {})))
    return NewDevice(device=_get(device_id), api_key=key, token=token)


def mark_revoked(device_id: str) -> int:
    """Revoke a device in the database: ``revoked_ms`` set, offline with reason "revoked" (a kick
    does not publish the last will), one status event. Idempotent. Returns the revocation time,
    epoch ms. Runs in the caller's transaction when there is one (the audit row goes with it).
    The broker side is :func:`disable_on_broker`; re-enable a revoked device with :func:`rotate_key`.

    Raises:
        DeviceError: no such device.
    """
    dev = _get(device_id)
    ts = dev.revoked_ms or now_ms()
    if not dev.revoked_ms:
        with db.atomic():
            Device.update(revoked_ms=ts, status="offline", status_reason="revoked", status_ms=ts).where(
                Device.id == device_id).execute()
            StatusEvent.create(device=device_id, ts=ts, state="offline", reason="revoked")
    return ts


def disable_on_broker(dynsec: DynSecClient, device_id: str) -> None:
    """Disable the device's broker client, which kicks a live session (reason 0x98) within
    milliseconds and refuses its key from then on. A missing client is fine (nothing to disable).

    Raises:
        DynSecConnectionError: the broker did not answer within 15 s (the command
            may still be applied when it does; the start-up reconciliation disables it otherwise).
        DynSecError: the broker refused.
    """
    try:
        dynsec.disable_device(device_id)
    except DynSecError as exc:
        if exc.error != "Client not found":
            raise
        log.info("device %s has no broker client; nothing to disable", device_id)


def rename_device(device_id: str, name: str, tags: str | None = None) -> Device:
    """Change a device's display name (and tags, when given); the id, key and data stay.
    Returns the updated row.

    Raises:
        DeviceError: no such device or an empty name.
    """
    _get(device_id)
    changes = {Device.name: clean_name(name)}
    if tags is not None:
        changes[Device.tags] = clean_tags(tags)
    Device.update(changes).where(Device.id == device_id).execute()
    return _get(device_id)


def delete_device(dynsec: DynSecClient, device_id: str, keep_data: bool = False) -> bool:
    """Remove a device from the broker (kicking a live session) and the database.

    With ``keep_data`` the samples, usage (records and rollups), logs, status events and reject
    counts stay; otherwise they are purged. Clearing its retained topics on the broker is the
    caller's job (it owns an MQTT session). Returns True when the broker had a client for it.

    Raises:
        DeviceError: no such device.
        DynSecError, DynSecConnectionError: the broker refused or did not answer (nothing deleted).
    """
    _get(device_id)
    existed = dynsec.delete_device(device_id)
    with db.atomic():
        if not keep_data:
            purge_device_data(device_id)  # with the receipt marks (ReceiptMark has a device column)
        Device.delete().where(Device.id == device_id).execute()
    log.info("device %s deleted%s", device_id, " (data kept)" if keep_data else "")
    return existed


def purge_device_data(device_id: str) -> dict[str, int]:
    """Delete every row of ``device_id`` in :data:`DEVICE_DATA_MODELS` (in the caller's transaction,
    if any). Returns rows deleted per table."""
    with db.atomic():
        return {m._meta.table_name: m.delete().where(m.device == device_id).execute() for m in DEVICE_DATA_MODELS}


def list_devices() -> list[Device]:
    """All devices, by id."""
    return list(Device.select().order_by(Device.id))
