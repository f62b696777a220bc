"""What a run cost: the price rule of its model at its start, else the cost OpenClaw recorded, else
unpriced (never $0) -- the same rule as a usage record (:mod:`fleet_server.store.usage.prices`).

A run is priced as a whole with the rule of its newest model; a turn that switched models or crossed a
rule's effective date may differ from the sum of its messages by that rule change. When a rule changes,
:func:`reprice_runs` prices every run again and rebuilds the sessions' cost sums.
"""

from __future__ import annotations

from peewee import Case, fn

from fleet_server.store.bulk import executemany
from fleet_server.store.models import AgentRun, PriceRule
from fleet_server.store.sql import total


def run_cost(row: dict) -> float | None:
    """A run's cost (USD): its rule price, else OpenClaw's recorded cost, else None (unpriced)."""
    priced = row.get("priced_usd")
    return priced if priced is not None else row.get("cost_usd")


def reprice_runs(rules: list[PriceRule]) -> int:
    """Price every run again with ``rules`` (as :func:`~fleet_server.store.usage.prices.load_rules` returns
    them) and rebuild the cost sums of every session. Runs inside the caller's transaction.

    Returns:
        How many runs' rule price changed.
    """
    from fleet_server.store.usage.prices import price_rows  # prices calls this module when a rule changes

    changed = 0
    pairs = list(AgentRun.select(AgentRun.provider, AgentRun.model).distinct().tuples())
    for provider, model in pairs:
        cond = (AgentRun.provider == provider) & (AgentRun.model == model)
        rows = list(AgentRun.select(AgentRun.device, AgentRun.id, AgentRun.provider, AgentRun.model,
                                    AgentRun.started_ms.alias("ts"), AgentRun.input_tokens, AgentRun.output_tokens,
                                    AgentRun.cache_read_tokens, AgentRun.cache_write_tokens,
                                    AgentRun.priced_usd.alias("old")).where(cond).dicts())
        price_rows(rows, rules)
        updates = [(r["priced_usd"], r["device"], r["id"]) for r in rows if r["priced_usd"] != r["old"]]
        executemany('UPDATE "agent_run" SET "priced_usd" = ? WHERE "device" = ? AND "id" = ?', updates)
        changed += len(updates)
    rebuild_session_costs()
    return changed


def rebuild_session_costs() -> None:
    """Recompute ``cost_usd``, ``priced_turns`` and ``unpriced_tokens`` of every session from its runs
    (one GROUP BY over the runs)."""
    cost = fn.COALESCE(AgentRun.priced_usd, AgentRun.cost_usd)
    q = (AgentRun.select(AgentRun.device, AgentRun.agent_id, AgentRun.session_id, total(fn.COALESCE(cost, 0)),
                         total(Case(None, [(cost.is_null(False), 1)], 0)),
                         total(Case(None, [(cost.is_null(), AgentRun.total_tokens)], 0)))
         .group_by(AgentRun.device, AgentRun.agent_id, AgentRun.session_id).tuples())
    executemany('UPDATE "agent_session" SET "cost_usd" = ?, "priced_turns" = ?, "unpriced_tokens" = ? '
                'WHERE "device" = ? AND "agent_id" = ? AND "session_id" = ?',
                [(float(usd or 0.0), int(priced or 0), int(unpriced or 0), d, a, s) for d, a, s, usd, priced, unpriced
                 in q])
