"""In-memory latest state of every device, kept by ingest and read by the dashboard.

The overview never scans history: it reads :meth:`FleetState.snapshot`. The cache is
bootstrapped from the database at start (shared-subscription workers get no retained
messages, so the database — not the broker — is where state comes from after a restart).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field, replace

from peewee import fn

from fleet_server.store import logs as log_store
from fleet_server.store.history.availability import transitions_since
from fleet_server.store.models import Device, RejectCount, Sample, UsageHourly
from fleet_server.store.usage import ledger as usage_store
from fleet_server.store.usage.ledger import HOUR_MS, TokenSums
from shared import schemas

log = logging.getLogger("clawfleet.state")

@dataclass(frozen=True)
class DeviceView:
    """What the dashboard shows for one device. Timestamps in epoch ms UTC."""

    device_id: str
    name: str
    status: str = "unknown"  # online | offline | sleeping | shutdown | unknown (revoked: offline, "revoked")
    status_reason: str | None = None
    status_ms: int | None = None
    last_seen_ms: int | None = None
    telemetry: schemas.Telemetry | None = None
    meta: schemas.Meta | None = None
    rejects: dict[str, int] = field(default_factory=dict)
    latest_error: LatestError | None = None
    # registry fields (the devices table), kept in step by :meth:`FleetState.sync_registry`
    tags: str = ""  # comma-separated
    key_hint: str = ""  # last four characters of the API key
    created_ms: int | None = None
    revoked_ms: int | None = None  # set while the device is revoked
    # history (issue 8): when the current status began (a transition, not a re-announcement), and when
    # the server last stored telemetry from the device (server clock; the stale-device check reads it)
    status_since_ms: int | None = None
    heard_ms: int | None = None

    @property
    def display_status(self) -> str:
        """The status pill text: ``"revoked"`` for a revoked device, else :attr:`status`."""
        return "revoked" if self.revoked_ms else self.status


@dataclass(frozen=True)
class LatestError:
    """The newest error-level OpenClaw log record of a device."""

    ts: int
    level: str
    subsystem: str
    message: str


class FleetState:
    """Thread-safe map of device id -> :class:`DeviceView`, with a change counter.

    ``version`` increases on every change, so a view can poll cheaply and redraw only when
    something changed.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._devices: dict[str, DeviceView] = {}
        self._usage_total: dict[str, TokenSums] = {}
        self._usage_hours: dict[str, dict[int, TokenSums]] = {}
        self.version = 0
        self._changed: dict[str, int] = {}  # device id -> the version of its latest change
        self._removed_version = 0  # the version of the latest removal or full reload
        self.registry_lock = threading.RLock()
        """Held by whoever changes the devices table and then this cache (device actions, the
        registry sync), so a sync never undoes a change that is half-way through."""

    def load_from_db(self) -> None:
        """Fill the cache from the devices table and each device's newest sample."""
        latest = {
            row.device: row
            for row in Sample.select(Sample.device, fn.MAX(Sample.ts).alias("ts")).group_by(Sample.device)
        }
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
            rejects = {r.reason: r.count for r in RejectCount.select().where(RejectCount.device == dev.id)}
            err = log_store.latest_error(dev.id)  # never an OpenClaw CLI hint line
            views[dev.id] = replace(
                _registry_view(dev), telemetry=tel, meta=meta, rejects=rejects,
                latest_error=LatestError(err.ts, err.level, err.subsystem, err.message) if err else None,
            )
        since = transitions_since()
        now = now_ms()
        for device_id, v in views.items():  # heard: the newest sample's time, never in the future
            heard = min(v.last_seen_ms, now) if v.last_seen_ms is not None else None
            views[device_id] = replace(v, status_since_ms=since.get(device_id, v.status_ms), heard_ms=heard)
        totals = usage_store.totals_by_device()
        hours = usage_store.hours_since(now_ms() - 49 * HOUR_MS)
        with self._lock:
            self._devices = views
            self._usage_total = totals
            self._usage_hours = hours
            self.version += 1
            self._removed_version = self.version

    def add_usage(self, added: dict[str, dict[int, TokenSums]]) -> None:
        """Add newly stored usage (``{device: {hour_ms: sums}}``) to the cached totals."""
        if not added:
            return
        cutoff = now_ms() - 49 * HOUR_MS
        with self._lock:
            for device, hours in added.items():
                total = self._usage_total.setdefault(device, TokenSums())
                cache = self._usage_hours.setdefault(device, {})
                for hour, sums in hours.items():
                    total.add(sums)
                    if hour >= cutoff:
                        cache.setdefault(hour, TokenSums()).add(sums)
                for hour in [h for h in cache if h < cutoff]:
                    del cache[hour]
            self.version += 1
            for device in added:
                self._changed[device] = self.version

    def usage(self, device_id: str | None, start_ms: int = 0, end_ms: int | None = None) -> TokenSums:
        """Token sums of one device (or the whole fleet when None).

        With ``start_ms`` 0 and no ``end_ms``: all time. Otherwise the hours starting in
        ``[start_ms, end_ms)``, which must lie within the last 48 hours (the cached window).
        """
        with self._lock:
            devices = [device_id] if device_id else list(self._usage_total)
            out = TokenSums()
            for d in devices:
                if start_ms == 0 and end_ms is None:
                    out.add(self._usage_total.get(d, TokenSums()))
                else:
                    out.add(usage_store.sum_hours(self._usage_hours.get(d, {}), start_ms, end_ms or 2**62))
            return out

    def snapshot(self) -> list[DeviceView]:
        """All devices, sorted by name."""
        with self._lock:
            return sorted(self._devices.values(), key=lambda d: (d.name, d.device_id))

    def views(self) -> list[DeviceView]:
        """All devices in no particular order (cheaper than :meth:`snapshot` for a full scan)."""
        with self._lock:
            return list(self._devices.values())

    def get(self, device_id: str) -> DeviceView | None:
        """One device, or None."""
        with self._lock:
            return self._devices.get(device_id)

    def upsert(self, device_id: str, name: str | None = None, **changes: object) -> None:
        """Create or update a device's view with the given fields."""
        if name:
            changes["name"] = name
        self.upsert_many({device_id: changes})

    def upsert_many(self, changes: dict[str, dict[str, object]]) -> None:
        """Create or update many devices' views (``{device id: {field: value}}``) under one lock and
        one version step (a name given for a new device defaults to its id)."""
        if not changes:
            return
        now = now_ms()
        with self._lock:
            self.version += 1
            for device_id, fields in changes.items():
                fields = dict(fields)
                cur = self._devices.get(device_id) or DeviceView(device_id=device_id,
                                                                 name=str(fields.get("name") or device_id))
                if not fields.get("name", True):
                    fields.pop("name")
                if "status" in fields and (fields["status"] != cur.status or cur.status_since_ms is None):
                    fields.setdefault("status_since_ms", fields.get("status_ms") or now)  # a transition
                if "last_seen_ms" in fields:
                    fields.setdefault("heard_ms", now)
                self._devices[device_id] = replace(cur, **fields)
                self._changed[device_id] = self.version

    def changes_since(self, version: int) -> tuple[int, set[str] | None]:
        """``(current version, ids of the devices changed after ``version``)``; the set is None when
        a device was removed or the cache reloaded since (the reader should redraw everything)."""
        with self._lock:
            if self._removed_version > version:
                return self.version, None
            if self.version == version:
                return version, set()
            return self.version, {d for d, v in self._changed.items() if v > version}

    def count_reject(self, device_id: str, reason: str) -> None:
        """Add one to a device's reject counter (only for devices in the cache)."""
        with self._lock:
            cur = self._devices.get(device_id)
            if cur is None:
                return
            rejects = dict(cur.rejects)
            rejects[reason] = rejects.get(reason, 0) + 1
            self._devices[device_id] = replace(cur, rejects=rejects)
            self.version += 1
            self._changed[device_id] = self.version

    def remove(self, device_id: str, drop_usage: bool = False) -> None:
        """Forget a device (after delete); with ``drop_usage`` also its cached token sums (data purged)."""
        with self._lock:
            self._devices.pop(device_id, None)
            self._changed.pop(device_id, None)
            if drop_usage:
                self._usage_total.pop(device_id, None)
                self._usage_hours.pop(device_id, None)
            self.version += 1
            self._removed_version = self.version

    def sync_registry(self) -> list[str]:
        """Bring the cache in line with the devices table (changed by the CLI in another process).

        One SELECT of the devices table's registry and status columns, read as plain tuples (10,000
        devices: a few milliseconds, no model object per row): adds new devices, applies name,
        tags, key hint and revocation changes, takes status and last-seen values that are newer
        than the cached ones, and drops devices that are gone (with their token sums when their
        usage rollups are gone too). Returns the sorted ids whose registry fields changed, or
        that were added or removed (ingest must forget those, see ``Ingest.forget_device``).
        """
        changed: list[str] = []
        touched: list[str] = []
        with self.registry_lock:
            with self._lock:
                cached = set(self._devices)  # before the SELECT: a device cached later is in the table
            query = Device.select(*_REGISTRY_COLUMNS)  # raw rows: no model object, no conversion per value
            rows = Device._meta.database.execute_sql(*query.sql()).fetchall()
            gone = cached - {r[0] for r in rows}
            drop = {d for d in gone if not UsageHourly.select().where(UsageHourly.device == d).exists()}
            with self._lock:
                for row in rows:
                    device_id, name, tags, hint, created, revoked, status, reason, status_ms, seen = row
                    cur = self._devices.get(device_id)
                    if cur is None or cur.created_ms not in (None, created):  # new, or deleted + re-added
                        self._devices[device_id] = DeviceView(
                            device_id=device_id, name=name, tags=tags, key_hint=hint, created_ms=created,
                            revoked_ms=revoked, status=status, status_reason=reason, status_ms=status_ms,
                            last_seen_ms=seen)
                        changed.append(device_id)
                        continue
                    new = cur
                    if (cur.name, cur.tags, cur.key_hint, cur.created_ms, cur.revoked_ms) != row[1:6]:
                        new = replace(new, name=name, tags=tags, key_hint=hint, created_ms=created, revoked_ms=revoked)
                        changed.append(device_id)
                    if status_ms is not None and (cur.status_ms is None or status_ms > cur.status_ms):
                        new = replace(new, status=status, status_reason=reason, status_ms=status_ms,
                                      status_since_ms=status_ms if status != cur.status else cur.status_since_ms)
                    if seen is not None and (cur.last_seen_ms or 0) < seen:
                        new = replace(new, last_seen_ms=seen)
                    if new is not cur:
                        self._devices[device_id] = new
                        touched.append(device_id)
                for device_id in gone:
                    self._devices.pop(device_id, None)
                    self._changed.pop(device_id, None)
                    if device_id in drop:
                        self._usage_total.pop(device_id, None)
                        self._usage_hours.pop(device_id, None)
                changed += gone
                if changed or touched:
                    self.version += 1
                    for device_id in {*changed, *touched} - gone:
                        self._changed[device_id] = self.version
                    if gone:
                        self._removed_version = self.version
        return sorted(changed)


