"""The dashboard formats any stored value without raising: non-finite floats, integers far above
int64, timestamps far in the future, written straight into a real SQLite file (as an older server
without bounds, or a hand edit, could have left them)."""

from __future__ import annotations

import math

from nicegui.testing.user_simulation import user_simulation

from fleet_server.dashboard import register_pages
from fleet_server.state import FleetState
from fleet_server.store.models import Device
from shared import schemas
from shared.clock import now_ms


async def test_pages_render_absurd_stored_values(db, log_in):
    Device.create(id="wild", name="Wild box", key_hash="x", key_hint="abcd", created_ms=now_ms(),
                  status="online", status_ms=10**17, last_seen_ms=2**62,
                  meta_json='{"v":1,"device_id":"wild","ts":1,"hostname":"h","os":"Linux","agent_version":"1",'
                            '"cpu_count":1,"mem_total_bytes":1,"disk_total_bytes":1,"boot_time_ms":1}')
    # raw SQL: peewee's field conversion would refuse these values, an older database may hold them
    db.execute_sql(
        "INSERT INTO sample (device, ts, cpu_pct, mem_used_bytes, mem_total_bytes, mem_pct, disk_used_bytes, "
        "disk_total_bytes, disk_pct, swap_pct, net_rx_bps, net_tx_bps, load1, load5, load15, uptime_s, openclaw_up) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        ("wild", now_ms(), -math.inf, 1e300, 1e300, math.inf, 2**63 - 1, 2**63 - 1, -math.inf, 1e308, math.inf,
         -1e300, math.inf, -math.inf, -1.0, math.inf, 1))  # (SQLite stores NaN as NULL, so no NaN here)
    Device.create(id="forever", name="Forever box", key_hash="x", key_hint="abcd", created_ms=now_ms())
    db.execute_sql(  # valid to the old schema except for Infinity, which broke "/" for everyone
        "INSERT INTO sample (device, ts, cpu_pct, mem_used_bytes, mem_total_bytes, mem_pct, disk_used_bytes, "
        "disk_total_bytes, disk_pct, swap_pct, net_rx_bps, net_tx_bps, uptime_s) "
        "VALUES ('forever', ?, 1, 1, 2, 50, 1, 2, 50, 0, ?, 0, ?)", (now_ms(), math.inf, math.inf))
    hour = (now_ms() // 3_600_000) * 3_600_000
    for h in (hour, hour - 3_600_000):
        db.execute_sql(
            "INSERT INTO usage_hourly (device, hour_ms, records, input_tokens, output_tokens, cache_read_tokens, "
            "cache_write_tokens, total_tokens, failed_turns, cost_usd, priced_records, unpriced_tokens) "
            "VALUES (?, ?, 1, ?, ?, 0, 0, ?, 0, ?, 1, 0)",
            ("wild", h, 6 * 10**18, 1e30, 6 * 10**18, math.inf))
    db.execute_sql(
        "INSERT INTO usage_total (device, records, input_tokens, output_tokens, cache_read_tokens, "
        "cache_write_tokens, total_tokens, failed_turns, cost_usd, priced_records, unpriced_tokens) "
        "VALUES (?, 2, ?, ?, 0, 0, ?, 0, ?, 2, 0)", ("wild", 2**63 - 1, 1e30, 2**63 - 1, math.inf))
    Device.create(id="cached", name="Cached box", key_hash="x", key_hint="abcd", created_ms=now_ms())
    state = FleetState()
    state.load_from_db()
    # a value that reached the cache without validation (model_construct skips it) must render too
    state.upsert("cached", status="online", last_seen_ms=now_ms(), telemetry=schemas.Telemetry.model_construct(
        device_id="cached", ts=now_ms(), cpu_pct=math.inf, mem_used_bytes=10**30, mem_total_bytes=10**30,
        mem_pct=math.nan, disk_used_bytes=1, disk_total_bytes=1, disk_pct=1.0, swap_pct=0.0, net_rx_bps=math.inf,
        net_tx_bps=1.0, load_avg=(math.inf, math.nan, 1.0), uptime_s=math.inf, openclaw=None))
    async with user_simulation() as user:
        register_pages(state)
        await log_in(user)
        await user.open("/")
        await user.should_see("Wild box")
        await user.should_see("Cached box")
        await user.should_see("Forever box")
        for device_id in ("wild", "cached", "forever"):
            await user.open(f"/device/{device_id}")
            await user.should_see("Latest sample")
