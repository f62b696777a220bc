"""Rules whose subject is not one device's latest state: the fleet server itself, log
fingerprints (new ones, and too many per hour), and budgets (a scope's usage this day or month).

They use the engine's state machine (:meth:`AlertEngine.step`, ``fire``, ``resolve``) except two
kinds that are events rather than conditions: a new fingerprint is one incident that fires and is
resolved at once (one message), and a budget incident fires at its first step and stays firing
until its period ends, with one message per step passed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from fleet_server.alerts import messages
from fleet_server.alerts.budgets import BudgetMeter, period_bounds, projection, reading
from fleet_server.alerts.conditions import Obs
from fleet_server.alerts.errors import find_new, hourly_counts
from fleet_server.alerts.incidents import Batch, Open
from fleet_server.alerts.rules import RuleDef
from fleet_server.store.usage.sums import UsageSums

if TYPE_CHECKING:
    from fleet_server.alerts.engine import AlertEngine

BUDGET_EVERY_MS = 60_000
"""Budgets are evaluated at least this often, ms…"""
BUDGET_SOON_MS = 5_000
"""…and this soon after new usage was stored (the fleet's all-time token count moved), ms."""


class AggregateRules:
    """Server, log-fingerprint and budget rules of one :class:`AlertEngine`."""

    def __init__(self, engine: AlertEngine, meter: BudgetMeter | None = None) -> None:
        self.engine = engine
        self.meter = meter or BudgetMeter()
        self._last_budget = -BUDGET_EVERY_MS
        self._usage_seen: int | None = None  # the fleet cache's usage version at the last evaluation

    def _rules(self, kind: str) -> list[RuleDef]:
        return [r for r in self.engine.rules.values() if r.kind == kind]

    # ---- the fleet server itself -------------------------------------------------------------
    def server(self, now: int, batch: Batch) -> None:
        """Broker connection, ingest health, data dir disk (subject ``server``)."""
        rules = self._rules("server")
        if not rules or self.engine.server_status is None:
            return
        st = self.engine.server_status()
        for rule in rules:
            p = rule.params
            if p.check == "broker":
                down = not st.get("broker_connected", True)
                since = st.get("broker_down_since_ms") if down else None
                obs = Obs(down, (now - (since or now)) / 1000, since, "broker connection lost" if down
                          else "broker connected")
            elif p.check == "ingest":
                bad = not st.get("ingest_ok", True)
                obs = Obs(bad, None, None, st.get("ingest_reason") or "ingest unhealthy" if bad else "ingest healthy")
            else:
                pct = st.get("disk_pct")
                if pct is None:
                    continue
                inc = self.engine.open.get((rule.id, "server"))
                obs = Obs(pct > p.value, pct, None, f"data dir disk {pct:.1f} % used")
                if inc is not None and inc.state == "firing" and p.value - 1 < pct <= p.value:
                    obs = Obs(None, pct)  # hysteresis: resolve 1 point below the line
            self.engine.step(rule, "server", obs, now, batch, None)

    # ---- log fingerprints ---------------------------------------------------------------------
    def errors(self, now: int, batch: Batch) -> None:
        """New fingerprints (event incidents) and fingerprints over their hourly rate."""
        new_rules, rate_rules = self._rules("error_new"), self._rules("error_rate")
        if not new_rules and not rate_rules:
            return
        eng = self.engine
        new, seen = find_new(now)
        batch.seen += seen
        for nf in new:
            v = eng.state.get(nf.device)
            tags = eng.tags(v.tags) if v is not None else ()
            for rule in new_rules:
                if not rule.scope.matches(nf.device, tags) or not (nf.device_new if rule.params.per_device
                                                                   else nf.fleet_new):
                    continue
                inc = Open(0, rule.id, f"{nf.device}|{nf.fingerprint[:40]}", "resolved", rule.severity, nf.first_ms,
                           fired_ms=now, resolved_ms=now, summary=f"new error: {nf.message[:300]}")
                batch.add(inc)
                if eng.silenced(rule, inc, v, now):
                    inc.silenced = True
                    continue
                inc.notified, inc.last_notified_ms = True, now
                label, link = eng.label(nf.device, v)
                where = "the fleet" if not rule.params.per_device else label
                text = messages.firing(rule, label, f"new error (first on {where}): {_one_line(nf.message)}",
                                       nf.first_ms, now, None, eng.settings.zone, link)
                batch.event(inc, "firing", rule.severity, text, rule.channels, now)
        if rate_rules:
            self._rates(rate_rules, now, batch)

    def _rates(self, rules: list[RuleDef], now: int, batch: Batch) -> None:
        eng = self.engine
        counts = hourly_counts(now)
        for rule in rules:
            p = rule.params
            subjects = set()
            for (device, fp), (n, msg) in counts.items():
                v = eng.state.get(device)
                if not rule.scope.matches(device, eng.tags(v.tags) if v is not None else ()):
                    continue
                subject = f"{device}|{fp[:40]}"
                subjects.add(subject)
                inc = eng.open.get((rule.id, subject))
                firing = inc is not None and inc.state == "firing"
                active = True if n > p.per_hour else (False if not firing or n <= p.clear_value else None)
                if inc is None and not active:
                    continue
                eng.step(rule, subject, Obs(active, float(n), None, f"{n} × per hour: {_one_line(msg)}"), now,
                          batch, v)
            for rid, subject in list(eng.open):
                if rid == rule.id and subject not in subjects:
                    eng.step(rule, subject, Obs(False, 0.0, None, "no occurrences in the last hour"), now, batch,
                              eng.state.get(subject.split("|")[0]))

    # ---- budgets ------------------------------------------------------------------------------
    def _usage_mark(self) -> int:
        return self.engine.state.usage_version  # ingest bumps it whenever it stored usage

    def budgets_if_used(self, now: int, batch: Batch) -> None:
        """Evaluate budgets when usage was stored since the last evaluation (the fleet cache's
        :attr:`FleetState.usage_version` moved) and that was at least
        :data:`BUDGET_SOON_MS` ago (so a run over is reported within seconds, not a minute)."""
        if now - self._last_budget < BUDGET_SOON_MS or not self._rules("budget"):
            return
        if self._usage_mark() != self._usage_seen:
            self.budgets(now, batch, force=True)

    def budgets(self, now: int, batch: Batch, force: bool = False) -> None:
        """Every budget rule's scopes (every :data:`BUDGET_EVERY_MS`, or now with ``force``)."""
        rules = self._rules("budget")
        if not rules or (not force and now - self._last_budget < BUDGET_EVERY_MS):
            return
        self._last_budget = now
        self._usage_seen = self._usage_mark()
        eng = self.engine
        views = eng.state.views()
        recent = self.meter.recent(now)
        for rule in rules:
            p = rule.params
            zone = ZoneInfo(p.zone)
            start, end, key = period_bounds(p.period, zone, now)
            usage = self.meter.period_usage(start, now)
            members = [v for v in views if rule.scope.matches(v.device_id, eng.tags(v.tags))]
            if p.per_device:
                groups = [(v.device_id, v, [v.device_id]) for v in members]
            else:
                subject = str(rule.scope) if rule.scope.kind != "device" else rule.scope.value
                groups = [(subject, members[0] if rule.scope.kind == "device" and members else None,
                           [v.device_id for v in members])]
            for subject, view, ids in groups:
                sums, last = UsageSums(), UsageSums()
                for d in ids:
                    if d in usage:
                        sums.add(usage[d])
                    if d in recent:
                        last.add(recent[d])
                r = reading(p.unit, p.amount, sums, last, start, end, key, now)
                self._budget_step(rule, subject, view, r, zone, now, batch)
            for (rid, _subject), inc in list(eng.open.items()):
                if rid == rule.id and inc.period != key:
                    eng.close_quietly(inc, now, batch)  # the period ended

    def _budget_step(self, rule: RuleDef, subject: str, view, r, zone: ZoneInfo, now: int,
                     batch: Batch) -> None:
        eng, p = self.engine, rule.params
        inc = eng.open.get((rule.id, subject))
        if inc is not None and inc.period != r.period_key:
            eng.close_quietly(inc, now, batch)
            inc = None
        crossed = [s for s in p.steps if r.pct >= s and s > (inc.level if inc is not None else 0)]
        if not crossed:
            return
        if inc is None:
            inc = Open(0, rule.id, subject, "firing", rule.severity, now, fired_ms=now, period=r.period_key,
                       threshold=float(p.amount))
            eng.open[(rule.id, subject)] = inc
            batch.add(inc)
        inc.level, inc.value = max(crossed), r.used
        inc.summary = f"{r.pct:.0f} % of the {'daily' if p.period == 'day' else 'monthly'} budget"
        batch.mark(inc)
        if eng.silenced(rule, inc, view, now):
            inc.silenced = True
            return
        inc.notified, inc.silenced, inc.last_notified_ms = True, False, now
        label, link = eng.label(subject, view)
        if subject == "fleet":
            label = "Fleet"
        proj = projection(r, p.unit, p.amount, p.period, zone, now)
        period_text = f"the {'day' if p.period == 'day' else 'month'} {r.period_key} ({p.zone})"
        text = messages.budget(rule, label, inc.level, r.used, r.pct, period_text, proj, link)
        severity = rule.severity if inc.level >= 100 else "warning"
        batch.event(inc, "budget", severity, text, rule.channels, now)


def _one_line(text: str) -> str:
    line = " ".join((text or "").split())
    return line if len(line) <= 160 else line[:159] + "…"
