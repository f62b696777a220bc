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
============================================  ==================================================

Only clients that look like ClawFleet devices (a username that is a valid device id holding the
role ``device-<username>``) are considered, so other accounts on a shared broker are left alone.

:func:`grant_receipts` then gives devices enrolled before delivery receipts the right to read
their own ``receipt`` topic (an external broker; the managed broker's file is updated before it
starts, so there it finds nothing to do).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from broker.acl import DEVICE_ROLE_PREFIX, SERVER_USERNAME, receipt_acl, same_acls
from broker.dynsec import DynSecClient
from fleet_server.store.models import Device, StatusEvent, db
from shared.clock import now_ms
from shared.topics import is_valid_device_id

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
                dynsec.disable_device(dev.id)
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


def grant_receipts(dynsec: DynSecClient, pace_s: float = 0.05) -> list[str]:
    """Add the receipt subscription (:func:`broker.acl.receipt_acl`) to every device role that lacks
    it: one ``listRoles``, then one ``addRoleACL`` per device, ``pace_s`` apart (Mosquitto 2.0.11
    rewrites its whole dynsec file after each, so a big fleet is done gently, in the background).
    Until then such a device's agent keeps deleting messages on PUBACK (it retries the subscription
    every 10 minutes). Returns the device ids changed; a refused one is logged and skipped.

    Raises:
        DynSecError, DynSecConnectionError: the role list could not be read.
    """
    reply = dynsec.execute([{"command": "listRoles", "verbose": True, "count": -1, "offset": 0}], timeout=30)[0]
    missing = []
    for role in reply.get("data", {}).get("roles", []):
        name = str(role.get("rolename", ""))
        device_id = name[len(DEVICE_ROLE_PREFIX):]
        if not name.startswith(DEVICE_ROLE_PREFIX) or not is_valid_device_id(device_id):
            continue
        acl = receipt_acl(device_id)
        if not any(same_acls([a], [acl]) for a in role.get("acls", [])):
            missing.append(device_id)
    if not missing:
        return []
    log.info("letting %d devices enrolled before delivery receipts read their receipt topic (one broker command "
             "each, in the background)", len(missing))
    done = []
    for device_id in missing:
        try:
            dynsec.execute([{"command": "addRoleACL", "rolename": DEVICE_ROLE_PREFIX + device_id,
                             **receipt_acl(device_id)}])
            done.append(device_id)
        except Exception as exc:  # one refused change must not stop the others
            log.error("could not add the receipt topic to device %s: %s", device_id, exc)
        time.sleep(pace_s)
    log.info("%d devices may now read their receipts", len(done))
    return done


def _mark_needs_new_key(dev: Device) -> None:
    if dev.status == "offline" and dev.status_reason == NEEDS_NEW_KEY:
        return
    ts = now_ms()
    with db.atomic():
        Device.update(status="offline", status_reason=NEEDS_NEW_KEY, status_ms=ts).where(Device.id == dev.id).execute()
        StatusEvent.create(device=dev.id, ts=ts, state="offline", reason=NEEDS_NEW_KEY)
