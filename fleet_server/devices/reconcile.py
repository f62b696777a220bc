"""Start-up reconciliation of the broker's device clients with the database (the source of truth).

Run once after the dynamic-security connection is ready and before the cache is loaded
(:meth:`fleet_server.server.FleetServer.start`). One ``listClients`` command, then one command
per fix:

============================================  ==================================================
database / broker                             action
============================================  ==================================================
active, client missing                        cannot be re-created without the key (only its
                                              hash is stored): warning naming the device and the
                                              fix ("rotate its key"); device marked offline with
                                              reason "needs new key"
active, client disabled                       enabled (the database says it is not revoked)
revoked, client enabled                       disabled (kicks a live session)
revoked, client missing or disabled           nothing to do
no device row, client present                 client and role deleted, with a warning
active, id reserved for the server's own      revoked (audited as ``server``) and disabled: its
connections (``clawfleet-ingest`` …)           client id would take over the server's session
============================================  ==================================================

Only clients that look like ClawFleet devices (a username that is a valid device id holding the
role ``device-<username>``) are considered, so other accounts on a shared broker are left alone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from broker.acl import (
    DEVICE_ROLE_PREFIX,
    SERVER_USERNAME,
    device_role_acls,
    integration_role_acls,
    is_server_client_id,
    legacy_device_role_acls,
    same_acls,
)
from broker.dynsec import DynSecClient
from fleet_server.devices.registry import mark_revoked
from fleet_server.store import audit
from fleet_server.store.models import Device, IntegrationAccount, StatusEvent, db
from shared.clock import now_ms
from shared.topics import SERVER_STATUS_TOPIC, Channel, is_valid_device_id

log = logging.getLogger("clawfleet.reconcile")

NEEDS_NEW_KEY = "needs new key"
"""``Device.status_reason`` of an active device whose broker client is missing."""


@dataclass
class ReconcileSummary:
    """What :func:`reconcile` found and did. Lists hold device ids, sorted."""

    checked: int = 0
    """Devices in the database."""
    ok: int = 0
    """Devices whose broker client already matched."""
    needs_new_key: list[str] = field(default_factory=list)
    """Active devices without a broker client (marked; fix: rotate the key)."""
    enabled: list[str] = field(default_factory=list)
    """Active devices whose client was disabled on the broker, now enabled."""
    disabled: list[str] = field(default_factory=list)
    """Revoked devices whose client was still enabled, now disabled."""
    reserved: list[str] = field(default_factory=list)
    """Active devices with an id the server's own connections use, now revoked."""
    deleted: list[str] = field(default_factory=list)
    """Broker clients without a device row, now deleted."""
    errors: list[str] = field(default_factory=list)
    """Fixes the broker refused (``"<id>: <error>"``); reconciliation goes on past them."""

    def line(self) -> str:
        """One log line with the counts."""
        return (f"reconciled broker with database: {self.checked} devices, {self.ok} ok, "
                f"{len(self.needs_new_key)} need a new key, {len(self.enabled)} enabled, "
                f"{len(self.disabled)} disabled (revoked), {len(self.deleted)} unknown clients deleted, "
                f"{len(self.errors)} errors")


def broker_device_clients(dynsec: DynSecClient) -> dict[str, bool]:
    """``{device id: disabled}`` for every ClawFleet device client on the broker (one ``listClients``).

    Raises:
        DynSecError, DynSecConnectionError: as :meth:`DynSecClient.execute`.
    """
    reply = dynsec.execute([{"command": "listClients", "verbose": True, "count": -1, "offset": 0}])[0]
    out = {}
    for c in reply.get("data", {}).get("clients", []):
        name = c.get("username", "")
        if (is_valid_device_id(name) and name != SERVER_USERNAME
                and any(r.get("rolename") == DEVICE_ROLE_PREFIX + name for r in c.get("roles", []))):
            out[name] = bool(c.get("disabled", False))
    return out


