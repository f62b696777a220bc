"""Which agents get which version when: update policies, update commands, the automatic updates.

The server offers the newest agent version its package folders hold (:class:`~fleet_server.releases.
catalog.Catalog`). Per device, the most specific :class:`~fleet_server.store.models.UpdatePolicy`
applies — ``device:<id>``, then its tags (``tag:<tag>``; ``manual`` wins when tags disagree), then
``fleet`` — and with none, ``manual``:

- ``manual``: an admin sends the update (dashboard button, ``clawfleet-server device update ID``);
- ``auto``: :func:`run_auto_updates` (a background job) sends it to online devices that run an older
  version, inside the policy's maintenance window, at most once per version and device.

An update is a QoS 1 ``update`` command on the device's ``…/cmd`` topic (:class:`shared.schemas.Command`);
the agent fetches, checks and installs the package itself and reports back in ``meta.update``.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fleet_server.store import audit
from fleet_server.store.models import UpdatePolicy, UpdateRequest, db
from shared.packages import version_key
from shared.payloads import MAX_ROLLBACK_S, MIN_ROLLBACK_S
from shared.topics import Channel, check_device_id, device_topic

log = logging.getLogger("clawfleet.releases")

DEFAULT_ROLLBACK_S = 600
MODES = ("manual", "auto")
_WINDOW = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")
RESEND_AFTER_MS = 6 * 3600 * 1000
"""An automatic update is sent again to a device still on the old version after this long (6 h)."""


class UpdateError(ValueError):
    """A policy or update request that cannot be carried out; the message names the field and the fix."""


@dataclass(frozen=True)
class Policy:
    """The policy that applies to a device, and the ``scope`` it came from."""

    scope: str
    mode: str = "manual"
    window: str | None = None
    tz: str = "UTC"
    rollback_after_s: int = DEFAULT_ROLLBACK_S


def now_ms() -> int:
    """Current time, epoch milliseconds UTC."""
    return int(time.time() * 1000)


def check_scope(scope: str) -> str:
    """``fleet``, ``tag:<tag>`` or ``device:<id>``, checked. Raises :class:`UpdateError`."""
    if scope == "fleet":
        return scope
    kind, _, name = scope.partition(":")
    if kind == "tag" and name.strip() and len(name) <= 100:
        return f"tag:{name.strip()}"
    if kind == "device":
        try:
            return f"device:{check_device_id(name)}"
        except ValueError as exc:
            raise UpdateError(str(exc)) from None
    raise UpdateError(f"scope {scope[:60]!r}: say fleet, tag:<tag> or device:<id>")


def in_window(window: str | None, tz: str, at: dt.datetime) -> bool:
    """True when ``at`` (aware) falls inside ``window`` (``HH:MM-HH:MM`` local to ``tz``; may wrap past
    midnight, e.g. ``22:00-04:00``); no window means any time."""
    if not window:
        return True
    m = _WINDOW.fullmatch(window)
    if not m:
        return False
    local = at.astimezone(ZoneInfo(tz))
    minute = local.hour * 60 + local.minute
    start, end = int(m[1]) * 60 + int(m[2]), int(m[3]) * 60 + int(m[4])
    return start <= minute < end if start < end else minute >= start or minute < end


def set_policy(actor: str, scope: str, mode: str, window: str | None = None, tz: str = "UTC",
               rollback_after_s: int = DEFAULT_ROLLBACK_S) -> Policy:
    """Create or replace the policy of ``scope`` (audited as ``update.policy``).

    Raises:
        UpdateError: a bad scope, mode, window, time zone or rollback time (the message says which).
    """
    scope = check_scope(scope)
    if mode not in MODES:
        raise UpdateError(f"mode {mode!r}: say manual or auto")
    if window is not None and not _WINDOW.fullmatch(window):
        raise UpdateError(f"window {window!r}: give HH:MM-HH:MM (24-hour clock), e.g. 02:00-04:00")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise UpdateError(f"time zone {tz!r} is unknown; use an IANA name such as Europe/Berlin or UTC") from None
    if not MIN_ROLLBACK_S <= rollback_after_s <= MAX_ROLLBACK_S:
        raise UpdateError(f"rollback time {rollback_after_s} s: give {MIN_ROLLBACK_S}-{MAX_ROLLBACK_S} seconds")
    with db.atomic():
        UpdatePolicy.replace(scope=scope, mode=mode, window=window, tz=tz, rollback_after_s=rollback_after_s,
                             updated_ms=now_ms()).execute()
        audit.record(actor, "update.policy", scope, f"{mode}" + (f", window {window} {tz}" if window else "")
                     + f", rollback after {rollback_after_s} s")
    return Policy(scope, mode, window, tz, rollback_after_s)


def delete_policy(actor: str, scope: str) -> bool:
    """Remove the policy of ``scope`` (audited); False when there was none."""
    scope = check_scope(scope)
    with db.atomic():
        gone = UpdatePolicy.delete().where(UpdatePolicy.scope == scope).execute() > 0
        if gone:
            audit.record(actor, "update.policy", scope, "removed")
    return gone


def policies() -> list[Policy]:
    """Every stored policy, by scope."""
    return [Policy(p.scope, p.mode, p.window, p.tz, p.rollback_after_s)
            for p in UpdatePolicy.select().order_by(UpdatePolicy.scope)]


def effective_policy(device_id: str, tags: str, table: dict[str, Policy] | None = None) -> Policy:
    """The policy for a device with these comma-separated ``tags`` (see the module docstring)."""
    table = table if table is not None else {p.scope: p for p in policies()}
    if f"device:{device_id}" in table:
        return table[f"device:{device_id}"]
    tagged = [table[f"tag:{t}"] for t in tags.split(",") if t and f"tag:{t}" in table]
    if tagged:
        manual = [p for p in tagged if p.mode == "manual"]
        return (manual or tagged)[0]
    return table.get("fleet", Policy("default"))


def request_update(publish: Callable[[str, bytes], bool], device_id: str, version: str, actor: str,
                   rollback_after_s: int = DEFAULT_ROLLBACK_S) -> None:
    """Send ``update`` to ``version`` to a device (QoS 1 on its ``cmd`` topic), remember it and audit it.

    ``publish(topic, payload)`` returns False when the broker did not take the message.

    Raises:
        UpdateError: the message could not be sent (the broker is down).
    """
    from shared.schemas import Command

    cmd = Command(ts=now_ms(), command="update", version=version, rollback_after_s=rollback_after_s)
    if not publish(device_topic(device_id, Channel.CMD), cmd.model_dump_json(exclude_none=True).encode()):
        raise UpdateError(f"the broker did not take the update command for {device_id}; try again")
    with db.atomic():
        UpdateRequest.replace(device=device_id, version=version, requested_ms=now_ms(), actor=actor).execute()
        audit.record(actor, "device.update", device_id, f"to {version}, rollback after {rollback_after_s} s")
    log.info("asked %s to update to %s (%s)", device_id, version, actor)


def last_requests(device_ids: Iterable[str] | None = None) -> dict[str, UpdateRequest]:
    """The last update sent to each device (all devices, or those named)."""
    q = UpdateRequest.select()
    if device_ids is not None:
        q = q.where(UpdateRequest.device.in_(list(device_ids)))
    return {r.device: r for r in q}


@dataclass(frozen=True)
class Candidate:
    """What the automatic updater needs of a device: id, tags, online?, its agent version."""

    device_id: str
    tags: str
    online: bool
    agent_version: str | None


def due_auto_updates(devices: Iterable[Candidate], offered: str | None, at: dt.datetime,
                     sent: dict[str, UpdateRequest], table: dict[str, Policy]) -> list[tuple[str, Policy]]:
    """The devices to update now: online, on an older version than ``offered``, under an ``auto`` policy
    whose window is open, and not sent this version within :data:`RESEND_AFTER_MS`."""
    if not offered:
        return []
    due = []
    stamp = int(at.timestamp() * 1000)
    for d in devices:
        if not d.online or not d.agent_version or version_key(d.agent_version) >= version_key(offered):
            continue
        policy = effective_policy(d.device_id, d.tags, table)
        if policy.mode != "auto" or not in_window(policy.window, policy.tz, at):
            continue
        last = sent.get(d.device_id)
        if last is not None and last.version == offered and stamp - last.requested_ms < RESEND_AFTER_MS:
            continue
        due.append((d.device_id, policy))
    return due


def run_auto_updates(devices: Callable[[], list[Candidate]], offered: Callable[[], str | None],
                     publish: Callable[[str, bytes], bool]) -> int:
    """One pass of the automatic updater (the server runs it every minute). Returns how many were sent."""
    table = {p.scope: p for p in policies()}
    if not any(p.mode == "auto" for p in table.values()):
        return 0
    version = offered()
    due = due_auto_updates(devices(), version, dt.datetime.now(dt.timezone.utc), last_requests(), table)
    for device_id, policy in due:
        try:
            request_update(publish, device_id, version or "", "auto", policy.rollback_after_s)
        except UpdateError as exc:
            log.warning("automatic update of %s: %s", device_id, exc)
    return len(due)
