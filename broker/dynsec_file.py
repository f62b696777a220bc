"""Device accounts in the dynamic-security plugin's JSON file, edited while the broker is stopped.

The plugin reads its file once at start and rewrites all of it after every change (Mosquitto
2.0.11), so a change made here is only safe with the managed broker stopped. Two uses:

- :func:`migrate_device_layout`: devices enrolled before the shared role
  (:data:`~broker.acl.DEVICE_SHARED_ROLE`) carry the server-status ACL in their own role and
  a text label on client and role, and devices enrolled before receipts cannot read their
  ``receipt`` topic; at start-up they are moved to the current layout once.
- :func:`add_devices`: enroll many devices in one write (``clawfleet-server device import`` with
  the server stopped), in constant time per device instead of one file rewrite per command.

File format (what the plugin reads and writes): ``{"defaultACLAccess", "clients": [{"username",
"clientid", "password", "salt", "iterations", "roles": [{"rolename"}], "disabled"?,
"textname"?}], "groups", "roles": [{"rolename", "textname"?, "acls": [{"acltype", "topic",
"priority", "allow"}]}]}``; passwords are base64 PBKDF2-HMAC-SHA512 (:func:`broker.config.pbkdf2_fields`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from broker.acl import (
    DEVICE_ROLE_PREFIX,
    DEVICE_SHARED_ROLE,
    SERVER_USERNAME,
    check_device_account,
    device_client_roles,
    device_role_acls,
    device_role_name,
    device_shared_role_acls,
    same_acls,
)
from shared.topics import is_valid_device_id

LEGACY_TEXTNAME_PREFIX = "ClawFleet device "
"""Label the first layout put on each device's client and role (dropped by the migration)."""


def _device_clients(data: dict[str, Any]) -> Iterable[dict[str, Any]]:
    for c in data.get("clients", []):
        name = c.get("username", "")
        if (is_valid_device_id(name) and name != SERVER_USERNAME
                and any(r.get("rolename") == DEVICE_ROLE_PREFIX + name for r in c.get("roles", []))):
            yield c


def ensure_shared_role(data: dict[str, Any]) -> bool:
    """Add :data:`DEVICE_SHARED_ROLE` to ``data`` or fix its ACLs; True when ``data`` changed."""
    roles = data.setdefault("roles", [])
    role = next((r for r in roles if r.get("rolename") == DEVICE_SHARED_ROLE), None)
    if role is None:
        roles.append({"rolename": DEVICE_SHARED_ROLE, "textname": "ClawFleet devices (all)",
                      "acls": device_shared_role_acls()})
        return True
    if not same_acls(role.get("acls", []), device_shared_role_acls()):
        role["acls"] = device_shared_role_acls()
        return True
    return False


def migrate_device_layout(data: dict[str, Any]) -> int:
    """Move every device account in ``data`` (a parsed dynsec file) to the current layout, in place:
    the client holds its own role and the shared one, its own role holds only its own topics
    (with its ``receipt`` topic), neither carries the old text label. Idempotent.

    Returns how many devices were changed (0: nothing to do, ``data`` untouched unless the shared
    role itself was missing; check :func:`ensure_shared_role`'s result for that).
    """
    roles = {r.get("rolename"): r for r in data.get("roles", [])}
    changed = 0
    for client in _device_clients(data):
        device_id = client["username"]
        touched = False
        if not any(r.get("rolename") == DEVICE_SHARED_ROLE for r in client.get("roles", [])):
            client["roles"] = [*client.get("roles", []), {"rolename": DEVICE_SHARED_ROLE}]
            touched = True
        if str(client.get("textname", "")).startswith(LEGACY_TEXTNAME_PREFIX):
            del client["textname"]
            touched = True
        role = roles.get(device_role_name(device_id))
        if role is not None:
            if not same_acls(role.get("acls", []), device_role_acls(device_id)):
                role["acls"] = device_role_acls(device_id)
                touched = True
            if str(role.get("textname", "")).startswith(LEGACY_TEXTNAME_PREFIX):
                del role["textname"]
                touched = True
        changed += touched
    return changed


def add_devices(data: dict[str, Any], devices: Iterable[tuple[str, dict[str, Any]]]) -> int:
    """Add device accounts to ``data`` (a parsed dynsec file) in the current layout, in place.

    ``devices``: ``(device id, password fields)`` pairs, the fields from
    :func:`broker.config.pbkdf2_fields` (so the key itself never reaches this module). The shared
    role is added when missing. Returns the number added.

    Raises:
        TopicError: an invalid or reserved device id.
        ValueError: a device id already has a client or role in ``data`` (nothing is changed).
    """
    devices = list(devices)
    for device_id, _ in devices:
        check_device_account(device_id)
    usernames = {c.get("username") for c in data.get("clients", [])}
    rolenames = {r.get("rolename") for r in data.get("roles", [])}
    for device_id, _ in devices:
        if device_id in usernames or device_role_name(device_id) in rolenames:
            raise ValueError(f"the broker already has an account for {device_id!r}")
    ensure_shared_role(data)
    clients, roles = data.setdefault("clients", []), data.setdefault("roles", [])
    for device_id, password in devices:
        clients.append({"username": device_id, "clientid": device_id, "roles": device_client_roles(device_id),
                        **password})
        roles.append({"rolename": device_role_name(device_id), "acls": device_role_acls(device_id)})
    return len(devices)
