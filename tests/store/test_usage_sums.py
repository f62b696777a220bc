"""The one usage-sums module: exact in half-hour and 45-minute zones and on DST days, agents
identified by (device, agent), the rollup path equal to the record path (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from history_helpers import add_device

from fleet_server.store.models import UsageHourly, UsageRecord, UsageTotal
from fleet_server.store.sql import QueryError
from fleet_server.store.usage.ledger import insert_usage
from fleet_server.store.usage.sums import (
    SUM_FIELDS,
    by_device,
    day_bounds_ms,
    month_bounds_ms,
    rollup_column,
    total_usage,
    usage,
    zone,
)

HOUR = 3_600_000


def _record(rid: str, device: str, ts: int, tokens: int, cost: float | None = None, agent: str = "main",
            failed: bool = False, model: str = "m") -> dict:
    return {"id": rid, "device": device, "ts": ts, "agent_id": agent, "session_id": "s", "provider": "p",
            "model": model, "input_tokens": tokens, "output_tokens": 0, "cache_read_tokens": 0,
            "cache_write_tokens": 0, "total_tokens": tokens, "cost_usd": cost, "source": "transcript",
            "failed": failed}


def _ms(tz: ZoneInfo, *args: int) -> int:
    return int(datetime(*args, tzinfo=tz).timestamp() * 1000)


def _only_records(group_by, start, end, tz):
    """The same question answered from the records alone (no rollup): the agents filter forces it."""
    agents = [(d, a) for d, a in UsageRecord.select(UsageRecord.device, UsageRecord.agent_id).distinct().tuples()]
    return usage(group_by, start, end, tz, agents=agents)


@pytest.mark.parametrize("tz_name", ["Asia/Kolkata", "America/St_Johns", "Asia/Kathmandu"])
def test_a_day_in_a_half_hour_zone_starts_mid_hour(store, tz_name):
    tz = ZoneInfo(tz_name)
    add_device("dev")
    add_device("other")
    with store.atomic():
        insert_usage([
            _record("a", "dev", _ms(tz, 2026, 3, 10, 0, 10), 1),  # just after local midnight
            _record("b", "dev", _ms(tz, 2026, 3, 9, 23, 50), 10),  # just before: yesterday, same UTC hour
            _record("c", "dev", _ms(tz, 2026, 3, 10, 12, 0), 100, 0.5),
            _record("d", "other", _ms(tz, 2026, 3, 10, 23, 59, 59), 1000),
            _record("e", "dev", _ms(tz, 2026, 3, 11, 0, 0), 10000),  # tomorrow
        ])
    now = _ms(tz, 2026, 3, 10, 18, 0)
    today = by_device(*day_bounds_ms(tz, 0, now))
    assert today["dev"].total_tokens == 101 and today["dev"].messages == 2 and today["dev"].priced_messages == 1
    assert today["dev"].cost_usd == 0.5 and today["other"].total_tokens == 1000
    assert total_usage(*day_bounds_ms(tz, 0, now)).total_tokens == 1101
    assert by_device(*day_bounds_ms(tz, -1, now))["dev"].total_tokens == 10
    assert by_device(*day_bounds_ms(tz, 0, now), devices=["other"]).keys() == {"other"}
    start, end = _ms(tz, 2026, 3, 9), _ms(tz, 2026, 3, 12)
    by_day = {r.key["day"]: r.total_tokens for r in usage(["day"], start, end, tz)}
    assert by_day == {"2026-03-09": 10, "2026-03-10": 1101, "2026-03-11": 10000}
    for group in (["day"], ["device", "day"], ["device"], []):
        assert usage(group, start, end, tz) == _only_records(group, start, end, tz), group


def test_a_dst_day_has_25_hours_and_every_record_of_it(store):
    berlin = ZoneInfo("Europe/Berlin")
    add_device("dev")
    start, end = day_bounds_ms(berlin, 0, _ms(berlin, 2026, 10, 25, 12, 0))
    assert end - start == 25 * HOUR
    with store.atomic():
        insert_usage([_record(f"r{h}", "dev", start + h * HOUR + 1, 1) for h in range(25)]
                     + [_record("before", "dev", start - 1, 100), _record("after", "dev", end, 100)])
    assert by_device(start, end)["dev"].total_tokens == 25
    days = {r.key["day"]: r.total_tokens for r in usage(["day"], start - HOUR, end + HOUR, berlin)}
    assert days == {"2026-10-24": 100, "2026-10-25": 25, "2026-10-26": 100}


def test_an_agent_is_a_device_and_an_agent_id(store):
    add_device("a")
    add_device("b")
    with store.atomic():
        insert_usage([_record("1", "a", 1_000, 5), _record("2", "b", 2_000, 7), _record("3", "b", 3_000, 1,
                                                                                          agent="research")])
    rows = {(r.key["device"], r.key["agent"]): r.total_tokens for r in usage(["agent"])}
    assert rows == {("a", "main"): 5, ("b", "main"): 7, ("b", "research"): 1}  # never main = 12
    assert total_usage(agents=[("b", "main")]).total_tokens == 7
    assert total_usage(models=["p/m"]).total_tokens == 13 and total_usage(models=["x"]).total_tokens == 0
    assert [r.key for r in usage(["session"])] == [{"device": "a", "session": "s"}, {"device": "b", "session": "s"}]


def test_rollups_agree_with_the_records_and_error_messages_are_kept(store):
    add_device("dev")
    with store.atomic():
        insert_usage([_record(f"r{i}", "dev", i * 600_000, i, cost=0.25 if i % 3 else None, failed=i % 4 == 0)
                      for i in range(40)])
    from_records = _only_records([], None, None, None)[0]
    assert total_usage() == from_records  # UsageTotal
    assert total_usage(0, 40 * 600_000) == from_records  # UsageHourly
    # failed messages (error messages); failed turns come from the runs (none here)
    assert (from_records.error_messages, from_records.failed_turns, from_records.messages) == (10, 0, 40)
    hourly = UsageHourly.select().count()
    assert hourly == 7 and UsageTotal.get_by_id("dev").failed_turns == 10  # the rollup's column of error messages
    assert usage(["device"], 123_456, 7_654_321) == _only_records(["device"], 123_456, 7_654_321, None)


def test_all_time_sums_read_the_totals_table(store):
    add_device("dev")
    with store.atomic():
        insert_usage([_record("x", "dev", 5, 3)])
    row = UsageTotal.get_by_id("dev")
    assert [getattr(row, rollup_column(n)) for n in SUM_FIELDS] == [1, 3, 0, 0, 0, 3, 0, 0.0, 0, 3]
    assert usage(["device"])[0].key == {"device": "dev"} and usage([])[0].total_tokens == 3
    assert usage([])[0].as_json()["cost_usd"] is None  # unpriced, not $0


def test_zone_and_group_errors_say_what_is_expected():
    with pytest.raises(QueryError, match="IANA"):
        zone("Not/AZone")
    assert zone(None).key == "UTC" and zone("Asia/Kathmandu").key == "Asia/Kathmandu"
    with pytest.raises(QueryError, match="group_by"):
        usage(["colour"])


def test_month_bounds():
    tz = ZoneInfo("Asia/Kolkata")
    start, end = month_bounds_ms(tz, _ms(tz, 2026, 12, 31, 23, 0))
    assert (start, end) == (_ms(tz, 2026, 12, 1), _ms(tz, 2027, 1, 1))
