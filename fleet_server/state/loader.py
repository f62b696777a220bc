"""Reading the latest state of every device from the database, once at start (shared-subscription
workers get no retained messages, so the database — not the broker — is where state comes from
after a restart): the devices table, each device's newest sample, reject counters, newest error
and the start of its current status."""

from __future__ import annotations

import logging

from peewee import fn

from fleet_server.state.cache import DeviceView, LatestError
from fleet_server.store import logs as log_store
from fleet_server.store.history.availability import transitions_since
from fleet_server.store.models import Device, RejectCount, Sample
from fleet_server.store.rows import sample_to_telemetry
from shared import schemas
from shared.clock import now_ms

log = logging.getLogger("clawfleet.state")


def load_views() -> dict[str, DeviceView]:
    """Every device's view (device id -> :class:`DeviceView`) as the database has it now."""
    latest = {row.device: row
              for row in Sample.select(Sample.device, fn.MAX(Sample.ts).alias("ts")).group_by(Sample.device)}
    rejects: dict[str, dict[str, int]] = {}
    for device, reason, count in RejectCount.select(RejectCount.device, RejectCount.reason,
                                                    RejectCount.count).tuples():
        rejects.setdefault(device, {})[reason] = count
    since = transitions_since()
    now = now_ms()
    views = {}
    for dev in Device.select():
        tel = None
        if dev.id in latest:
            try:
                s = Sample.get_or_none((Sample.device == dev.id) & (Sample.ts == latest[dev.id].ts))
                tel = sample_to_telemetry(s) if s else None
            except (ValueError, OverflowError, TypeError) as exc:  # stored before the schema had bounds
                log.warning("ignoring the stored sample of %s that is out of bounds: %s", dev.id,
                            str(exc).replace("\n", " ")[:300])
        meta = None
        if dev.meta_json:
            try:
                meta = schemas.Meta.model_validate_json(dev.meta_json)
            except ValueError:
                meta = None
        err = log_store.latest_error(dev.id)  # never an OpenClaw CLI hint line
        heard = min(dev.last_seen_ms, now) if dev.last_seen_ms is not None else None  # never in the future
        views[dev.id] = DeviceView(
            device_id=dev.id, name=dev.name, status=dev.status, status_reason=dev.status_reason,
            status_ms=dev.status_ms, last_seen_ms=dev.last_seen_ms, tags=dev.tags, key_hint=dev.key_hint,
            created_ms=dev.created_ms, revoked_ms=dev.revoked_ms, telemetry=tel, meta=meta,
            rejects=rejects.get(dev.id, {}), status_since_ms=since.get(dev.id, dev.status_ms), heard_ms=heard,
            latest_error=LatestError(err.ts, err.level, err.subsystem, err.message) if err else None)
    return views
