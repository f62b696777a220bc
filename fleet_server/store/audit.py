"""Audit log: who did what, when. One row per event in :class:`fleet_server.store.models.AuditEvent`.

Call :func:`record` from anything that changes the fleet or its accounts::

    from fleet_server.store import audit
    audit.record(actor, "device.revoke", target=device_id, detail="key revoked, data purged")

Actions in use (dot-separated ``noun.verb`` for changes, plain words for sessions):
``login``, ``login_failed``, ``logout``, ``user.create``, ``user.set_password``, ``user.disable``,
``user.enable``, ``user.unlock``, ``device.add``, ``device.rename``, ``device.rotate_key``, ``device.revoke``,
``device.delete``; alerts: ``alert_rule.add``, ``alert_rule.update``, ``alert_rule.enable``,
``alert_rule.disable``, ``alert_rule.delete``, ``alert_channel.add`` (the masked URL only),
``alert_channel.update``, ``alert_channel.remove``, ``alert.ack``, ``alert.snooze``,
``alert.maintenance``, ``alert.unsilence``, ``alert.settings`` (actor ``device:<id>`` for a
snooze sent from a device's tray).

Never put secrets (passwords, API keys, tokens) in ``target`` or ``detail``.
"""

from __future__ import annotations

import getpass
import logging
from dataclasses import dataclass

from fleet_server.store.models import AuditEvent
from shared.clock import now_ms

log = logging.getLogger("clawfleet.audit")

MAX_ACTOR = 100
MAX_ACTION = 64
MAX_TARGET = 200
MAX_DETAIL = 500


def _clean(text: str, limit: int) -> str:
    """Printable one-line text of at most ``limit`` characters (no log or table injection)."""
    text = "".join(ch if ch.isprintable() else " " for ch in str(text))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def record(actor: str, action: str, target: str = "", detail: str = "", *, strict: bool = False) -> AuditEvent | None:
    """Append one audit event, time-stamped now (epoch ms UTC).

    Args:
        actor: username; ``cli_actor()`` for the admin CLI; the attempted username for a failed login.
        action: short machine-readable name, e.g. ``"login"``, ``"user.create"``, ``"device.revoke"``.
        target: what was acted on (a username, a device id), or ``""``.
        detail: short human-readable text, never a secret.

    Values are made single-line and printable and truncated to the column sizes (actor 100,
    action 64, target 200, detail 500 characters). A database error is logged, not raised: the
    action being audited has already happened and must not fail because of its audit row.

    With ``strict=True`` the error is raised instead: use it inside the transaction of the change
    being audited, so the change and its row commit (or roll back) together.

    Returns the new row (None when it could not be written).
    """
    row = {"ts_ms": now_ms(), "actor": _clean(actor, MAX_ACTOR) or "?",
           "action": _clean(action, MAX_ACTION), "target": _clean(target, MAX_TARGET),
           "detail": _clean(detail, MAX_DETAIL)}
    try:
        event = AuditEvent.create(**row)
    except Exception:  # the caller's action already happened; losing the row must be loud, not fatal
        if strict:
            raise
        log.exception("could not write audit event %s", row)
        return None
    log.info("audit: %(actor)s %(action)s %(target)s %(detail)s", row)
    return event


def event_rows(actor: str, action: str, events: list[tuple[str, str]]) -> list[dict[str, object]]:
    """Rows of :class:`AuditEvent` (``ts_ms``, ``actor``, ``action``, ``target``, ``detail``), one per
    ``(target, detail)`` pair, all by ``actor`` with ``action`` and the same time stamp, cleaned as
    in :func:`record`: for a bulk insert inside the transaction of the change they audit."""
    ts = now_ms()
    return [{"ts_ms": ts, "actor": _clean(actor, MAX_ACTOR) or "?", "action": _clean(action, MAX_ACTION),
             "target": _clean(target, MAX_TARGET), "detail": _clean(detail, MAX_DETAIL)} for target, detail in events]


def amend(event: AuditEvent, detail: str) -> None:
    """Replace the ``detail`` of ``event`` (e.g. with the outcome of a broker step that followed
    the committed change). Errors are logged, not raised."""
    try:
        AuditEvent.update(detail=_clean(detail, MAX_DETAIL)).where(AuditEvent.id == event.id).execute()
    except Exception:
        log.exception("could not amend audit event %s", event.id)


def cli_actor() -> str:
    """The actor for admin CLI commands: ``"cli:<os user>"`` (``"cli:?"`` when it cannot be told)."""
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no USER/LOGNAME and no passwd entry (e.g. some containers)
        return "cli:?"


@dataclass(frozen=True)
class AuditPage:
    """One page of the audit log, newest first.

    ``rows`` are the events on this page; ``total`` is how many events match the filter overall.
    """

    rows: list[AuditEvent]
    total: int


def query(page: int = 1, per_page: int = 50, action: str | None = None) -> AuditPage:
    """Events newest first, ``per_page`` per page (``page`` counts from 1), optionally one action only.

    Raises:
        ValueError: when ``page`` < 1 or ``per_page`` < 1.
    """
    if page < 1 or per_page < 1:
        raise ValueError("page and per_page start at 1")
    q = AuditEvent.select()
    if action:
        q = q.where(AuditEvent.action == action)
    total = q.count()
    rows = list(q.order_by(AuditEvent.ts_ms.desc(), AuditEvent.id.desc()).paginate(page, per_page))
    return AuditPage(rows=rows, total=total)


def actions() -> list[str]:
    """Distinct actions present in the log, sorted (for the filter)."""
    q = AuditEvent.select(AuditEvent.action).distinct().order_by(AuditEvent.action)
    return [r.action for r in q]