def _registry_view(dev: Device) -> DeviceView:
    """A view with the registry and status fields of a devices-table row (nothing else)."""
    return DeviceView(device_id=dev.id, name=dev.name, status=dev.status, status_reason=dev.status_reason,
                      status_ms=dev.status_ms, last_seen_ms=dev.last_seen_ms, tags=dev.tags, key_hint=dev.key_hint,
                      created_ms=dev.created_ms, revoked_ms=dev.revoked_ms)


_REGISTRY_COLUMNS = (Device.id, Device.name, Device.tags, Device.key_hint, Device.created_ms, Device.revoked_ms,
                     Device.status, Device.status_reason, Device.status_ms, Device.last_seen_ms)
"""What :meth:`FleetState.sync_registry` reads, in the order of its tuples."""


def sample_to_telemetry(s: Sample) -> schemas.Telemetry:
    """Rebuild a :class:`shared.schemas.Telemetry` from a stored row."""
    load = (s.load1, s.load5, s.load15) if s.load1 is not None else None
    return schemas.Telemetry(
        device_id=s.device, ts=s.ts, cpu_pct=s.cpu_pct, mem_used_bytes=s.mem_used_bytes,
        mem_total_bytes=s.mem_total_bytes, mem_pct=s.mem_pct, disk_used_bytes=s.disk_used_bytes,
        disk_total_bytes=s.disk_total_bytes, disk_pct=s.disk_pct, swap_pct=s.swap_pct, net_rx_bps=s.net_rx_bps,
        net_tx_bps=s.net_tx_bps, load_avg=load, uptime_s=s.uptime_s,
        openclaw=schemas.OpenClawState(installed=True, up=s.openclaw_up) if s.openclaw_up is not None else None,
    )


