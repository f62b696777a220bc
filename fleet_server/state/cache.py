"""The latest-state cache: every device's :class:`DeviceView`, with a change counter.

Its writers: the loader fills it once at start (:mod:`fleet_server.state.loader`); after that
ingest applies each committed batch (:meth:`FleetState.upsert_many`, :meth:`FleetState.note_usage`,
:meth:`FleetState.count_reject`), the registry poll applies device changes made by the CLI
(:mod:`fleet_server.state.registry`), and device actions remove deleted devices. Readers
(dashboard, API, jobs) use :meth:`FleetState.snapshot`, :meth:`~FleetState.views`,
:meth:`~FleetState.get`, :attr:`~FleetState.version` and :meth:`~FleetState.changes_since`.
Token sums are not kept here: every view reads them from :mod:`fleet_server.store.usage.sums`, and
:attr:`FleetState.usage_version` tells when they may have changed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from shared import schemas
from shared.clock import now_ms


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
    usage_ms: int | None = None
    """When the server last stored token usage of this device (server clock, epoch ms)."""

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
        self.version = 0
        self.usage_version = 0
        """Increases whenever stored token usage changed (:meth:`note_usage`): a key for cached sums."""
        self._changed: dict[str, int] = {}  # device id -> the version of its latest change
        self._removed_version = 0  # the version of the latest removal or full reload
        self.registry_lock = threading.RLock()
        """Held by whoever changes the devices table and then this cache (device actions, the
        registry sync), so a sync never undoes a change that is half-way through."""

    def load_from_db(self) -> None:
        """Replace the cache with the devices table's state (:func:`fleet_server.state.loader.load_views`).
        Call once, before ingest starts: later changes come from ingest and the registry poll."""
        from fleet_server.state.loader import load_views

        self.replace_all(load_views())

    def replace_all(self, views: dict[str, DeviceView]) -> None:
        """Install ``views`` (device id -> view) as the whole cache; readers redraw everything."""
        with self._lock:
            self._devices = dict(views)
            self.version += 1
            self._removed_version = self.version

    def note_usage(self, device_ids: Iterable[str] | None) -> None:
        """Say that token usage of these devices was stored (None: of every device, e.g. after
        re-pricing), so views that show token sums re-read them: bumps :attr:`usage_version` and,
        for each known device, its :attr:`DeviceView.usage_ms` (a changed view redraws its row)."""
        now = now_ms()
        with self._lock:
            ids = list(self._devices) if device_ids is None else [d for d in device_ids if d in self._devices]
            self.usage_version += 1
            self.version += 1
            for device_id in ids:
                self._devices[device_id] = replace(self._devices[device_id], usage_ms=now)
                self._changed[device_id] = self.version

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
        """Forget a device (after delete); ``drop_usage``: its token usage was purged too."""
        with self._lock:
            self._devices.pop(device_id, None)
            self._changed.pop(device_id, None)
            self.version += 1
            if drop_usage:
                self.usage_version += 1
            self._removed_version = self.version

    def device_ids(self) -> set[str]:
        """The ids of the cached devices."""
        with self._lock:
            return set(self._devices)

    def apply_registry(self, rows: Iterable[tuple], cached: set[str]) -> list[str]:
        """Bring the cache in line with the devices table's registry and status columns (``rows``:
        tuples in :data:`fleet_server.state.registry.REGISTRY_COLUMNS` order, read after ``cached``
        — the ids cached before the read — was taken, so a device cached since is not dropped).

        Adds new devices, applies name, tags, key hint and revocation changes, takes status and
        last-seen values that are newer than the cached ones, and drops cached devices that are gone.
        Returns the sorted ids whose registry fields changed, or that were added or removed.
        """
        rows = list(rows)
        changed: list[str] = []
        touched: list[str] = []
        gone = cached - {r[0] for r in rows}
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
                if (cur.name, cur.tags, cur.key_hint, cur.created_ms, cur.revoked_ms) != tuple(row[1:6]):
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
            changed += gone
            if changed or touched:
                self.version += 1
                for device_id in {*changed, *touched} - gone:
                    self._changed[device_id] = self.version
                if gone:
                    self._removed_version = self.version
                    self.usage_version += 1  # a device deleted elsewhere may have taken its usage along
        return sorted(changed)
