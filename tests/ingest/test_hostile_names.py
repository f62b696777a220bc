"""A device that invents names cannot blow up the fleet's series: 20,000 usage records with 10,000
model names (and as many agents and sessions) through a real Mosquitto into a real FleetServer and
SQLite. The first names of the day are kept; the rest are stored under "(other)", their tokens
still counted, and each record kept that way is counted per device and reason."""

from __future__ import annotations

from e2e_helpers import wait_for
from payload_helpers import DeviceConn, batch, usage_record
from peewee import fn

from fleet_server.ingest.cardinality import OTHER, USAGE_NAMES, NameBudget
from fleet_server.server import FleetServer
from fleet_server.store.models import RejectCount, UsageRecord
from shared.topics import Channel


def test_names_over_the_daily_budget_are_kept_as_other(fleet: FleetServer):
    assert fleet.ingest is not None
    fleet.ingest.subscriber.limits = None  # 6 MB at once is over the byte budget (tests/ingest/test_flood.py)
    with DeviceConn(fleet, "namer") as dev:
        sent = 0
        for b in range(40):
            records = [usage_record(f"record-{b}-{k}", provider="evil", model=f"model-{(b * 500 + k) // 2}",
                                    agent_id=f"agent-{b * 500 + k}", session_id=f"session-{b * 500 + k}")
                       for k in range(500)]
            dev.publish(Channel.USAGE, batch(dev.device_id, records))
            sent += len(records)
        q = UsageRecord.select().where(UsageRecord.device == dev.device_id)
        wait_for(lambda: q.count() == sent, 60, what="every record stored")
    u = UsageRecord
    models = u.select(fn.COUNT(fn.DISTINCT(u.model))).where(u.device == dev.device_id).scalar()
    agents = u.select(fn.COUNT(fn.DISTINCT(u.agent_id))).where(u.device == dev.device_id).scalar()
    sessions = u.select(fn.COUNT(fn.DISTINCT(u.session_id))).where(u.device == dev.device_id).scalar()
    assert (models, agents, sessions) == (USAGE_NAMES.models.limit + 1, USAGE_NAMES.agents.limit + 1,
                                          USAGE_NAMES.sessions.limit + 1)
    assert u.select(fn.SUM(u.total_tokens)).where(u.device == dev.device_id).scalar() == sent * 125
    assert u.select().where((u.device == dev.device_id) & (u.model == OTHER)).count() == sent - 100
    counts = {r.reason: r.count for r in RejectCount.select().where(RejectCount.device == dev.device_id)}
    assert counts == {"model_over_limit": sent - 100, "agent_over_limit": sent - USAGE_NAMES.agents.limit,
                      "session_over_limit": sent - USAGE_NAMES.sessions.limit}
    wait_for(lambda: fleet.state.get(dev.device_id).rejects.get("model_over_limit") == sent - 100, 10,
             what="the device view to count them")


def test_name_budget_per_device_and_day():
    budget = NameBudget("model", limit=2, period_ms=1000)
    assert [budget.admit("a", n, 10) for n in ("x", "y", "z", "x")] == ["x", "y", OTHER, "x"]
    assert budget.admit("b", "z", 10) == "z", "another device has its own budget"
    assert budget.admit("a", OTHER, 10) == OTHER
    assert budget.admit("a", "z", 1010) == "z", "a new period starts again"


def test_sessions_runs_and_tool_calls_follow_the_same_budgets():
    from fleet_server.ingest.cardinality import UsageLimits, UsageNames
    from fleet_server.ingest.messages import CacheChange

    names = UsageNames(UsageLimits(models=5, agents=2, sessions=3))
    change = CacheChange()
    lists = {"sessions": [{"device": "d", "agent_id": "a", "session_id": f"s{i}"} for i in range(5)],
             "runs": [{"device": "d", "agent_id": f"a{i}", "session_id": "s0"} for i in range(3)],
             "tool_calls": [{"device": "d", "agent_id": "a", "session_id": "s4"}]}
    names.bound_activity(lists, change, 1_000)
    assert [r["session_id"] for r in lists["sessions"]] == ["s0", "s1", "s2", OTHER, OTHER]
    assert [r["agent_id"] for r in lists["runs"]] == ["a0", OTHER, OTHER], "'a' and 'a0' are the two agents"
    assert lists["tool_calls"][0]["session_id"] == OTHER, "the same session is (other) everywhere"
    assert sorted({n.reason for n in change.rejects}) == ["agent_over_limit", "session_over_limit"]
