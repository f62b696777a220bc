"""Price rules and re-pricing: what a usage record cost in USD.

Cost of a record = the matching :class:`~fleet_server.store.models.PriceRule` (USD per million
tokens of each type), else the cost OpenClaw recorded (``cost_usd``), else **unpriced** — never $0.
The rule's result is stored in ``UsageRecord.priced_usd`` at insert time and again by
:func:`reprice` whenever a rule changes, so history is re-priced; the hourly rollup's
``cost_usd``, ``priced_records`` and ``unpriced_tokens`` follow, and so do the all-time rollup's.

No default price list ships: prices change often and a wrong one is worse than "unpriced".
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from peewee import OP, SQL, Case, Expression, Value, fn

from fleet_server.store.models import PriceRule, UsageHourly, UsageRecord, UsageTotal, db
from fleet_server.store.sql import total
from shared.clock import now_ms

HOUR_MS = 3_600_000
_EPS = 1e-12
TOKEN_KINDS = ("input", "output", "cache_read", "cache_write")


class PriceError(ValueError):
    """A price rule with a bad pattern, a negative price or a bad date (message says which)."""


def matches(pattern: str, provider: str, model: str) -> bool:
    """True when the glob ``pattern`` (case-insensitive) matches ``provider/model`` or ``model``."""
    p = pattern.lower()
    return fnmatch.fnmatchcase(f"{provider}/{model}".lower(), p) or fnmatch.fnmatchcase(model.lower(), p)


def rule_cost(rule: PriceRule, input_tokens: int, output_tokens: int, cache_read_tokens: int,
              cache_write_tokens: int) -> float:
    """USD of the given token counts under ``rule`` (prices are USD per million tokens)."""
    return (input_tokens * rule.input_usd_per_mtok + output_tokens * rule.output_usd_per_mtok
            + cache_read_tokens * rule.cache_read_usd_per_mtok
            + cache_write_tokens * rule.cache_write_usd_per_mtok) / 1e6


def load_rules() -> list[PriceRule]:
    """All rules, by effective date then id (the order :func:`rule_for` relies on)."""
    return list(PriceRule.select().order_by(PriceRule.effective_ms, PriceRule.id))


def rule_for(rules: list[PriceRule], provider: str, model: str, ts_ms: int) -> PriceRule | None:
    """The rule that prices a record: latest ``effective_ms`` <= ``ts_ms`` among matching rules
    (ties: the lower id). ``rules`` as returned by :func:`load_rules`."""
    best = None
    for r in rules:
        if r.effective_ms > ts_ms:
            break
        if matches(r.pattern, provider, model) and (best is None or r.effective_ms > best.effective_ms):
            best = r
    return best


def price_rows(rows: list[dict], rules: list[PriceRule] | None = None) -> None:
    """Set ``priced_usd`` on usage record dicts (in place) from the rules (loaded when None)."""
    rules = load_rules() if rules is None else rules
    for r in rows:
        rule = rule_for(rules, r.get("provider", ""), r.get("model", ""), r["ts"]) if rules else None
        r["priced_usd"] = None if rule is None else rule_cost(
            rule, r["input_tokens"], r["output_tokens"], r["cache_read_tokens"], r["cache_write_tokens"])


def effective_cost(row: dict) -> float | None:
    """A record's cost: its rule price, else OpenClaw's recorded cost, else None (unpriced)."""
    priced = row.get("priced_usd")
    return priced if priced is not None else row.get("cost_usd")


@dataclass(frozen=True)
class RuleInput:
    """A rule as an admin enters it. Prices USD per million tokens; ``effective_ms`` epoch ms UTC."""

    pattern: str
    input_usd_per_mtok: float
    output_usd_per_mtok: float
    cache_read_usd_per_mtok: float = 0.0
    cache_write_usd_per_mtok: float = 0.0
    effective_ms: int = 0
    note: str = ""

    def validated(self) -> RuleInput:
        """Self, after checks. Raises :class:`PriceError` naming the bad field."""
        pattern = self.pattern.strip()
        if not pattern or len(pattern) > 200:
            raise PriceError("model pattern: 1-200 characters, a glob such as 'anthropic/claude-*' or 'gpt-4o*'")
        for kind in TOKEN_KINDS:
            v = getattr(self, f"{kind}_usd_per_mtok")
            if not isinstance(v, (int, float)) or v < 0 or v != v or v > 1e6:
                raise PriceError(f"{kind.replace('_', ' ')} price must be a number of USD per million tokens >= 0")
        if self.effective_ms < 0:
            raise PriceError("effective date must not be before 1970")
        return RuleInput(pattern, float(self.input_usd_per_mtok), float(self.output_usd_per_mtok),
                         float(self.cache_read_usd_per_mtok), float(self.cache_write_usd_per_mtok),
                         int(self.effective_ms), self.note.strip()[:300])


def add_rule(rule: RuleInput) -> tuple[PriceRule, int]:
    """Store a rule and re-price history. Returns (the rule, records re-priced). Raises PriceError."""
    r = rule.validated()
    with db.atomic():
        row = PriceRule.create(**r.__dict__, created_ms=now_ms())
        changed = reprice()
    return row, changed


def update_rule(rule_id: int, rule: RuleInput) -> int:
    """Replace rule ``rule_id`` and re-price; returns records re-priced. Raises PriceError."""
    r = rule.validated()
    with db.atomic():
        if PriceRule.update(**r.__dict__).where(PriceRule.id == rule_id).execute() == 0:
            raise PriceError(f"no price rule {rule_id}")
        return reprice()


def delete_rule(rule_id: int) -> int:
    """Delete a rule and re-price; returns records re-priced. Raises PriceError when unknown."""
    with db.atomic():
        if PriceRule.delete().where(PriceRule.id == rule_id).execute() == 0:
            raise PriceError(f"no price rule {rule_id}")
        return reprice()


def _cost_expr(rule: PriceRule):  # a peewee expression
    def usd(v: float) -> Value:  # unconverted: the token columns' converter would make 0.3 an int
        return Value(float(v), converter=False)

    return (UsageRecord.input_tokens * usd(rule.input_usd_per_mtok)
            + UsageRecord.output_tokens * usd(rule.output_usd_per_mtok)
            + UsageRecord.cache_read_tokens * usd(rule.cache_read_usd_per_mtok)
            + UsageRecord.cache_write_tokens * usd(rule.cache_write_usd_per_mtok)) / usd(1e6)


def reprice() -> int:
    """Recompute ``priced_usd`` of every usage record from the current rules, then the hourly
    rollup's cost columns. Set-based: a few UPDATEs per distinct (provider, model).

    Returns:
        How many records' rule price changed (newly priced, re-priced or no longer priced).
    """
    rules = load_rules()
    changed = 0
    with db.atomic():
        pairs = list(UsageRecord.select(UsageRecord.provider, UsageRecord.model).distinct().tuples())
        for provider, model in pairs:
            mine = [r for r in rules if matches(r.pattern, provider, model)]
            # intervals [start, next start) each priced by the lowest-id rule of its effective date
            starts: dict[int, PriceRule] = {}
            for r in mine:
                starts.setdefault(r.effective_ms, r)
            bounds = sorted(starts)
            same = (UsageRecord.provider == provider) & (UsageRecord.model == model)
            first = bounds[0] if bounds else None
            unpriced = same if first is None else same & (UsageRecord.ts < first)
            changed += UsageRecord.update(priced_usd=None).where(
                unpriced & UsageRecord.priced_usd.is_null(False)).execute()
            for i, start in enumerate(bounds):
                expr = _cost_expr(starts[start])
                cond = same & (UsageRecord.ts >= start)
                if i + 1 < len(bounds):
                    cond &= UsageRecord.ts < bounds[i + 1]
                changed += UsageRecord.update(priced_usd=expr).where(
                    cond & (UsageRecord.priced_usd.is_null() | (fn.ABS(UsageRecord.priced_usd - expr) > _EPS))
                ).execute()
        rebuild_hourly_costs()
        rebuild_total_costs()
        from fleet_server.store.sessions.costs import reprice_runs  # runs and sessions follow the same rules

        reprice_runs(rules)
    return changed


def rebuild_hourly_costs() -> None:
    """Recompute ``cost_usd``, ``priced_records`` and ``unpriced_tokens`` of the hourly rollup from
    the records (one GROUP BY over the usage table)."""
    cost = fn.COALESCE(UsageRecord.priced_usd, UsageRecord.cost_usd)
    hour = (UsageRecord.ts - Expression(UsageRecord.ts, OP.MOD, HOUR_MS))  # peewee's % is LIKE
    q = (UsageRecord.select(UsageRecord.device, hour.alias("h"), total(fn.COALESCE(cost, 0)),
                            total(Case(None, [(cost.is_null(False), 1)], 0)),
                            total(Case(None, [(cost.is_null(), UsageRecord.total_tokens)], 0)))
         .group_by(UsageRecord.device, SQL("h")).tuples())
    for device, h, usd, priced, unpriced in q:
        UsageHourly.update(cost_usd=usd or 0.0, priced_records=priced or 0, unpriced_tokens=unpriced or 0).where(
            (UsageHourly.device == device) & (UsageHourly.hour_ms == h)).execute()


def rebuild_total_costs() -> None:
    """Recompute ``cost_usd``, ``priced_records`` and ``unpriced_tokens`` of the all-time rollup
    (``UsageTotal``) from the hourly one (one GROUP BY over the hourly rollup)."""
    q = (UsageHourly.select(UsageHourly.device, total(UsageHourly.cost_usd), total(UsageHourly.priced_records),
                            total(UsageHourly.unpriced_tokens)).group_by(UsageHourly.device).tuples())
    for device, usd, priced, unpriced in q:
        UsageTotal.update(cost_usd=usd or 0.0, priced_records=int(priced or 0), unpriced_tokens=int(unpriced or 0)
                          ).where(UsageTotal.device == device).execute()
