"""Rule evaluation and the incident state machine: OK → pending → firing → resolved.

Per rule and subject (a device, ``fleet``, ``tag:<t>``, ``server``, or a device's log fingerprint)
there is at most one open incident, stored in the database (:mod:`.incidents`), so a restart
neither loses a firing alert nor notifies it twice. A condition that holds opens a *pending*
incident; once it has held for the rule's ``for_s`` it *fires*; when it clears (for ``clear_s``,
or below the ``clear`` value of a metric rule: hysteresis) it *resolves*. A pending incident that
clears is dropped (it never fired). Firing, resolving (of a notified incident), reminders and
budget steps queue events; the dispatcher (:mod:`.dispatch`) groups them into messages.

:meth:`AlertEngine.tick` runs every second (the job in :mod:`fleet_server.jobs.alerts`): it looks
at the devices the fleet cache says changed (:meth:`FleetState.changes_since`) and at pending
incidents whose time is up, so an alert fires within about a second of its duration. Every
:data:`FULL_EVERY_MS` it evaluates everything (all devices, server, log fingerprints, reminders,
silences that ended, rule changes made elsewhere); budgets every minute, and within 5 s of new
usage being stored (:data:`fleet_server.alerts.aggregates.BUDGET_SOON_MS`).
For the first ``settle_s`` seconds after start nothing is evaluated: device states are still
being refreshed from the broker.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable

from peewee import fn

from fleet_server.alerts import messages
from fleet_server.alerts.aggregates import AggregateRules
from fleet_server.alerts.conditions import CHECKS, CLEAR, Obs
from fleet_server.alerts.incidents import Batch, Open, commit, load_open
from fleet_server.alerts.rules import DEVICE_KINDS, RuleDef, load_rules
from fleet_server.alerts.settings import AlertSettings
from fleet_server.alerts.silences import SilenceBook
from fleet_server.state import DeviceView, FleetState
from fleet_server.store.alert_models import AlertIncident, AlertRule
from fleet_server.store.models import db
from shared.clock import now_ms

log = logging.getLogger("clawfleet.alerts")

FULL_EVERY_MS = 30_000
STARTUP_SETTLE_S = 30.0


class AlertEngine:
    """Evaluates the rules over the fleet cache and the store; see the module docstring.

    Args:
        state: the fleet cache (read only, through its public methods).
        clock: epoch-ms clock (tests pass their own).
        server_status: ``() -> {"broker_connected": bool, "broker_down_since_ms": int | None,
            "ingest_ok": bool, "ingest_reason": str, "disk_pct": float}`` for server rules (None: none).
        settle_s: seconds after start before the first evaluation.
    """

    def __init__(self, state: FleetState, *, clock: Callable[[], int] = now_ms,
                 server_status: Callable[[], dict] | None = None, settle_s: float = STARTUP_SETTLE_S) -> None:
        self.state = state
        self.clock = clock
        self.server_status = server_status
        self.settings = AlertSettings()
        self.silences = SilenceBook()
        self.aggregates = AggregateRules(self)
        self.rules: dict[int, RuleDef] = {}
        self.open: dict[tuple[int, str], Open] = {}
        self._due: list[tuple[int, int, str]] = []
        self._version = -1
        self._last_full = -FULL_EVERY_MS
        self._rules_sig: tuple | None = None
        self._reload = threading.Event()
        self._by_tags: dict[str, list[RuleDef]] = {}
        self._by_device: dict[str, list[RuleDef]] = {}
        self._tags: dict[str, tuple[str, ...]] = {}
        self.settle_until = clock() + int(settle_s * 1000)
        self.lock = threading.Lock()
        self.cpu_s = {"full": 0.0, "quick": 0.0}
        self.passes = {"full": 0, "quick": 0}

    # ---- loading ------------------------------------------------------------------------------
    def load(self) -> None:
        """Read the rules, settings, silences and open incidents (at start)."""
        self._load_rules()
        self.open = {(o.rule, o.subject): o for o in load_open()}
        now = self.clock()
        for o in self.open.values():
            rule = self.rules.get(o.rule)
            if o.state == "pending" and rule is not None:
                heapq.heappush(self._due, (o.started_ms + rule.for_s * 1000, o.rule, o.subject))
        self.settings.refresh()
        self.silences.refresh(now)

    def request_reload(self) -> None:
        """Rules changed in this process (dashboard): re-read them at the next tick."""
        self._reload.set()

    def _load_rules(self) -> None:
        self.rules = {r.id: r for r in load_rules() if r.enabled}
        self._rules_sig = _rules_signature()
        self._by_tags.clear()
        self._by_device = {}
        for r in self.rules.values():
            if r.kind in DEVICE_KINDS and r.scope.kind == "device":
                self._by_device.setdefault(r.scope.value, []).append(r)

    # ---- passes -------------------------------------------------------------------------------
    def tick(self) -> None:
        """One evaluation step (call every second): quick, or full every :data:`FULL_EVERY_MS`."""
        now = self.clock()
        if now < self.settle_until:
            return
        with self.lock:
            started = time.thread_time()
            if self._reload.is_set() or now - self._last_full >= FULL_EVERY_MS:
                self._reload.clear()
                self.full_pass(now)
                kind = "full"
            else:
                self.quick_pass(now)
                kind = "quick"
            self.cpu_s[kind] += time.thread_time() - started
            self.passes[kind] += 1

    def quick_pass(self, now: int) -> None:
        """Devices changed since the last pass, pending incidents whose time is up, server rules."""
        version, changed = self.state.changes_since(self._version)
        if changed is None:
            self.full_pass(now)
            return
        self._version = version
        self.silences.refresh(now)  # a few rows: snoozes from the tray, the CLI or the page count at once
        batch = Batch()
        for device_id in changed:
            v = self.state.get(device_id)
            if v is not None:
                self._eval_device(v, now, batch)
        self._run_due(now, batch)
        self.aggregates.server(now, batch)
        self.aggregates.budgets_if_used(now, batch)
        commit(db.obj, batch)

    def full_pass(self, now: int) -> None:
        """Everything: rules re-read when changed, every device, server, fingerprints, budgets
        (every minute), reminders, silences that ended, acknowledgements."""
        self._last_full = now
        if _rules_signature() != self._rules_sig:
            self._load_rules()
        self.settings.refresh()
        self.silences.refresh(now)
        self._sync_acks()
        self._version, _ = self.state.changes_since(-1)
        batch = Batch()
        seen: set[tuple[int, str]] = set()
        for v in self.state.views():
            self._eval_device(v, now, batch, seen)
        self._run_due(now, batch)
        self.aggregates.server(now, batch)
        self.aggregates.errors(now, batch)
        self.aggregates.budgets(now, batch)
        for key, inc in list(self.open.items()):
            rule = self.rules.get(inc.rule)
            if rule is None or (rule.kind in DEVICE_KINDS and key not in seen):
                self.close_quietly(inc, now, batch)  # rule gone, disabled, or no longer for this device
            elif inc.state == "firing":
                self._follow_up(rule, inc, now, batch)
        commit(db.obj, batch)

    def _run_due(self, now: int, batch: Batch) -> None:
        while self._due and self._due[0][0] <= now:
            _, rule_id, subject = heapq.heappop(self._due)
            inc, rule = self.open.get((rule_id, subject)), self.rules.get(rule_id)
            if inc is None or rule is None or rule.kind not in DEVICE_KINDS:
                continue
            v = self.state.get(subject)
            if v is not None:
                self.step(rule, subject, CHECKS[rule.kind](rule, v, now, inc.state == "firing"), now, batch, v)

    # ---- per device ---------------------------------------------------------------------------
    def rules_for(self, device_id: str, tags_text: str) -> list[RuleDef]:
        """The device-kind rules that apply to a device: per override key, the most specific scope
        (device > tag > fleet); rules of the same key and scope all apply."""
        base = self._by_tags.get(tags_text)
        if base is None:
            tags = self.tags(tags_text)
            base = _most_specific(r for r in self.rules.values()
                                  if r.kind in DEVICE_KINDS and r.scope.kind != "device" and r.scope.matches("", tags))
            self._by_tags[tags_text] = base
        own = self._by_device.get(device_id)
        if not own:
            return base
        keys = {r.override_key() for r in own}
        return [r for r in base if r.override_key() not in keys] + own

    def tags(self, tags_text: str) -> tuple[str, ...]:
        """A device's tags from the registry's comma-separated text (cached)."""
        t = self._tags.get(tags_text)
        if t is None:
            if len(self._tags) > 10_000:
                self._tags.clear()
            t = self._tags[tags_text] = tuple(x.strip() for x in tags_text.split(",") if x.strip())
        return t

    def _eval_device(self, v: DeviceView, now: int, batch: Batch, seen: set | None = None) -> None:
        device_id = v.device_id
        for rule in self.rules_for(device_id, v.tags):
            key = (rule.id, device_id)
            inc = self.open.get(key)
            if seen is not None:
                seen.add(key)
            obs = CHECKS[rule.kind](rule, v, now, inc is not None and inc.state == "firing")
            if obs is CLEAR and inc is None:
                continue
            self.step(rule, device_id, obs, now, batch, v)

    # ---- the state machine --------------------------------------------------------------------
    def step(self, rule: RuleDef, subject: str, obs: Obs, now: int, batch: Batch, view: DeviceView | None) -> None:
        """Move the incident of ``rule`` × ``subject`` by one observation (see the module docstring)."""
        key = (rule.id, subject)
        inc = self.open.get(key)
        if obs.active is True:
            if inc is None:
                start = min(obs.since_ms or now, now)
                inc = Open(0, rule.id, subject, "pending", rule.severity, start, threshold=_threshold(rule))
                self.open[key] = inc
                batch.add(inc)
                if now - start < rule.for_s * 1000:
                    heapq.heappush(self._due, (start + rule.for_s * 1000, rule.id, subject))
            inc.value, inc.summary, inc.clear_since = obs.value, obs.text, None
            if inc.state == "pending" and now - inc.started_ms >= rule.for_s * 1000:
                self.fire(rule, inc, now, batch, view)
        elif obs.active is False and inc is not None:
            if inc.state == "pending":
                self.open.pop(key, None)
                batch.drop(inc)
                return
            if rule.clear_s and (inc.clear_since is None or now - inc.clear_since < rule.clear_s * 1000):
                if inc.clear_since is None:
                    inc.clear_since = now
                    heapq.heappush(self._due, (now + rule.clear_s * 1000, rule.id, subject))
                return
            self.resolve(rule, inc, now, batch, view, obs.text)

    def fire(self, rule: RuleDef, inc: Open, now: int, batch: Batch, view: DeviceView | None) -> None:
        """pending → firing; notify unless silenced (then the page shows it, and it is notified
        when the silence ends while it still fires)."""
        inc.state, inc.fired_ms = "firing", now
        batch.mark(inc)
        if self.silenced(rule, inc, view, now):
            inc.silenced = True
            return
        self._notify_firing(rule, inc, now, batch, view)

    def _notify_firing(self, rule: RuleDef, inc: Open, now: int, batch: Batch, view: DeviceView | None) -> None:
        inc.notified, inc.silenced, inc.last_notified_ms = True, False, now
        batch.mark(inc)
        label, link = self.label(inc.subject, view)
        text = messages.firing(rule, label, inc.summary, inc.started_ms, now, inc.value, self.settings.zone, link)
        batch.event(inc, "firing", rule.severity, text, rule.channels, now)

    def resolve(self, rule: RuleDef, inc: Open, now: int, batch: Batch, view: DeviceView | None, what: str) -> None:
        """firing → resolved; a recovery message (with the duration) when the firing was notified."""
        self.open.pop((inc.rule, inc.subject), None)
        inc.state, inc.resolved_ms = "resolved", now
        batch.mark(inc)
        if inc.notified and not self.silenced(rule, inc, view, now):
            label, link = self.label(inc.subject, view)
            text = messages.resolved(rule, label, what, inc.fired_ms or now, inc.started_ms, now,
                                     self.settings.zone, link)
            batch.event(inc, "resolved", rule.severity, text, rule.channels, now)

    def close_quietly(self, inc: Open, now: int, batch: Batch) -> None:
        """Drop a pending incident or resolve a firing one without a message (its rule was deleted
        or disabled, no longer applies, or a budget period ended)."""
        self.open.pop((inc.rule, inc.subject), None)
        if inc.state == "pending":
            batch.drop(inc)
            return
        inc.state, inc.resolved_ms = "resolved", now
        batch.mark(inc)

    def _follow_up(self, rule: RuleDef, inc: Open, now: int, batch: Batch) -> None:
        view = self.state.get(inc.subject) if rule.kind in DEVICE_KINDS else None
        if not inc.notified:
            if not self.silenced(rule, inc, view, now):
                self._notify_firing(rule, inc, now, batch, view)  # its silence ended while it still fires
            return
        if (rule.reminder_s and not inc.acked and inc.last_notified_ms is not None
                and now - inc.last_notified_ms >= rule.reminder_s * 1000 and not self.silenced(rule, inc, view, now)):
            inc.last_notified_ms = now
            batch.mark(inc)
            label, link = self.label(inc.subject, view)
            what = inc.summary or rule.describe()
            batch.event(inc, "reminder", rule.severity,
                        messages.reminder(rule, label, what, inc.started_ms, now, self.settings.zone, link),
                        rule.channels, now)

    def _sync_acks(self) -> None:
        acked = dict(AlertIncident.select(AlertIncident.id, AlertIncident.acked_ms)
                     .where(AlertIncident.state == "firing").tuples())
        for inc in self.open.values():
            if inc.id in acked:
                inc.acked = acked[inc.id] is not None

    # ---- helpers ------------------------------------------------------------------------------
    def silenced(self, rule: RuleDef, inc: Open, view: DeviceView | None, now: int) -> bool:
        """Is a snooze or maintenance window covering this incident now?"""
        device = view.device_id if view is not None else None
        tags = self.tags(view.tags) if view is not None else ()
        return self.silences.match(rule.id, device, tags, inc.subject, now) is not None

    def label(self, subject: str, view: DeviceView | None) -> tuple[str, str | None]:
        """How a subject is named in messages, and the link to its page (devices only)."""
        base = self.settings.dashboard_url
        if view is not None:
            name = view.name if view.name == view.device_id else f"{view.name} ({view.device_id})"
            return name, f"{base}/device/{view.device_id}"
        if subject == "server":
            return "fleet server", f"{base}/alerts"
        if subject == "fleet":
            return "fleet", f"{base}/alerts"
        return subject, f"{base}/alerts"


def _most_specific(rules) -> list[RuleDef]:
    best: dict[tuple, tuple[int, list[RuleDef]]] = {}
    for r in rules:
        k, rank = r.override_key(), r.scope.rank
        cur = best.get(k)
        if cur is None or rank > cur[0]:
            best[k] = (rank, [r])
        elif rank == cur[0]:
            cur[1].append(r)
    return [r for _, rs in best.values() for r in rs]


def _threshold(rule: RuleDef) -> float | None:
    p = rule.params
    if rule.kind == "metric":
        return float(p.value)
    if rule.kind == "budget":
        return float(p.amount)
    if rule.kind == "error_rate":
        return float(p.per_hour)
    if rule.kind == "server" and p.check == "disk":
        return float(p.value)
    return float(rule.for_s) if rule.for_s else None


def _rules_signature() -> tuple:
    row = AlertRule.select(fn.COUNT(AlertRule.id), fn.MAX(AlertRule.updated_ms)).tuples().first()
    return tuple(row or ())

