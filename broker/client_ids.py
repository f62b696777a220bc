"""Every account the server creates on the broker is bound to one client id; checked at start-up.

MQTT has one session per client id: a second connection with the same id takes the session over
(clean start: wipes it; resumed: receives what was queued for it) and kicks the first. With
Mosquitto's dynamic-security plugin a client record may carry a fixed ``clientid``; the broker then
refuses that account's connections under any other id (Mosquitto 2.0.11: the plugin's basic-auth
check, before any session is touched). ClawFleet binds:

- devices: client id = device id = username (always done at enrollment);
- integration accounts: client id = username ``integration.<name>`` (since this release; older
  accounts are bound by :func:`bind_client_ids` at start-up, which kicks their live session once);
- the server account (``clawfleet-server`` or the external broker's admin) is **not** bound: it
  opens several connections at once (ingest ``clawfleet-ingest`` or ``clawfleet-ingest-<n>``, the
  credentials link ``clawfleet-dynsec``, CLI commands ``clawfleet-cli-<random>``), and whoever holds
  its password is the broker's administrator anyway. Its ids cannot be taken because every other
  account is bound, and no device may have an id the server uses
  (:func:`broker.acl.is_server_client_id`).

Accounts on an external broker that ClawFleet did not create are left alone, with a warning when
one has no fixed client id (it could take the server's sessions).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from broker.acl import DEVICE_ROLE_PREFIX, is_integration_username, is_server_client_id
from broker.dynsec import DynSecClient, DynSecError
from shared.topics import is_valid_device_id

log = logging.getLogger("clawfleet.broker.client_ids")


@dataclass
class BindSummary:
    """What :func:`bind_client_ids` found and did (usernames, sorted)."""

    bound: list[str] = field(default_factory=list)
    """ClawFleet accounts that had no (or another) fixed client id and now have their own."""
    unbound_foreign: list[str] = field(default_factory=list)
    """Accounts ClawFleet did not create that can use any client id (warned about, left alone)."""
    reserved_devices: list[str] = field(default_factory=list)
    """Device accounts whose id is one the server's own connections use (see ``reconcile``)."""
    errors: list[str] = field(default_factory=list)
    """``"<username>: <error>"`` for bindings the broker refused."""


def is_device_client(client: dict[str, Any]) -> bool:
    """True for a dynsec client record that is a ClawFleet device: a username that is a valid device
    id, holding the role ``device-<username>``."""
    name = str(client.get("username", ""))
    return is_valid_device_id(name) and any(r.get("rolename") == DEVICE_ROLE_PREFIX + name
                                            for r in client.get("roles", []))


def list_clients(dynsec: DynSecClient) -> list[dict[str, Any]]:
    """Every client record on the broker (one ``listClients`` with ``verbose``): ``username``,
    ``clientid``?, ``roles``, ``disabled``?, ``textname``?.

    Raises:
        DynSecError, DynSecConnectionError: as :meth:`DynSecClient.execute`.
    """
    reply = dynsec.execute([{"command": "listClients", "verbose": True, "count": -1, "offset": 0}])[0]
    return list(reply.get("data", {}).get("clients", []))


def bind_client_ids(dynsec: DynSecClient, admin_username: str) -> BindSummary:
    """Give every ClawFleet device and integration account on the broker its own fixed client id
    (its username) where it lacks one; warn about other accounts without one. Idempotent: when all
    is bound it only reads. A binding kicks that account's live session once (``modifyClient``).

    Args:
        dynsec: the admin connection.
        admin_username: the server's own account (left unbound; see the module docstring).

    Raises:
        DynSecError, DynSecConnectionError: the client list could not be read (a refused binding
            is logged and listed in ``errors`` instead).
    """
    summary = BindSummary()
    for client in sorted(list_clients(dynsec), key=lambda c: str(c.get("username", ""))):
        name = str(client.get("username", ""))
        clientid = client.get("clientid") or None
        if name == admin_username:
            continue
        ours = is_device_client(client) or is_integration_username(name)
        if ours and is_server_client_id(name):
            summary.reserved_devices.append(name)
        if ours and clientid != name:
            try:
                dynsec.execute([{"command": "modifyClient", "username": name, "clientid": name}])
            except DynSecError as exc:
                log.error("could not bind %s to its own client id: %s", name, exc)
                summary.errors.append(f"{name}: {exc}")
                continue
            log.warning("bound broker account %s to client id %s (it could connect under any id, including the "
                        "server's; a live session of it was closed once)", name, name)
            summary.bound.append(name)
        elif not ours and clientid is None:
            summary.unbound_foreign.append(name)
    if summary.unbound_foreign:
        log.warning("broker accounts not created by ClawFleet can connect under any client id, including the "
                    "server's own (clawfleet-ingest, clawfleet-dynsec) and the devices' ids, and so take over their "
                    "sessions: %s. Bind each to its client id (mosquitto_ctrl dynsec setClientId USERNAME CLIENTID)"
                    " or delete it", ", ".join(summary.unbound_foreign[:20]))
    return summary
