"""Re-pricing history after a price rule changed, in short paced transactions.

A pass walks every usage record in primary-key order (``device``, ``id``; keyset paging, so each
step is an index range) and, chunk by chunk inside one write transaction that holds SQLite's lock
for at most :data:`fleet_server.store.locks.HOLD_S`, sets ``priced_usd`` from the current rules
where it differs and moves the hourly and all-time rollups' ``cost_usd``, ``priced_records`` and
``unpriced_tokens`` by the same difference — so records and rollups agree after every commit and
ingest, logins and the CLI get the lock between two chunks (:class:`~fleet_server.store.locks.TakeTurns`).
Rule matching is done once per distinct ``(provider, model)`` per pass. At the end the sessions'
runs are re-priced and their sessions' cost sums rebuilt
(:func:`fleet_server.store.sessions.costs.reprice_runs`, one transaction: not paced yet).

Interface for the cache and the dashboard: after each committed chunk ``on_chunk`` gets what it
changed as cost deltas ``{device: {hour_ms: UsageSums}}`` (only ``cost_usd``, ``priced_messages``
and ``unpriced_tokens`` set; negative when a cost went down; the server passes the device ids to
:meth:`fleet_server.state.FleetState.note_usage`, so views re-read their sums — no reload), and
:class:`RepriceProgress` says how far the pass is and, when done, which ``(device, hour_ms)``
rollups changed.

A rule change marks a pass as due in the database (:class:`~fleet_server.store.models.JobMark`
``reprice``) in the rule's own transaction; the server's re-pricing job
(:mod:`fleet_server.jobs.reprice`) runs due passes, also one left unfinished by a restart.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from peewee import Database, Tuple

from fleet_server.store import bulk
from fleet_server.store.locks import HOLD_S, TakeTurns, write_transaction
from fleet_server.store.models import JobMark, PriceRule, UsageRecord, db
from fleet_server.store.sessions.costs import reprice_runs
from fleet_server.store.usage.prices import JOB, load_rules, matches, rule_cost
from fleet_server.store.usage.sums import HOUR_MS, UsageSums
from shared.clock import now_ms

log = logging.getLogger("clawfleet.store.reprice")

CHUNK = 500
"""Records read per step; a transaction takes as many steps as fit in ``HOLD_S``."""
_EPS = 1e-12
Deltas = dict[str, dict[int, UsageSums]]
"""Cost changes ``{device: {hour_ms: UsageSums}}`` (cost fields only)."""


@dataclass
class RepriceProgress:
    """Where a pass is. ``state``: ``idle``, ``running``, ``done`` or ``failed`` (``error`` says why);
    ``total``: records when the pass started; ``checked``/``changed``: records looked at / whose
    rule price changed; times epoch ms; ``changed_hours``: ``(device, hour_ms)`` rollups whose cost
    changed (complete when ``done``)."""

    state: str = "idle"
    total: int = 0
    checked: int = 0
    changed: int = 0
    started_ms: int | None = None
    finished_ms: int | None = None
    error: str = ""
    changed_hours: set[tuple[str, int]] = field(default_factory=set)

    @property
    def percent(self) -> float:
        """0-100 of the records checked (100 when there is nothing to check)."""
        return 100.0 if not self.total else min(100.0, 100.0 * self.checked / self.total)

    def copy(self) -> RepriceProgress:
        """A snapshot (the running pass keeps changing this one)."""
        return replace(self, changed_hours=set(self.changed_hours))


class _Pricer:
    """The current rules, matched once per ``(provider, model)``; intervals by effective date."""

    def __init__(self, rules: list[PriceRule]) -> None:
        self.rules = rules
        self._by_pair: dict[tuple[str, str], list[tuple[int, PriceRule]]] = {}

    def price(self, provider: str, model: str, ts: int, tokens: tuple[int, int, int, int]) -> float | None:
        pair = (provider, model)
        starts = self._by_pair.get(pair)
        if starts is None:
            first: dict[int, PriceRule] = {}
            for r in self.rules:  # ordered by effective date then id: the lowest id wins a date
                if matches(r.pattern, provider, model):
                    first.setdefault(r.effective_ms, r)
            starts = self._by_pair[pair] = sorted(first.items(), key=lambda kv: kv[0])
        best = None
        for start, rule in starts:
            if start > ts:
                break
            best = rule
        return None if best is None else rule_cost(best, *tokens)


_COLUMNS = (UsageRecord.device, UsageRecord.id, UsageRecord.ts, UsageRecord.provider, UsageRecord.model,
            UsageRecord.input_tokens, UsageRecord.output_tokens, UsageRecord.cache_read_tokens,
            UsageRecord.cache_write_tokens, UsageRecord.total_tokens, UsageRecord.cost_usd, UsageRecord.priced_usd)


def _step(pricer: _Pricer, after: tuple[str, str] | None, deltas: Deltas) -> tuple[int, int, tuple[str, str] | None]:
    """Re-price the next :data:`CHUNK` records after ``after``; returns (checked, changed, last key)."""
    q = UsageRecord.select(*_COLUMNS)
    if after is not None:
        q = q.where(Tuple(UsageRecord.device, UsageRecord.id) > Tuple(*after))
    rows = list(q.order_by(UsageRecord.device, UsageRecord.id).limit(CHUNK).tuples())
    updates, hours = [], []
    for device, rid, ts, provider, model, i, o, cr, cw, total, cost, old in rows:
        new = pricer.price(provider or "", model or "", ts, (i, o, cr, cw))
        if (new is None) == (old is None) and (new is None or abs(new - old) <= _EPS):
            continue
        updates.append((new, device, rid))
        old_eff = old if old is not None else cost
        new_eff = new if new is not None else cost
        d = UsageSums(cost_usd=(new_eff or 0.0) - (old_eff or 0.0),
                      priced_messages=(new_eff is not None) - (old_eff is not None),
                      unpriced_tokens=total * ((new_eff is None) - (old_eff is None)))
        if d.cost_usd or d.priced_messages or d.unpriced_tokens:
            hour = ts - ts % HOUR_MS
            deltas.setdefault(device, {}).setdefault(hour, UsageSums()).add(d)
            hours.append((device, hour))
    bulk.executemany('UPDATE "usage_record" SET "priced_usd" = ? WHERE "device" = ? AND "id" = ?', updates)
    return len(rows), len(updates), (rows[-1][0], rows[-1][1]) if rows else None


_MOVE = ('"cost_usd" = "cost_usd" + ?, "priced_records" = "priced_records" + ?, '
         '"unpriced_tokens" = "unpriced_tokens" + ?')


def _apply_rollups(deltas: Deltas) -> None:
    """Move the hourly and all-time rollups' cost columns by ``deltas`` (one prepared statement each)."""
    bulk.executemany(f'UPDATE "usage_hourly" SET {_MOVE} WHERE "device" = ? AND "hour_ms" = ?',  # noqa: S608
                     [(s.cost_usd, s.priced_messages, s.unpriced_tokens, device, hour)
                      for device, hours in deltas.items() for hour, s in hours.items()])
    per_device = {device: UsageSums() for device in deltas}
    for device, hours in deltas.items():
        for s in hours.values():
            per_device[device].add(s)
    bulk.executemany(f'UPDATE "usage_total" SET {_MOVE} WHERE "device" = ?',  # noqa: S608 - constant text
                     [(s.cost_usd, s.priced_messages, s.unpriced_tokens, device) for device, s in per_device.items()])


