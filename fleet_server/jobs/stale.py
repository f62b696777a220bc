"""Stale devices: an ``online`` device the server has heard no telemetry from for 3 × its sample
interval is marked offline ("no data for 3 intervals"), and back online when data resumes.

This catches what the broker cannot: a connected agent that stopped publishing (hung, SIGSTOPped),
a last will that was lost (broker crash, server down when it fired), a client with keepalive 0.
Times are the server's clock (:attr:`DeviceView.heard_ms`), never the device's, so a device whose
clock runs ahead cannot stay "online" for good. Runs every :data:`CHECK_S` seconds and once at
start-up (heard times then come from each device's newest stored sample).

A pass does not scan the fleet: it keeps each online device's deadline (heard + grace) in a heap
and looks only at the devices whose deadline passed and those the cache says changed since the
last pass (:meth:`FleetState.changes_since`: new data, a status message, a new device). While
ingest has no broker connection nobody can be heard, so no device is marked stale (the dashboard
says the server lost its broker instead); once it is back, every device gets its grace again from
the moment of reconnection.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable

from fleet_server.state import DeviceView, FleetState
from fleet_server.store.history.availability import record_status
from shared.clock import now_ms

log = logging.getLogger("clawfleet.jobs.stale")

STALE_REASON = "no data for 3 intervals"
RESUMED_REASON = "data resumed"
GRACE_INTERVALS = 3
DEFAULT_INTERVAL_S = 30.0
"""Assumed sample interval of an agent that does not report ``interval_s`` in its meta."""
CHECK_S = 2.0


def grace_ms(view: DeviceView) -> int:
    """How long (ms) a device may be silent before it is stale: 3 × its sample interval."""
    interval = (view.meta.interval_s if view.meta is not None and view.meta.interval_s else None) or DEFAULT_INTERVAL_S
    return int(GRACE_INTERVALS * interval * 1000)


class StaleDetector:
    """Decides stale / resumed for the cached devices and records the change (DB + cache).

    Args:
        state: the fleet cache (read for heard times, updated with the new status).
        clock: epoch-ms clock (tests pass their own).
        broker_connected: whether ingest has its broker connection now; None: always (no broker).
    """

    def __init__(self, state: FleetState, clock: Callable[[], int] = now_ms,
                 broker_connected: Callable[[], bool] | None = None) -> None:
        self.state = state
        self.clock = clock
        self.started_ms = clock()
        self._connected = broker_connected
        self._connected_since: int | None = None  # server clock when ingest's connection was (last) seen back
        self._version = -1  # the cache version of the last pass
        self._due: list[tuple[int, str]] = []  # heap of (deadline ms, device id)
        self._deadline: dict[str, int] = {}  # device id -> its earliest deadline in the heap

    def check(self, force: bool = False) -> list[tuple[str, str]]:
        """One pass; returns ``[(device_id, new_state), …]`` that changed. Without ``force`` nothing
        is decided while the broker is unreachable (``force``: the start-up check, before ingest)."""
        now = self.clock()
        floor = 0
        if self._connected is not None and not force:
            if not self._connected():
                if self._connected_since is not None or self._version < 0:
                    log.warning("ingest has no broker connection: devices are not marked stale until it is back")
                self._connected_since = None
                return []
            if self._connected_since is None:
                self._connected_since = now
            floor = self._connected_since
        version, changed = self.state.changes_since(self._version)
        self._version = version
        if changed is None:  # first pass, a device removed, the cache reloaded: look at every device
            self._due.clear()
            self._deadline.clear()
            views = self.state.views()  # unsorted: no sort of the whole fleet
        else:
            while self._due and self._due[0][0] < now:
                deadline, device_id = heapq.heappop(self._due)
                if self._deadline.get(device_id) == deadline:
                    del self._deadline[device_id]
                    changed.add(device_id)
            views = [v for v in map(self.state.get, changed) if v is not None]
        out = []
        for v in views:
            new = self._decide(v, now, floor)
            if new is not None:
                out.append((v.device_id, new))
        return out

    def _decide(self, v: DeviceView, now: int, floor: int) -> str | None:
        """Mark one device stale or resumed when due (returns its new state), else keep its deadline."""
        if v.revoked_ms:
            return None
        heard = v.heard_ms if v.heard_ms is not None else min(v.last_seen_ms or self.started_ms, self.started_ms)
        if v.status == "online":
            deadline = max(heard, floor) + grace_ms(v)
            if now <= deadline:
                self._schedule(v.device_id, deadline)
                return None
            new, reason = "offline", STALE_REASON
        elif (v.status == "offline" and v.status_reason == STALE_REASON and v.heard_ms is not None
              and v.heard_ms > (v.status_ms or 0)):
            new, reason = "online", RESUMED_REASON
        else:
            return None
        if not record_status(v.device_id, new, reason, now):
            return None
        self.state.upsert(v.device_id, status=new, status_reason=reason, status_ms=now, status_since_ms=now)
        log.info("device %s is %s (%s; last data %.0f s ago)", v.device_id, new, reason, (now - heard) / 1000)
        if new == "online":
            self._schedule(v.device_id, now + grace_ms(v))
        return new

    def _schedule(self, device_id: str, deadline: int) -> None:
        cur = self._deadline.get(device_id)
        if cur is None or deadline < cur:  # a later deadline is found when the earlier one is looked at
            self._deadline[device_id] = deadline
            heapq.heappush(self._due, (deadline, device_id))
