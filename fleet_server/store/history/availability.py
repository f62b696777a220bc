"""Availability history from status events: periods with durations, uptime, and recording a
status change the server decided itself (stale device, data resumed).

A :class:`StatusEvent` row is a transition: the device is in ``state`` from ``ts`` until the next
event. Timestamps are epoch ms UTC.
"""

from __future__ import annotations

from dataclasses import dataclass

from fleet_server.store.models import Device, StatusEvent


@dataclass(frozen=True)
class Period:
    """The device was in ``state`` from ``start_ms`` to ``end_ms`` (None: still is)."""

    state: str
    start_ms: int
    end_ms: int | None
    reason: str | None

    def duration_ms(self, now_ms: int) -> int:
        """Length in ms (up to ``now_ms`` while still ongoing)."""
        return (self.end_ms if self.end_ms is not None else now_ms) - self.start_ms


def status_periods(device_id: str, start_ms: int, end_ms: int) -> list[Period]:
    """Periods overlapping ``[start_ms, end_ms)``, oldest first, clipped to the window start.

    The state at ``start_ms`` comes from the newest event before it; time before the device's first
    event is unknown and not covered by any period.
    """
    before = (StatusEvent.select().where((StatusEvent.device == device_id) & (StatusEvent.ts < start_ms))
              .order_by(StatusEvent.ts.desc(), StatusEvent.id.desc()).first())
    events = list(StatusEvent.select().where((StatusEvent.device == device_id) & (StatusEvent.ts >= start_ms)
                                             & (StatusEvent.ts < end_ms))
                  .order_by(StatusEvent.ts, StatusEvent.id))
    if before is not None:
        events.insert(0, before)
    periods: list[Period] = []
    for i, ev in enumerate(events):
        nxt = events[i + 1].ts if i + 1 < len(events) else None
        if periods and periods[-1].state == ev.state and periods[-1].end_ms == ev.ts:
            continue  # not a transition (should not happen; events are transitions)
        periods.append(Period(ev.state, max(ev.ts, start_ms), nxt, ev.reason))
    return periods


def uptime_pct(periods: list[Period], start_ms: int, end_ms: int) -> float | None:
    """Percent (0-100) of the known time in ``[start_ms, end_ms)`` the device was ``online``.

    None when nothing is known about the window (no period overlaps it).
    """
    return uptime(periods, start_ms, end_ms)[0]


def uptime(periods: list[Period], start_ms: int, end_ms: int) -> tuple[float | None, int]:
    """``(percent online of the known time, known time in ms)`` in ``[start_ms, end_ms)``: known time
    is shorter than the window for a device younger than it (before its first event nothing is known)."""
    known = online = 0
    for p in periods:
        lo, hi = max(p.start_ms, start_ms), min(p.end_ms if p.end_ms is not None else end_ms, end_ms)
        if hi <= lo:
            continue
        known += hi - lo
        if p.state == "online":
            online += hi - lo
    return (None if known == 0 else 100.0 * online / known), known


def record_status(device_id: str, state: str, reason: str | None, ts_ms: int) -> bool:
    """Record a status the server decided (e.g. stale): a :class:`StatusEvent` plus the devices row.

    Returns False (and changes nothing) when the device is gone or already in that state.
    """
    dev = Device.get_or_none(Device.id == device_id)
    if dev is None or dev.status == state:
        return False
    StatusEvent.create(device=device_id, ts=ts_ms, state=state, reason=reason)
    Device.update(status=state, status_reason=reason, status_ms=ts_ms).where(Device.id == device_id).execute()
    return True


def transitions_since(device_ids: list[str] | None = None) -> dict[str, int]:
    """``{device: ts of its newest status event}`` — when each device's current status began."""
    from peewee import fn

    q = StatusEvent.select(StatusEvent.device, fn.MAX(StatusEvent.ts)).group_by(StatusEvent.device)
    if device_ids is not None:
        q = q.where(StatusEvent.device.in_(device_ids))
    return {d: int(ts) for d, ts in q.tuples()}
