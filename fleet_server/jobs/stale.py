"""Stale devices: an ``online`` device the server has heard no telemetry from for 3 × its sample
interval is marked offline ("no data for 3 intervals"), and back online when data resumes.

This catches what the broker cannot: a connected agent that stopped publishing (hung, SIGSTOPped),
a last will that was lost (broker crash, server down when it fired), a client with keepalive 0.
Times are the server's clock (:attr:`DeviceView.heard_ms`), never the device's, so a device whose
clock runs ahead cannot stay "online" for good. Runs every :data:`CHECK_S` seconds and once at
start-up (heard times then come from each device's newest stored sample).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from fleet_server.state import DeviceView, FleetState, now_ms
from fleet_server.store.history.availability import record_status

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
    """Decides stale / resumed for every cached device and records the change (DB + cache).

    Args:
        state: the fleet cache (read for heard times, updated with the new status).
        clock: epoch-ms clock (tests pass their own).
    """

    def __init__(self, state: FleetState, clock: Callable[[], int] = now_ms) -> None:
        self.state = state
        self.clock = clock
        self.started_ms = clock()

    def check(self) -> list[tuple[str, str]]:
        """One pass; returns ``[(device_id, new_state), …]`` that changed."""
        now = self.clock()
        changed = []
        for v in self.state.views():  # unsorted: no sort of the whole fleet every 2 s
            if v.revoked_ms:
                continue
            heard = v.heard_ms if v.heard_ms is not None else min(v.last_seen_ms or self.started_ms, self.started_ms)
            if v.status == "online" and now - heard > grace_ms(v):
                new, reason = "offline", STALE_REASON
            elif (v.status == "offline" and v.status_reason == STALE_REASON and v.heard_ms is not None
                  and v.heard_ms > (v.status_ms or 0)):
                new, reason = "online", RESUMED_REASON
            else:
                continue
            if record_status(v.device_id, new, reason, now):
                self.state.upsert(v.device_id, status=new, status_reason=reason, status_ms=now, status_since_ms=now)
                log.info("device %s is %s (%s; last data %.0f s ago)", v.device_id, new, reason, (now - heard) / 1000)
                changed.append((v.device_id, new))
        return changed
