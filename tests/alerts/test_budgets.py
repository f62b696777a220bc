"""Budgets on recorded usage (real SQLite, the real usage insert path, a settable clock): 80/90/100 %
each once per period, across a 23-hour DST day and a month edge in a half-hour zone, with the
projection in the message; token budgets count unpriced models."""

from __future__ import annotations

import uuid
from datetime import datetime
from zoneinfo import ZoneInfo

from alert_helpers import Clock, put

from fleet_server.alerts.engine import AlertEngine
from fleet_server.alerts.rules import save_rule
from fleet_server.store.alert_models import AlertEvent, AlertIncident
from fleet_server.store.locks import write_transaction
from fleet_server.store.models import db
from fleet_server.store.usage.ledger import insert_usage

BERLIN, KOLKATA = ZoneInfo("Europe/Berlin"), ZoneInfo("Asia/Kolkata")


def at(zone: ZoneInfo, *parts: int) -> int:
    """Epoch ms of a local wall-clock time."""
    return int(datetime(*parts, tzinfo=zone).timestamp() * 1000)


def spend(device: str, ts: int, tokens: int, cost: float | None = None, model: str = "local-llm") -> None:
    row = {"device": device, "id": uuid.uuid4().hex, "ts": ts, "agent_id": "main", "session_id": "s", "provider": "x",
           "model": model, "input_tokens": tokens, "output_tokens": 0, "cache_read_tokens": 0, "cache_write_tokens": 0,
           "total_tokens": tokens, "cost_usd": cost, "source": "transcript", "failed": False}
    with write_transaction(db.obj):
        insert_usage([row])


def budget_events() -> list[tuple[str, str]]:
    return [(e.subject, e.headline) for e in AlertEvent.select().where(AlertEvent.kind == "budget")
            .order_by(AlertEvent.id)]


def evaluate(eng: AlertEngine, clock: Clock, ms: int) -> None:
    clock.ms = ms
    eng.tick()  # hours apart: each tick is a full pass, budgets included


def test_daily_token_budget_across_a_dst_day_warns_at_80_90_100_once_each(db, state):
    clock = Clock(at(BERLIN, 2026, 3, 28, 12, 0))
    save_rule("budget", "fleet", "critical", {"unit": "tokens", "amount": 1_000_000, "period": "day",
                                              "zone": "Europe/Berlin"})
    for d in ("a", "b"):
        put(state, d, clock(), "online")
    eng = AlertEngine(state, clock=clock, settle_s=0)
    eng.load()
    spend("a", at(BERLIN, 2026, 3, 28, 23, 30), 700_000)  # the day before: not today's
    evaluate(eng, clock, at(BERLIN, 2026, 3, 28, 23, 45))
    assert budget_events() == []
    # 2026-03-29: clocks jump from 02:00 to 03:00 (a 23-hour day)
    spend("a", at(BERLIN, 2026, 3, 29, 1, 30), 300_000)
    spend("b", at(BERLIN, 2026, 3, 29, 3, 30), 500_000)  # unpriced model, still counted in tokens
    evaluate(eng, clock, at(BERLIN, 2026, 3, 29, 3, 45))
    spend("a", at(BERLIN, 2026, 3, 29, 10, 0), 100_000)
    evaluate(eng, clock, at(BERLIN, 2026, 3, 29, 10, 30))
    evaluate(eng, clock, at(BERLIN, 2026, 3, 29, 11, 30))  # nothing new: no repeat
    spend("b", at(BERLIN, 2026, 3, 29, 15, 0), 150_000)
    evaluate(eng, clock, at(BERLIN, 2026, 3, 29, 15, 5))
    spend("b", at(BERLIN, 2026, 3, 29, 23, 50), 50_000)
    evaluate(eng, clock, at(BERLIN, 2026, 3, 29, 23, 55))
    got = budget_events()
    assert [h for _, h in got] == ["Fleet: daily token budget at 80 % (passed 80 %)",
                                   "Fleet: daily token budget at 90 % (passed 90 %)",
                                   "Fleet: daily token budget at 105 % (passed 100 %)"]
    texts = [e.text for e in AlertEvent.select().where(AlertEvent.kind == "budget").order_by(AlertEvent.id)]
    assert "800,000 of 1,000,000 tokens" in texts[0] and "the day 2026-03-29 (Europe/Berlin)" in texts[0]
    assert "At this rate the daily budget is reached at" in texts[0] and ("CEST" in texts[0])
    assert "At this rate the day ends at about" in texts[2]
    sev = [e.severity for e in AlertEvent.select().where(AlertEvent.kind == "budget").order_by(AlertEvent.id)]
    assert sev == ["warning", "warning", "critical"]
    # the next day starts over: the old incident closes without a message, a new one warns again
    spend("a", at(BERLIN, 2026, 3, 30, 0, 30), 850_000)
    evaluate(eng, clock, at(BERLIN, 2026, 3, 30, 0, 45))
    assert [h for _, h in budget_events()][3:] == ["Fleet: daily token budget at 85 % (passed 80 %)"]
    assert [(i.period, i.state, i.level) for i in AlertIncident.select().order_by(AlertIncident.id)] == [
        ("2026-03-29", "resolved", 100), ("2026-03-30", "firing", 80)]