def reconcile(dynsec: DynSecClient) -> ReconcileSummary:
    """Make the broker's device clients follow the devices table; see the module docstring.

    Logs a warning per device that needs attention and one info line with the counts
    (:meth:`ReconcileSummary.line`). A refused fix is logged and listed in ``errors``.

    Raises:
        DynSecError, DynSecConnectionError: the client list could not be read.
    """
    summary = ReconcileSummary()
    clients = broker_device_clients(dynsec)
    for dev in Device.select(Device.id).where(Device.revoked_ms.is_null()):
        if is_server_client_id(dev.id):
            _revoke_reserved(dev.id, summary)
    rows = list(Device.select(Device.id, Device.revoked_ms, Device.status, Device.status_reason))
    summary.checked = len(rows)
    for dev in sorted(rows, key=lambda d: d.id):
        disabled = clients.get(dev.id)
        try:
            if dev.revoked_ms is None and disabled is None:
                summary.needs_new_key.append(dev.id)
                log.warning("device %s has no client on the broker (broker state lost or a different broker); "
                            "its key cannot be restored: rotate its key (dashboard, or 'clawfleet-server device "
                            "rotate-key %s') and enroll the agent with the new token", dev.id, dev.id)
                _mark_needs_new_key(dev)
            elif dev.revoked_ms is None and disabled:
                log.warning("device %s was disabled on the broker but is not revoked here; enabling it", dev.id)
                dynsec.enable_device(dev.id)
                summary.enabled.append(dev.id)
            elif dev.revoked_ms is not None and disabled is False:
                log.warning("revoked device %s was still enabled on the broker; disabling it", dev.id)
                dynsec.execute([{"command": "disableClient", "username": dev.id}])  # also a reserved id
                summary.disabled.append(dev.id)
            else:
                summary.ok += 1
        except Exception as exc:  # one refused fix must not stop the others or the server
            log.error("could not reconcile device %s: %s", dev.id, exc)
            summary.errors.append(f"{dev.id}: {exc}")
    known = {d.id for d in rows}
    for device_id in sorted(set(clients) - known):
        log.warning("broker client %s belongs to no enrolled device (deleted while the server was away?); "
                    "deleting it", device_id)
        try:
            dynsec.delete_device(device_id)
            summary.deleted.append(device_id)
        except Exception as exc:
            log.error("could not delete broker client %s: %s", device_id, exc)
            summary.errors.append(f"{device_id}: {exc}")
    log.info("%s", summary.line())
    return summary


def _revoke_reserved(device_id: str, summary: ReconcileSummary) -> None:
    """Revoke (database + audit) a device enrolled under an id the server's own connections use."""
    log.error("device %s has an id the server's own broker connections use: its client id would take over the "
              "server's session, so it is revoked. Delete it ('clawfleet-server device delete %s --keep-data') and "
              "enroll the machine again under another id", device_id, device_id)
    with db.atomic():
        mark_revoked(device_id)
        audit.record("server", "device.revoke", target=device_id,
                     detail="id reserved for the server's own broker connections")
    summary.reserved.append(device_id)


def reconcile_roles(dynsec: DynSecClient) -> int:
    """Give device and integration roles the ACLs of this version (a device enrolled before the
    ``snooze`` channel or its ``receipt`` topic existed; an integration from before ``availability``):
    one ``listRoles``, then one ``modifyRole`` per role that differs (nothing when all are current,
    e.g. a managed broker, whose file is brought up to date before it starts). A device role of the
    first layout keeps the server status in its own role. Returns how many roles were changed.

    Raises:
        DynSecError, DynSecConnectionError: the role list could not be read.
    """
    reply = dynsec.execute([{"command": "listRoles", "verbose": True, "count": -1, "offset": 0}])[0]
    roles = {r.get("rolename", ""): r.get("acls", []) for r in reply.get("data", {}).get("roles", [])}
    want: dict[str, list] = {}
    for name, acls in roles.items():
        device_id = name[len(DEVICE_ROLE_PREFIX):]
        if name.startswith(DEVICE_ROLE_PREFIX) and is_valid_device_id(device_id) and device_id != SERVER_USERNAME:
            legacy = any(a.get("topic") == SERVER_STATUS_TOPIC for a in acls)
            want[name] = legacy_device_role_acls(device_id) if legacy else device_role_acls(device_id)
    for acc in IntegrationAccount.select():
        channels = [Channel(c) for c in acc.channels.split(",") if c in {ch.value for ch in Channel}]
        want[acc.username] = integration_role_acls(channels)
    changed = 0
    for name, acls in sorted(want.items()):
        if name in roles and not same_acls(roles[name], acls):
            try:
                dynsec.execute([{"command": "modifyRole", "rolename": name, "acls": acls}], 15.0)
                changed += 1
            except Exception as exc:  # one refused role must not stop the others
                log.error("could not update the ACLs of broker role %s: %s", name, exc)
    if changed:
        log.info("updated the ACLs of %d broker roles to this version's", changed)
    return changed


def _mark_needs_new_key(dev: Device) -> None:
    if dev.status == "offline" and dev.status_reason == NEEDS_NEW_KEY:
        return
    ts = now_ms()
    with db.atomic():
        Device.update(status="offline", status_reason=NEEDS_NEW_KEY, status_ms=ts).where(Device.id == dev.id).execute()
        StatusEvent.create(device=dev.id, ts=ts, state="offline", reason=NEEDS_NEW_KEY)
