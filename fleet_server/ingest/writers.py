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

from fleet_server.alerts.silences import device_snooze
from fleet_server.ingest.activity import write_activity, write_versions
from fleet_server.ingest.messages import CacheChange, Received
from fleet_server.state import FleetState, LatestError
from fleet_server.store import bulk
from fleet_server.store.bulk import CHUNK
from fleet_server.store.history.receive_clock import stamp_for_write
from fleet_server.store.logs import insert_logs, is_hint
from fleet_server.store.models import Device, Sample, StatusEvent
from fleet_server.store.rows import SAMPLE_COLUMNS, meta_json, telemetry_values
from fleet_server.store.usage.ledger import insert_usage
from shared.schemas import Telemetry
from shared.topics import Channel

log = logging.getLogger("clawfleet.ingest")

_SAMPLE_COLUMNS = (*SAMPLE_COLUMNS, "received_ms")


def write_telemetry(items: list[Received], state: FleetState) -> CacheChange:
    """Store samples with one prepared INSERT (a repeated ``(device, ts)`` is ignored), stamped with
    the receive time the rollup job follows; the cache keeps each device's newest."""
    change = CacheChange(stored={"telemetry": len(items)})
    received = stamp_for_write()
    bulk.insert_ignore(Sample, _SAMPLE_COLUMNS, [(*telemetry_values(i.payload), received) for i in items])
    newest: dict[str, tuple[Telemetry, int]] = {}  # device -> (newest sample of the batch, heard ms)
    for i in items:
        p, cur = i.payload, newest.get(i.device_id)
        newest[i.device_id] = (p, i.heard_ms) if cur is None else (p if p.ts >= cur[0].ts else cur[0],
                                                                     max(cur[1], i.heard_ms))
    for device_id, (p, heard) in newest.items():
        view = state.get(device_id)
        if view is None or view.telemetry is None or p.ts >= view.telemetry.ts:
            change.set(device_id, telemetry=p, last_seen_ms=heard)
        else:
            change.set(device_id, last_seen_ms=heard)
    return change


def write_status(items: list[Received], state: FleetState) -> CacheChange:
    """Apply availability changes in the order the server received them.

    The time of a change is the server's receive time; for a retained message the broker replays
    on subscribe (sent at an unknown earlier time) it is the earlier of the device's timestamp and
    the receive time, so a replay never undoes what the server learnt since. A last will is
    always current (the broker sends it when it loses the device). A change older than the
    device's current status is ignored; a repeated state changes nothing ("status since" stays).
    The devices' current status is read with one SELECT per batch; events and status updates are
    written with one statement each.
    """
    change = CacheChange(stored={"status": len(items)})
    current: dict[str, tuple[str, int | None]] = {}  # device -> (status, status_ms)
    ids = list({i.device_id for i in items})
    for k in range(0, len(ids), CHUNK):
        q = Device.select(Device.id, Device.status, Device.status_ms).where(Device.id.in_(ids[k:k + CHUNK]))
        current.update((d, (st, ms)) for d, st, ms in q.tuples())
    events: list[tuple] = []
    final: dict[str, tuple] = {}  # device -> (status, reason, status_ms) to store
    for i in items:
        p = i.payload
        will = p.state == "offline" and p.reason == "last-will"
        at = i.received_ms if will else i.heard_ms
        if not will:
            change.set(i.device_id, last_seen_ms=i.heard_ms)
        cur = current.get(i.device_id)
        if cur is None or cur[0] == p.state:
            continue
        if cur[1] is not None and at < min(cur[1], i.received_ms):  # (a stored time ahead of the server's
            continue                                                # clock: now)
        events.append((i.device_id, at, p.state, p.reason))
        current[i.device_id] = (p.state, at)
        final[i.device_id] = (p.state, p.reason, at)
        log.info("device %s is %s%s", i.device_id, p.state, f" ({p.reason})" if p.reason else "")
        change.set(i.device_id, status=p.state, status_reason=p.reason, status_ms=at)
    bulk.insert_new(StatusEvent, ("device", "ts", "state", "reason"), events)
    bulk.executemany('UPDATE "device" SET "status" = ?, "status_reason" = ?, "status_ms" = ? WHERE "id" = ?',
                     [(*v, d) for d, v in final.items()])
    return change


def write_meta(items: list[Received], state: FleetState) -> CacheChange:
    """Store what each device is (hostname, OS, versions…) on its devices-table row (the last meta
    of each device in the batch, one statement)."""
    change = CacheChange(stored={"meta": len(items)})
    last: dict[str, Received] = {}
    for i in items:
        last[i.device_id] = i
        change.set(i.device_id, meta=i.payload, last_seen_ms=i.heard_ms)
    bulk.executemany('UPDATE "device" SET "meta_json" = ? WHERE "id" = ?',
                     [(meta_json(i.payload), d) for d, i in last.items()])
    return change


def write_usage(items: list[Received], state: FleetState) -> CacheChange:
    """Store usage records not stored yet, with the hourly and all-time rollups; the change names the
    devices whose usage grew."""
    change = CacheChange(stored={"usage": len(items)})
    rows = [{"device": i.device_id, **r.model_dump()} for i in items for r in i.payload.records]
    conflicts: list[dict] = []
    change.usage = set(insert_usage(rows, conflicts)) if rows else set()
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


def write_snooze(items: list[Received], state: FleetState) -> CacheChange:
    """A device asked (its tray's "Snooze alerts for this machine") for no alert notifications about
    it until a time: a snooze of ``device:<id>`` (capped, audited; see
    :func:`fleet_server.alerts.silences.device_snooze`). The broker let it publish only on its own topic."""
    change = CacheChange(stored={"snooze": len(items)})
    for i in items:
        device_snooze(i.device_id, i.payload.until_ms, i.payload.reason or "", i.received_ms)
        change.set(i.device_id, last_seen_ms=i.heard_ms)
    return change


Write = Callable[[list[Received], FleetState], CacheChange]


def _then(*writes: Write) -> Write:
    """One channel write made of several, run in order on the same messages (their changes merged)."""
    def write(items: list[Received], state: FleetState) -> CacheChange:
        change = CacheChange()
        for w in writes:
            change.merge(w(items, state))
        return change
    return write


WRITERS: dict[Channel, Write] = {
    Channel.STATUS: write_status,
    Channel.META: _then(write_versions, write_meta),  # versions compare with the cached meta first
    Channel.TELEMETRY: write_telemetry,
    Channel.USAGE: _then(write_usage, write_activity),  # sessions, runs, tool calls: fleet_server.ingest.activity
    Channel.LOGS: write_logs,
    Channel.SNOOZE: write_snooze,
}
"""The write of each device channel, in the order a batch applies them."""


def write_last_seen(change: CacheChange) -> None:
    """Move each device's ``last_seen_ms`` forward in the devices table (never back): one prepared
    UPDATE for all devices of the batch."""
    seen = [(f["last_seen_ms"], d) for d, f in change.devices.items() if f.get("last_seen_ms") is not None]
    bulk.executemany('UPDATE "device" SET "last_seen_ms" = ? WHERE "id" = ? AND ("last_seen_ms" IS NULL OR '
                     '"last_seen_ms" < ?)', [(ms, d, ms) for ms, d in seen])
