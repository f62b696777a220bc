"""Price rules and re-pricing: what a usage record cost in USD.

Cost of a record = the matching :class:`~fleet_server.store.models.PriceRule` (USD per million
tokens of each type), else the cost OpenClaw recorded (``cost_usd``), else **unpriced** — never $0.
The rule's result is stored in ``UsageRecord.priced_usd`` at insert time and again, paced, by
:func:`fleet_server.store.usage.reprice.reprice` whenever a rule changes, so history is re-priced;
the hourly and all-time rollups' ``cost_usd``, ``priced_records`` and ``unpriced_tokens`` follow.

No default price list ships: prices change often and a wrong one is worse than "unpriced".
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from fleet_server.store.locks import write_transaction
from fleet_server.store.models import JobMark, PriceRule, db
from shared.clock import now_ms

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


JOB = "reprice"
"""``JobMark.job`` that says history must be re-priced (:mod:`fleet_server.store.usage.reprice`)."""


def mark_due() -> None:
    """Record that history must be re-priced (call in the transaction that changes a rule)."""
    ts = now_ms()
    JobMark.insert(job=JOB, requested_ms=ts, finished_ms=None).on_conflict(
        conflict_target=[JobMark.job], update={JobMark.requested_ms: ts}).execute()


def reprice_due() -> bool:
    """True when a rule changed that no finished re-pricing pass covers (also one cut short by a restart).
    A finished pass sets ``finished_ms`` to the ``requested_ms`` it read before it loaded the rules."""
    mark = JobMark.get_or_none(JobMark.job == JOB)
    return mark is not None and (mark.finished_ms is None or mark.requested_ms > mark.finished_ms)


def save_rule(rule: RuleInput) -> PriceRule:
    """Store a new rule and mark history for re-pricing (one short transaction; the re-pricing job,
    :mod:`fleet_server.jobs.reprice`, does the rest). Raises PriceError."""
    r = rule.validated()
    with write_transaction(db.obj):
        row = PriceRule.create(**r.__dict__, created_ms=now_ms())
        mark_due()
    return row


def replace_rule(rule_id: int, rule: RuleInput) -> None:
    """Replace rule ``rule_id`` and mark history for re-pricing. Raises PriceError (also when unknown)."""
    r = rule.validated()
    with write_transaction(db.obj):
        if PriceRule.update(**r.__dict__).where(PriceRule.id == rule_id).execute() == 0:
            raise PriceError(f"no price rule {rule_id}")
        mark_due()


def remove_rule(rule_id: int) -> None:
    """Delete a rule and mark history for re-pricing. Raises PriceError when unknown."""
    with write_transaction(db.obj):
        if PriceRule.delete().where(PriceRule.id == rule_id).execute() == 0:
            raise PriceError(f"no price rule {rule_id}")
        mark_due()


def add_rule(rule: RuleInput) -> tuple[PriceRule, int]:
    """:func:`save_rule`, then re-price history in this thread (paced); returns (the rule, records
    re-priced). For scripts and tests; the dashboard leaves the re-pricing to the background job."""
    from fleet_server.store.usage.reprice import reprice

    row = save_rule(rule)
    return row, reprice()


def update_rule(rule_id: int, rule: RuleInput) -> int:
    """:func:`replace_rule`, then re-price here; returns records re-priced. Raises PriceError."""
    from fleet_server.store.usage.reprice import reprice

    replace_rule(rule_id, rule)
    return reprice()


def delete_rule(rule_id: int) -> int:
    """:func:`remove_rule`, then re-price here; returns records re-priced. Raises PriceError."""
    from fleet_server.store.usage.reprice import reprice

    remove_rule(rule_id)
    return reprice()