def test_monthly_cost_budget_at_a_month_edge_in_a_half_hour_zone(any_db, state):
    clock = Clock(at(KOLKATA, 2026, 1, 31, 23, 0))
    save_rule("budget", "tag:prod", "critical", {"unit": "usd", "amount": 10, "period": "month",
                                                 "zone": "Asia/Kolkata"})
    put(state, "p1", clock(), "online", tags="prod")
    put(state, "dev1", clock(), "online", tags="dev")
    eng = AlertEngine(state, clock=clock, settle_s=0)
    eng.load()
    spend("dev1", at(KOLKATA, 2026, 1, 31, 22, 0), 1000, cost=50.0, model="m")  # not in the scope
    spend("p1", at(KOLKATA, 2026, 1, 31, 23, 50), 1000, cost=9.0, model="m")  # 18:20 UTC, January in Kolkata
    spend("p1", at(KOLKATA, 2026, 2, 1, 0, 10), 1000, cost=3.0, model="m")  # 18:40 UTC, the same UTC hour: February
    evaluate(eng, clock, at(KOLKATA, 2026, 1, 31, 23, 55))
    assert [h for _, h in budget_events()] == ["tag:prod: monthly cost budget at 90 % (passed 90 %)"]
    evaluate(eng, clock, at(KOLKATA, 2026, 2, 1, 0, 20))  # February: $3 = 30 %, January's incident closes
    assert len(budget_events()) == 1
    spend("p1", at(KOLKATA, 2026, 2, 1, 5, 0), 1000, cost=5.5, model="m")
    evaluate(eng, clock, at(KOLKATA, 2026, 2, 1, 5, 30))
    assert [h for _, h in budget_events()][1:] == ["tag:prod: monthly cost budget at 85 % (passed 80 %)"]
    text = AlertEvent.select().order_by(AlertEvent.id.desc()).first().text
    assert "$8.50 of $10.00" in text and "the month 2026-02 (Asia/Kolkata)" in text
    assert [(i.period, i.state) for i in AlertIncident.select().order_by(AlertIncident.id)] == [
        ("2026-01", "resolved"), ("2026-02", "firing")]


def test_per_device_budget_is_one_incident_per_device(db, state):
    clock = Clock(at(BERLIN, 2026, 3, 20, 9, 0))
    save_rule("budget", "fleet", "warning", {"unit": "tokens", "amount": 1000, "period": "day", "zone": "UTC",
                                             "steps": [100], "per_device": True})
    for d in ("x", "y", "z"):
        put(state, d, clock(), "online")
    eng = AlertEngine(state, clock=clock, settle_s=0)
    eng.load()
    spend("x", clock() - 60_000, 1500)
    spend("y", clock() - 60_000, 999)
    evaluate(eng, clock, clock() + 1000)
    assert [s for s, _ in budget_events()] == ["x"]
