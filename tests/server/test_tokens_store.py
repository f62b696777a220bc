"""Token sums, prices and re-pricing, unpriced never $0, CSV round-trip (real SQLite, the fixtures'
records collected by the agent's collectors and stored by the server's insert path)."""

from __future__ import annotations

import pytest
from usage_seed import DEVICES, expected_by_agent, seed_fixture_usage

from fleet_server.dashboard.parts.format import cost_h, token_breakdown
from fleet_server.dashboard.parts.usage_csv import from_csv, to_csv
from fleet_server.store.models import UsageRecord
from fleet_server.store.sql import QueryError
from fleet_server.store.usage import prices, sums

KEYS = ("messages", "input_tokens", "output_tokens", "cache_read_tokens", "total_tokens", "error_messages",
        "failed_turns")


@pytest.fixture
def seeded(db, tmp_path):
    seed_fixture_usage(tmp_path, with_logs=False)
    return db


def test_per_agent_and_per_day_totals_equal_the_fixture_sums(seeded):
    by_agent = {r.key["agent"]: r for r in sums.usage(["agent"])}
    assert {(r.key["device"], r.key["agent"]) for r in by_agent.values()} == {(d, a) for d, (_, a) in DEVICES.items()}
    want = expected_by_agent()
    assert set(by_agent) == set(want) == {"main", "research"}
    for agent, expected in want.items():
        assert {k: getattr(by_agent[agent], k) for k in KEYS} == expected, agent
    # all turns happened on 2026-11-21 around 04:10 UTC
    (day,) = sums.usage(["day"])
    assert day.key == {"day": "2026-11-21"}
    assert day.total_tokens == sum(s["total_tokens"] for s in want.values()) == 87124 + 39920
    # in Los Angeles (UTC-8) the same instants fall on the evening before
    (la,) = sums.usage(["day"], tz="America/Los_Angeles")
    assert la.key == {"day": "2026-11-20"} and la.total_tokens == day.total_tokens
    by_session = {r.key["session"][:8]: r for r in sums.usage(["session"])}
    assert by_session["f5d14729"].total_tokens == 15954
    # the 2026.7 429 was retried 3 times: 4 error messages, one failed turn (issue 19, defect 2)
    assert (by_session["f5d14729"].error_messages, by_session["f5d14729"].failed_turns) == (4, 1)


def test_stub_model_is_unpriced_never_zero_dollars(seeded):
    (total,) = sums.usage([])
    assert total.priced_messages == 9  # the failed turns: zero tokens, OpenClaw's cost 0 -> a real $0
    assert total.unpriced_tokens == total.total_tokens == 127044
    assert total.as_json()["cost_usd"] == 0.0 or total.as_json()["cost_usd"] is None
    assert cost_h(total) == "unpriced (127,044 tokens)"  # never "$0"
    assert cost_h(sums.total_usage(0, 2**62)) == "unpriced (127,044 tokens)"  # the hourly rollup: the same
    assert token_breakdown(total).endswith("· unpriced (127,044 tokens)")  # not "· $0.00" beside it
    by_model = sums.usage(["model"])
    stub = next(r for r in by_model if r.key["model"] == "stubllm/stub-model")
    assert "unpriced" in cost_h(stub)
    assert sums.total_usage() == total  # all time from the per-device totals: the same figures


def test_a_price_rule_reprices_history_and_deleting_it_unprices_again(seeded):
    rule, changed = prices.add_rule(prices.RuleInput("stubllm/*", input_usd_per_mtok=3.0, output_usd_per_mtok=15.0,
                                                     cache_read_usd_per_mtok=0.3))
    records = UsageRecord.select().count()
    assert changed == records == 21  # every record of the model is now rule-priced (failed turns: $0 for 0 tokens)
    (total,) = sums.usage([])
    exp_in = 86153 + 39296
    exp_out = 203 + 112
    exp_cr = 768 + 512
    assert total.unpriced_tokens == 0 and total.priced_messages == records
    assert total.cost_usd == pytest.approx((exp_in * 3 + exp_out * 15 + exp_cr * 0.3) / 1e6)
    assert sums.total_usage(0, 2**62).cost_usd == pytest.approx(total.cost_usd)  # hourly rollup follows
    assert sums.total_usage().cost_usd == pytest.approx(total.cost_usd)  # and the all-time sums
    assert prices.add_rule(prices.RuleInput("stubllm/*", 3.0, 15.0, 0.3))[1] == 0  # same prices: nothing changed
    # a newer rule takes over from its effective date on only
    later = prices.RuleInput("stub-model", 6.0, 30.0, 0.6, effective_ms=1_795_234_800_000)
    _, changed = prices.add_rule(later)
    moved = UsageRecord.select().where((UsageRecord.ts >= later.effective_ms) & (UsageRecord.total_tokens > 0)).count()
    assert 0 < changed == moved < records
    for r in prices.load_rules():
        prices.delete_rule(r.id)
    (total,) = sums.usage([])
    assert total.unpriced_tokens == 127044


def test_price_rule_validation_names_the_field():
    with pytest.raises(prices.PriceError, match="output price"):
        prices.RuleInput("gpt-*", 1.0, -2.0).validated()
    with pytest.raises(prices.PriceError, match="model pattern"):
        prices.RuleInput("  ", 1.0, 2.0).validated()
    assert prices.matches("anthropic/claude-*", "anthropic", "claude-sonnet-4")
    assert prices.matches("claude-*", "anthropic", "claude-sonnet-4")
    assert not prices.matches("gpt-*", "anthropic", "claude-sonnet-4")


def test_csv_export_round_trips(seeded):
    prices.add_rule(prices.RuleInput("stub-model", 1.25, 10.0, effective_ms=1_795_234_800_000))
    names = {"oc-latest": "Latest box"}
    for group in ("device", "agent", "model", "day"):
        rows = sums.usage([group])
        keys = list(rows[0].key)
        parsed = from_csv(to_csv(rows, keys, names))
        want = [r.as_json() for r in rows]
        for w in want:
            if "device" in w:
                w["device_name"] = names.get(w["device"], w["device"])  # the display name beside the id
        assert parsed == want, group
    assert {r["device"] for r in from_csv(to_csv(sums.usage(["device"]), ["device"]))} == set(DEVICES)


def test_bad_group_and_zone_are_clear_errors(seeded):
    with pytest.raises(QueryError, match="group_by"):
        sums.usage(["colour"])
    with pytest.raises(QueryError, match="time zone"):
        sums.usage(["day"], tz="Mars/Olympus")
