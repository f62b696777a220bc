"""How often a rule would have fired over the last 7 days, from the stored history, before it is
saved: the rules editor shows it, ``clawfleet-server alerts rule preview`` prints it.

The rule's own state machine (duration, clear hold, hysteresis) is replayed over:

- offline: the status events (exact);
- metric: 5-minute averages (1-hour averages beyond :data:`FINE_DEVICES` devices in scope);
- gateway: raw samples, so only as far back as raw samples are kept (48 h by default), and only
  up to :data:`FINE_DEVICES` devices;
- budget: each local day (or month) of the window, counting the steps each would have passed;
- error rules: fingerprints first seen in the window / hours over the rate.

Server rules have no stored history to replay.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from peewee import fn

from fleet_server.alerts.budgets import period_bounds
from fleet_server.alerts.errors import ERROR_LEVELS
from fleet_server.alerts.rules import METRICS, RuleDef
from fleet_server.state import DeviceView
from fleet_server.store.history.rollups import FIVE_MIN_MS, HOUR_MS
from fleet_server.store.logs import not_hint
from fleet_server.store.models import LogRecord, Sample, SampleRollup1h, SampleRollup5m, StatusEvent
from fleet_server.store.usage.sums import UsageSums, by_device

DAY_MS = 86_400_000
WINDOW_MS = 7 * DAY_MS
FINE_DEVICES = 200
"""Up to this many devices in scope, metric previews use 5-minute averages and gateway previews raw samples."""


@dataclass
class Preview:
    """What a rule would have done: ``fires`` times over ``subjects`` distinct subjects, firing for
    ``firing_ms`` in total; ``per_day`` fires per UTC day (oldest first, 7 entries); ``examples``
    the latest ``(subject, fired_ms, resolved_ms or None)``; ``note`` what the replay is based on."""

    fires: int = 0
    subjects: int = 0
    firing_ms: int = 0
    per_day: list[int] = field(default_factory=lambda: [0] * 7)
    examples: list[tuple[str, int, int | None]] = field(default_factory=list)
    note: str = ""
    available: bool = True

    def summary(self) -> str:
        """One line, e.g. ``would have fired 3 times on 2 devices in the last 7 days (firing 1 h 5 min)``."""
        from fleet_server.alerts.rules import duration_text

        if not self.available:
            return f"no preview: {self.note}"
        if not self.fires:
            return f"would not have fired in the last 7 days ({self.note})"
        times = "once" if self.fires == 1 else f"{self.fires} times"
        firing = f", firing {duration_text(self.firing_ms / 1000)} in all" if self.firing_ms else ""
        return f"would have fired {times} for {self.subjects} subject(s) in the last 7 days{firing} ({self.note})"


def replay(points: list[tuple[int, object]], cond: Callable[[object, bool], bool | None], for_ms: int, clear_ms: int,
           end_ms: int) -> list[tuple[int, int | None]]:
    """Run the incident state machine over ``points`` (``(ts, value)``, oldest first; a value holds
    until the next point). ``cond(value, firing)`` says active / clear / unknown. Returns the
    ``(fired_ms, resolved_ms or None)`` of each firing."""
    out: list[tuple[int, int | None]] = []
    pending = firing = clear_since = None
    for i, (t, value) in enumerate(points):
        nxt = points[i + 1][0] if i + 1 < len(points) else end_ms
        active = cond(value, firing is not None)
        if active is True:
            clear_since = None
            if firing is None:
                pending = t if pending is None else pending
                if pending + for_ms <= nxt:
                    firing = max(pending + for_ms, t)
        elif active is False:
            if firing is None:
                pending = None
            else:
                clear_since = t if clear_since is None else clear_since
                if clear_since + clear_ms <= nxt:
                    out.append((firing, clear_since + clear_ms))
                    firing = pending = clear_since = None
    if firing is not None:
        out.append((firing, None))
    return out


def preview(rule: RuleDef, views: Iterable[DeviceView], now: int) -> Preview:
    """Replay ``rule`` over the last 7 days for the devices in its scope (see the module docstring)."""
    start = now - WINDOW_MS
    tags = {v.device_id: tuple(t.strip() for t in v.tags.split(",") if t.strip()) for v in views}
    devices = sorted(d for d, t in tags.items() if rule.scope.matches(d, t))
    p = rule.params
    result = Preview()
    if rule.kind == "offline":
        states = ("offline", "shutdown", "sleeping") if p.include_planned else ("offline",)
        series = _status_series(devices, start)
        result.note = "from the status history"
        _collect(result, {d: replay(s, lambda v, _f: v in states, p.for_s * 1000, p.clear_s * 1000, now)
                          for d, s in series.items()}, start)
    elif rule.kind == "metric":
        fine = len(devices) <= FINE_DEVICES
        series = _rollup_series(devices, start, METRICS[p.metric][0], fine)
        clear = p.clear_value
        above = p.op == "above"

        def cond(v: object, firing: bool) -> bool | None:
            if v is None:
                return None
            if (v > p.value) if above else (v < p.value):  # type: ignore[operator]
                return True
            cleared = v <= clear if above else v >= clear  # type: ignore[operator]
            return None if firing and not cleared else False

        result.note = "from 5-minute averages" if fine else "from 1-hour averages"
        _collect(result, {d: replay(s, cond, p.for_s * 1000, 0, now) for d, s in series.items()}, start)
    elif rule.kind == "gateway":
        if len(devices) > FINE_DEVICES:
            return Preview(available=False, note=f"gateway previews read raw samples; more than {FINE_DEVICES} "
                                                 "devices in scope")
        series = _gateway_series(devices, start)
        result.note = "from raw samples (kept 48 h by default)"
        _collect(result, {d: replay(s, lambda v, _f: (not v) if v is not None else None, p.for_s * 1000,
                                    p.clear_s * 1000, now) for d, s in series.items()}, start)
    elif rule.kind == "budget":
        _budget(result, rule, devices, now)
    elif rule.kind == "error_new":
        firsts = (LogRecord.select(LogRecord.fingerprint, fn.MIN(LogRecord.ts))
                  .where(LogRecord.level.in_(ERROR_LEVELS) & (LogRecord.fingerprint != "") & not_hint()
                         & LogRecord.device.in_(devices or [""]))
                  .group_by(LogRecord.fingerprint).having(fn.MIN(LogRecord.ts) >= start).tuples())
        result.note = "fingerprints first logged in the window"
        _collect(result, {fp: [(int(ts), int(ts))] for fp, ts in firsts}, start)
    elif rule.kind == "error_rate":
        _error_rate(result, rule, devices, start, now)
    else:
        return Preview(available=False, note="server rules have no stored history to replay")
    return result


def _collect(result: Preview, firings: dict[str, list[tuple[int, int | None]]], start: int) -> None:
    examples = []
    for subject, fs in firings.items():
        if not fs:
            continue
        result.subjects += 1
        for fired, resolved in fs:
            result.fires += 1
            result.firing_ms += max(0, (resolved if resolved is not None else start + WINDOW_MS) - fired)
            result.per_day[min(6, max(0, (fired - start) // DAY_MS))] += 1
            examples.append((subject, fired, resolved))
    result.examples = sorted(examples, key=lambda e: e[1], reverse=True)[:10]


def _status_series(devices: list[str], start: int) -> dict[str, list[tuple[int, object]]]:
    out: dict[str, list[tuple[int, object]]] = {d: [] for d in devices}
    if not devices:
        return out
    last = (StatusEvent.select(StatusEvent.device, fn.MAX(StatusEvent.ts).alias("m"))
            .where(StatusEvent.ts < start).group_by(StatusEvent.device).alias("last"))
    before = (StatusEvent.select(StatusEvent.device, StatusEvent.state)
              .join(last, on=(StatusEvent.device == last.c.device) & (StatusEvent.ts == last.c.m)).tuples())
    for device, st in before:
        if device in out:
            out[device] = [(start, st)]
    q = (StatusEvent.select(StatusEvent.device, StatusEvent.ts, StatusEvent.state).where(StatusEvent.ts >= start)
         .order_by(StatusEvent.device, StatusEvent.ts, StatusEvent.id).tuples())
    for device, ts, st in q:
        if device in out:
            out[device].append((int(ts), st))
    return out


def _rollup_series(devices: list[str], start: int, column: str, fine: bool) -> dict[str, list[tuple[int, object]]]:
    model, width = (SampleRollup5m, FIVE_MIN_MS) if fine else (SampleRollup1h, HOUR_MS)
    col = getattr(model, f"{column}_avg")
    out: dict[str, list[tuple[int, object]]] = {d: [] for d in devices}
    q = (model.select(model.device, model.bucket_ms, col).where(model.bucket_ms >= start)
         .order_by(model.device, model.bucket_ms).tuples())
    for device, bucket, value in q:
        s = out.get(device)
        if s is None:
            continue
        if s and bucket - s[-1][0] > 2 * width:
            s.append((s[-1][0] + width, None))  # a gap: no data
        s.append((int(bucket), value))
    return out


def _gateway_series(devices: list[str], start: int) -> dict[str, list[tuple[int, object]]]:
    out: dict[str, list[tuple[int, object]]] = {d: [] for d in devices}
    if not devices:
        return out
    q = (Sample.select(Sample.device, Sample.ts, Sample.openclaw_up)
         .where((Sample.ts >= start) & Sample.openclaw_up.is_null(False) & Sample.device.in_(devices))
         .order_by(Sample.device, Sample.ts).tuples())
    for device, ts, up in q:
        out[device].append((int(ts), bool(up)))
    return out


def _budget(result: Preview, rule: RuleDef, devices: list[str], now: int) -> None:
    p = rule.params
    zone = ZoneInfo(p.zone)
    chosen = set(devices)
    periods, t = [], now
    for _ in range(7 if p.period == "day" else 2):
        s, e, _key = period_bounds(p.period, zone, t)
        periods.append((s, min(e, now + 1)))
        t = s - 1
    firings: dict[str, list[tuple[int, int | None]]] = {}
    for s, e in reversed(periods):
        usage = by_device(s, e)
        groups = {d: [d] for d in devices} if p.per_device else {str(rule.scope): devices}
        for subject, ids in groups.items():
            sums = UsageSums()
            for d in ids:
                if d in usage and d in chosen:
                    sums.add(usage[d])
            used = sums.cost_usd if p.unit == "usd" else sums.total_tokens
            steps = [st for st in p.steps if 100.0 * used / p.amount >= st]
            firings.setdefault(subject, []).extend((max(s, now - WINDOW_MS), e) for _ in steps)
    result.note = f"{'daily' if p.period == 'day' else 'monthly'} totals in {p.zone}, one message per step passed"
    _collect(result, firings, now - WINDOW_MS)
    result.firing_ms = 0


def _error_rate(result: Preview, rule: RuleDef, devices: list[str], start: int, now: int) -> None:
    hour = LogRecord.ts / HOUR_MS  # integer division in SQLite and PostgreSQL
    q = (LogRecord.select(LogRecord.device, LogRecord.fingerprint, hour.alias("h"), fn.COUNT(LogRecord.id))
         .where((LogRecord.ts >= start) & LogRecord.level.in_(ERROR_LEVELS) & (LogRecord.fingerprint != "")
                & not_hint() & LogRecord.device.in_(devices or [""]))
         .group_by(LogRecord.device, LogRecord.fingerprint, hour).tuples())
    hours: dict[str, list[tuple[int, object]]] = {}
    for device, fp, h, n in q:
        hours.setdefault(f"{device}|{fp[:40]}", []).append((int(h) * HOUR_MS, int(n)))
    per_hour, clear = rule.params.per_hour, rule.params.clear_value
    series = {}
    for subject, pts in hours.items():
        pts.sort()
        filled: list[tuple[int, object]] = []
        for t, n in pts:
            if filled and t - filled[-1][0] > HOUR_MS:
                filled.append((filled[-1][0] + HOUR_MS, 0))
            filled.append((t, n))
        series[subject] = filled
    result.note = "hourly counts per device and fingerprint"
    def cond(v: object, firing: bool) -> bool | None:
        if v > per_hour:  # type: ignore[operator]
            return True
        return None if firing and v > clear else False  # type: ignore[operator]

    _collect(result, {s: replay(p, cond, 0, 0, now) for s, p in series.items()}, start)
