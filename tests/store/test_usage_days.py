"""Today / yesterday token sums in the viewer's zone: exact in half-hour zones and on DST days."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from history_helpers import add_device

from fleet_server.store.usage.days import day_bounds_ms, fleet_total, usage_between, zone
from fleet_server.store.usage.ledger import insert_usage


def _record(rid: str, device: str, ts: int, tokens: int, cost: float | None = None) -> dict:
    return {"id": rid, "device": device, "ts": ts, "agent_id": "main", "session_id": "s", "provider": "p",
            "model": "m", "input_tokens": tokens, "output_tokens": 0, "cache_read_tokens": 0, "cache_write_tokens": 0,
            "total_tokens": tokens, "cost_usd": cost, "source": "transcript"}


def _ms(tz: ZoneInfo, *args: int) -> int:
    return int(datetime(*args, tzinfo=tz).timestamp() * 1000)


def test_kolkata_day_starts_at_half_past_the_utc_hour(store):
    kolkata = ZoneInfo("Asia/Kolkata")
    add_device("dev")
    add_device("other")
    with store.atomic():
        insert_usage([
            _record("a", "dev", _ms(kolkata, 2026, 3, 10, 0, 10), 1),  # 00:10 local = 18:40 UTC "yesterday"
            _record("b", "dev", _ms(kolkata, 2026, 3, 9, 23, 50), 10),  # 23:50 local yesterday, same UTC hour
            _record("c", "dev", _ms(kolkata, 2026, 3, 10, 12, 0), 100, 0.5),
            _record("d", "other", _ms(kolkata, 2026, 3, 10, 23, 59, 59), 1000),
            _record("e", "dev", _ms(kolkata, 2026, 3, 11, 0, 0), 10000),  # tomorrow
        ])
    now = _ms(kolkata, 2026, 3, 10, 18, 0)
    today = usage_between(*day_bounds_ms(kolkata, 0, now))
    assert today["dev"].total_tokens == 101 and today["dev"].records == 2 and today["dev"].priced_records == 1
    assert today["dev"].cost_usd == 0.5 and today["other"].total_tokens == 1000
    assert fleet_total(today).total_tokens == 1101
    assert usage_between(*day_bounds_ms(kolkata, -1, now))["dev"].total_tokens == 10
    assert usage_between(*day_bounds_ms(kolkata, 0, now), device_id="other").keys() == {"other"}


def test_dst_day_has_25_hours_and_every_record_of_it(store):
    berlin = ZoneInfo("Europe/Berlin")
    add_device("dev")
    start, end = day_bounds_ms(berlin, 0, _ms(berlin, 2026, 10, 25, 12, 0))
    assert end - start == 25 * 3_600_000
    with store.atomic():
        insert_usage([_record(f"r{h}", "dev", start + h * 3_600_000 + 1, 1) for h in range(25)]
                     + [_record("before", "dev", start - 1, 100), _record("after", "dev", end, 100)])
    assert usage_between(start, end)["dev"].total_tokens == 25


def test_unknown_zone_names_fall_back_to_utc():
    assert zone("Not/AZone").key == "UTC" and zone(None).key == "UTC" and zone("Asia/Kathmandu").key == "Asia/Kathmandu"
