"""Per-channel writes: each takes the batch's messages of one channel (in arrival order), writes
them inside the writer's open transaction and returns the :class:`CacheChange` to apply once the
transaction has committed. They read the cache, never change it.

Inserts are idempotent: samples on ``(device, ts)``, usage and log records on ``(device, id)``
(a repeated id with different content is counted as ``duplicate_conflict``). Status changes are
ordered by the server's receive time, never by the device's clock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from fleet_server.ingest.messages import CacheChange, Received
from fleet_server.state import FleetState, LatestError, meta_json, telemetry_row
from fleet_server.store.logs import insert_logs, is_hint
from fleet_server.store.models import Device, Sample, StatusEvent
from fleet_server.store.records import CHUNK
from fleet_server.store.usage import insert_usage
from shared.topics import Channel

log = logging.getLogger("clawfleet.ingest")


def write_telemetry(items: list[Received], state: FleetState) -> CacheChange:
    """Store samples (a repeated ``(device, ts)`` is ignored); the cache keeps each device's newest."""
    change = CacheChange(stored={"telemetry": len(items)})
    rows = [telemetry_row(i.payload) for i in items]
    for k in range(0, len(rows), CHUNK):
        Sample.insert_many(rows[k:k + CHUNK]).on_conflict_ignore().execute()
    for i in items:
        p, cur = i.payload, state.get(i.device_id)
        latest = change.devices.get(i.device_id, {}).get("telemetry") or (cur.telemetry if cur else None)
        if latest is None or p.ts >= latest.ts:
            change.set(i.device_id, telemetry=p)
        change.set(i.device_id, last_seen_ms=i.heard_ms)
    return change


def write_status(items: list[Received], state: FleetState) -> CacheChange:
    """Apply availability changes in the order the server received them.

    The time of a change is the server's receive time; for a retained message the broker replays
    on subscribe (sent at an unknown earlier time) it is the earlier of the device's timestamp and
    the receive time, so a replay never undoes what the server learnt since. A last will is
    always current (the broker sends it when it loses the device). A change older than the
    device's current status is ignored; a repeated state changes nothing ("status since" stays).
    """
    change = CacheChange(stored={"status": len(items)})
    for i in items:
        p = i.payload
        will = p.state == "offline" and p.reason == "last-will"
        at = i.received_ms if will else i.heard_ms
        if not will:
            change.set(i.device_id, last_seen_ms=i.heard_ms)
        dev = Device.get_or_none(Device.id == i.device_id)
        if dev is None or dev.status == p.state:
            continue
        if dev.status_ms is not None and at < min(dev.status_ms, i.received_ms):  # (a stored time ahead of
            continue                                                              # the server's clock: now)
        StatusEvent.create(device=i.device_id, ts=at, state=p.state, reason=p.reason)
        Device.update(status=p.state, status_reason=p.reason, status_ms=at).where(Device.id == i.device_id).execute()
        log.info("device %s is %s%s", i.device_id, p.state, f" ({p.reason})" if p.reason else "")
        change.set(i.device_id, status=p.state, status_reason=p.reason, status_ms=at)
    return change


def write_meta(items: list[Received], state: FleetState) -> CacheChange:
    """Store what each device is (hostname, OS, versions…) on its devices-table row."""
    change = CacheChange(stored={"meta": len(items)})
    for i in items:
        Device.update(meta_json=meta_json(i.payload)).where(Device.id == i.device_id).execute()
        change.set(i.device_id, meta=i.payload, last_seen_ms=i.heard_ms)
    return change


def write_usage(items: list[Received], state: FleetState) -> CacheChange:
    """Store usage records not stored yet, with the hourly rollup; the change carries the added sums."""
    change = CacheChange(stored={"usage": len(items)})
    rows = [{"device": i.device_id, **r.model_dump()} for i in items for r in i.payload.records]
    conflicts: list[dict] = []
    change.usage = insert_usage(rows, conflicts) if rows else {}
    for row in conflicts:
        change.reject(row["device"], "duplicate_conflict",
                      f"usage record {row['id']} was stored before with different content; the first is kept")
    for i in items:
        change.set(i.device_id, last_seen_ms=i.heard_ms)
    return change


def write_logs(items: list[Received], state: FleetState) -> CacheChange:
    """Store log records not stored yet; the change carries each device's newest error."""
    change = CacheChange(stored={"logs": len(items)})
    rows = [{"device": i.device_id, **r.model_dump()} for i in items for r in i.payload.records]
    conflicts: list[dict] = []
    new = insert_logs(rows, conflicts) if rows else []
    for row in conflicts:
        change.reject(row["device"], "duplicate_conflict",
                      f"log record {row['id']} was stored before with different content; the first is kept")
    for row in new:
        if row["level"] not in ("error", "fatal") or is_hint(row["message"]):  # the reason, not a CLI hint
            continue
        cur = change.devices.get(row["device"], {}).get("latest_error") or getattr(
            state.get(row["device"]), "latest_error", None)
        if cur is None or row["ts"] >= cur.ts:
            change.set(row["device"], latest_error=LatestError(row["ts"], row["level"], row["subsystem"],
                                                               row["message"]))
    for i in items:
        change.set(i.device_id, last_seen_ms=i.heard_ms)
    return change


WRITERS: dict[Channel, Callable[[list[Received], FleetState], CacheChange]] = {
    Channel.STATUS: write_status,
    Channel.META: write_meta,
    Channel.TELEMETRY: write_telemetry,
    Channel.USAGE: write_usage,
    Channel.LOGS: write_logs,
}
"""The write of each device channel, in the order a batch applies them."""


def write_last_seen(change: CacheChange) -> None:
    """Move each device's ``last_seen_ms`` forward in the devices table (never back)."""
    for device_id, fields in change.devices.items():
        seen = fields.get("last_seen_ms")
        if seen is not None:
            Device.update(last_seen_ms=seen).where(
                (Device.id == device_id) & (Device.last_seen_ms.is_null() | (Device.last_seen_ms < seen))).execute()