def telemetry_row(t: schemas.Telemetry) -> dict:
    """A :class:`Sample` row dict from a telemetry payload."""
    load = t.load_avg or (None, None, None)
    return {
        "device": t.device_id, "ts": t.ts, "cpu_pct": t.cpu_pct, "mem_used_bytes": t.mem_used_bytes,
        "mem_total_bytes": t.mem_total_bytes, "mem_pct": t.mem_pct, "disk_used_bytes": t.disk_used_bytes,
        "disk_total_bytes": t.disk_total_bytes, "disk_pct": t.disk_pct, "swap_pct": t.swap_pct,
        "net_rx_bps": t.net_rx_bps, "net_tx_bps": t.net_tx_bps, "load1": load[0], "load5": load[1],
        "load15": load[2], "uptime_s": t.uptime_s, "openclaw_up": t.openclaw.up if t.openclaw else None,
    }


SAMPLE_COLUMNS = ("device", "ts", "cpu_pct", "mem_used_bytes", "mem_total_bytes", "mem_pct", "disk_used_bytes",
                  "disk_total_bytes", "disk_pct", "swap_pct", "net_rx_bps", "net_tx_bps", "load1", "load5", "load15",
                  "uptime_s", "openclaw_up")
"""The :class:`Sample` columns, in the order of :func:`telemetry_values`."""


def telemetry_values(t: schemas.Telemetry) -> tuple:
    """The :class:`Sample` row of a telemetry payload as a tuple in :data:`SAMPLE_COLUMNS` order
    (the same values as :func:`telemetry_row`, for a prepared bulk INSERT)."""
    load = t.load_avg or (None, None, None)
    return (t.device_id, t.ts, t.cpu_pct, t.mem_used_bytes, t.mem_total_bytes, t.mem_pct, t.disk_used_bytes,
            t.disk_total_bytes, t.disk_pct, t.swap_pct, t.net_rx_bps, t.net_tx_bps, load[0], load[1], load[2],
            t.uptime_s, t.openclaw.up if t.openclaw else None)


def meta_json(meta: schemas.Meta) -> str:
    """Serialise meta for the devices table."""
    return json.dumps(meta.model_dump(mode="json"), separators=(",", ":"))


def now_ms() -> int:
    """Current time in epoch milliseconds UTC."""
    return int(time.time() * 1000)