def reprice(database: Database | None = None, *, progress: RepriceProgress | None = None,
            on_chunk: Callable[[Deltas], None] | None = None, restart: Callable[[], bool] | None = None) -> int:
    """One paced pass over every usage record with the current rules (see the module docstring).

    Args:
        database: for the transactions (default: the models' database).
        progress: updated as the pass goes (``state`` running, then done).
        on_chunk: gets each committed transaction's cost deltas (e.g. for ``FleetState.note_usage``).
        restart: asked between transactions; True starts the pass again with the rules as they are
            now (a rule changed meanwhile).

    Returns:
        Records whose rule price changed (newly priced, re-priced or no longer priced).
    """
    database = database or db.obj
    progress = progress if progress is not None else RepriceProgress()
    pace = TakeTurns(database)
    while True:
        started = now_ms()
        mark = JobMark.get_or_none(JobMark.job == JOB)  # first the mark, then the rules it covers
        seen = mark.requested_ms if mark is not None else None
        rules = load_rules()
        progress.state, progress.started_ms, progress.finished_ms, progress.error = "running", started, None, ""
        progress.total, progress.checked, progress.changed = UsageRecord.select().count(), 0, 0
        progress.changed_hours = set()
        pricer, after, again = _Pricer(rules), None, False
        while True:
            deltas: Deltas = {}
            with write_transaction(database):
                t0 = time.monotonic()
                while True:
                    checked, changed, last = _step(pricer, after, deltas)
                    progress.checked += checked
                    progress.changed += changed
                    after = last or after
                    if last is None or time.monotonic() - t0 >= HOLD_S:
                        break
                _apply_rollups(deltas)
            progress.changed_hours.update((d, h) for d, hours in deltas.items() for h in hours)
            if on_chunk is not None and deltas:
                on_chunk(deltas)
            if last is None:
                break
            pace.turn()
            if restart is not None and restart():
                again = True
                break
        if not again:
            with write_transaction(database):  # runs and sessions follow the same rules (one transaction)
                reprice_runs(rules)
            with write_transaction(database):  # done, unless a rule changed after the mark was read
                JobMark.update(finished_ms=JobMark.requested_ms).where(
                    (JobMark.job == JOB) & (JobMark.requested_ms == seen)).execute()
            progress.state, progress.finished_ms = "done", now_ms()
            log.info("re-priced %d of %d usage records (%d hourly rollups changed)", progress.changed,
                     progress.checked, len(progress.changed_hours))
            return progress.changed
