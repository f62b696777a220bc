"""Read-only MQTT integration accounts: create (password shown once), list, revoke.

Each account is a dynamic-security client ``integration.<name>`` with its own role that may only
subscribe to ``clawfleet/v1/+/status``, ``meta`` and ``telemetry`` (optionally ``usage`` and
``logs``); it can publish nothing and read neither ``$CONTROL`` nor other roots (the broker's
default access denies both). The fleet database keeps the name, channels and dates
(:class:`fleet_server.store.models.IntegrationAccount`), never the password; the broker keeps its
own PBKDF2 hash. Revoking deletes the broker client, which kicks a live session at once. Audited as
``integration.add`` / ``integration.revoke``.
"""

from __future__ import annotations

import secrets

from broker.acl import DEFAULT_INTEGRATION_CHANNELS, INTEGRATION_CHANNELS, integration_role_acls, integration_username
from broker.dynsec import DynSecClient
from fleet_server.store import audit
from fleet_server.store.models import IntegrationAccount
from shared.clock import now_ms
from shared.topics import Channel, TopicError


class IntegrationError(ValueError):
    """A bad name or channel, a duplicate, or an unknown account (message says which)."""


def parse_channels(text: str | None) -> tuple[Channel, ...]:
    """``"status,meta,telemetry,usage"`` -> channels; empty: status, meta, telemetry. Raises IntegrationError."""
    if not text:
        return DEFAULT_INTEGRATION_CHANNELS
    out = []
    for part in (p.strip().lower() for p in text.split(",") if p.strip()):
        try:
            ch = Channel(part)
        except ValueError:
            ch = None
        if ch not in INTEGRATION_CHANNELS:
            raise IntegrationError(f"channel {part!r}: choose from {', '.join(c.value for c in INTEGRATION_CHANNELS)}")
        out.append(ch)
    return tuple(dict.fromkeys(out))


def add_integration(dynsec: DynSecClient, name: str, channels: tuple[Channel, ...], actor: str
                    ) -> tuple[IntegrationAccount, str]:
    """Create the account; returns (row, password — show it once).

    Raises:
        IntegrationError: bad name or channels, or the name is taken.
        DynSecError, DynSecConnectionError: the broker refused or cannot be reached.
    """
    try:
        username = integration_username(name)
        acls = integration_role_acls(channels)
    except TopicError as exc:
        raise IntegrationError(str(exc)) from None
    if IntegrationAccount.get_or_none(IntegrationAccount.name == name) is not None:
        raise IntegrationError(f"integration {name!r} exists already (revoke it first)")
    password = secrets.token_urlsafe(32)
    dynsec.delete_integration(username)  # a leftover of an earlier account of that name
    dynsec.create_integration(username, password, acls)
    row = IntegrationAccount.create(name=name, username=username, channels=",".join(c.value for c in channels),
                                    created_ms=now_ms(), created_by=actor[:100])
    audit.record(actor, "integration.add", target=name, detail=f"reads {row.channels}")
    return row, password


def list_integrations() -> list[IntegrationAccount]:
    """Active accounts, by name."""
    return list(IntegrationAccount.select().order_by(IntegrationAccount.name))


def revoke_integration(dynsec: DynSecClient, name: str, actor: str) -> None:
    """Delete the broker account (a live session is kicked at once) and forget it. Raises IntegrationError."""
    row = IntegrationAccount.get_or_none(IntegrationAccount.name == name)
    if row is None:
        raise IntegrationError(f"no integration {name!r}")
    dynsec.delete_integration(row.username)
    row.delete_instance()
    audit.record(actor, "integration.revoke", target=name)
