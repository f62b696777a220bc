"""What a per-device rule sees: pure functions over one :class:`fleet_server.state.DeviceView`.

Each returns an :class:`Obs`: ``active`` True (the condition holds), False (it does not: a pending
incident is dropped, a firing one resolves) or None (no data, or inside the hysteresis band: keep
the current state). ``since_ms`` is when the condition began when the data says so (a device's
status change), else None (the engine then counts from the first time it saw it).
"""

from __future__ import annotations

from dataclasses import dataclass

from fleet_server.alerts.rules import METRICS, RuleDef
from fleet_server.state import DeviceView

PLANNED_STATES = ("shutdown", "sleeping")
STALE_TELEMETRY_MS = 10 * 60_000
"""A sample older than this (server clock vs. the sample's own time) is not used for metric rules."""


@dataclass(frozen=True)
class Obs:
    """One observation: see the module docstring. ``value`` in the rule's unit (offline/gateway:
    seconds the condition has held), ``text`` a short phrase for messages."""

    active: bool | None
    value: float | None = None
    since_ms: int | None = None
    text: str = ""


CLEAR = Obs(False)
UNKNOWN = Obs(None)


def offline(rule: RuleDef, v: DeviceView, now: int, firing: bool) -> Obs:
    """Revoked, offline (lost connection, last will, stopped reporting), or — only with
    ``include_planned`` — shut down or asleep. Paused and never-seen devices do not count."""
    if v.revoked_ms:
        return Obs(True, (now - v.revoked_ms) / 1000, v.revoked_ms, "revoked")
    status = v.status
    if status == "offline" or (status in PLANNED_STATES and rule.params.include_planned):
        since = v.status_since_ms or v.status_ms or now
        why = f" ({v.status_reason})" if v.status_reason else ""
        word = "shut down" if status == "shutdown" else status
        return Obs(True, (now - since) / 1000, since, f"{word}{why}")
    if not firing:
        return CLEAR
    return Obs(False, None, None, "paused" if status == "paused" else status)


def metric(rule: RuleDef, v: DeviceView, now: int, firing: bool) -> Obs:
    """The newest sample's value against ``value`` (to fire) and ``clear`` (to resolve). No sample,
    a device not online, or a sample older than :data:`STALE_TELEMETRY_MS`: unknown."""
    t = v.telemetry
    if t is None or v.status != "online" or v.revoked_ms or now - min(t.ts, v.heard_ms or t.ts) > STALE_TELEMETRY_MS:
        return UNKNOWN
    p = rule.params
    field = METRICS[p.metric][0]
    if field == "load1":
        if t.load_avg is None:
            return UNKNOWN
        value = t.load_avg[0]
    else:
        value = getattr(t, field)
    above = p.op == "above"
    breach = value > p.value if above else value < p.value
    if breach:
        return Obs(True, value, None, f"{p.metric} {_num(value)}{_unit(p.metric)}")
    if not firing:
        return CLEAR
    cleared = value <= p.clear_value if above else value >= p.clear_value
    return Obs(False if cleared else None, value, None, f"{p.metric} {_num(value)}{_unit(p.metric)}")


def gateway(rule: RuleDef, v: DeviceView, now: int, firing: bool) -> Obs:
    """The OpenClaw gateway is installed but not answering (only while the device is online and
    reporting; elsewhere unknown)."""
    t = v.telemetry
    if t is None or t.openclaw is None or not t.openclaw.installed or v.status != "online" or v.revoked_ms:
        return UNKNOWN if firing else CLEAR
    if now - min(t.ts, v.heard_ms or t.ts) > STALE_TELEMETRY_MS:
        return UNKNOWN
    if not t.openclaw.up:
        return Obs(True, None, None, "OpenClaw gateway not answering")
    return Obs(False, None, None, "OpenClaw gateway answering") if firing else CLEAR


CHECKS = {"offline": offline, "metric": metric, "gateway": gateway}
"""Per-device check of each device kind."""


def _num(value: float) -> str:
    if abs(value) >= 1e6:
        return f"{value / 1e6:.1f}M"
    if abs(value) >= 1e4:
        return f"{value / 1e3:.1f}k"
    return f"{value:.1f}" if value != int(value) else f"{value:.0f}"


def _unit(metric_name: str) -> str:
    unit = METRICS[metric_name][1]
    return f" {unit}" if unit else ""
