"""Overview and device page with history (NiceGUI user simulation, real SQLite): greyed last values
of a device that is not reporting, status duration since the transition, charts and availability."""

from __future__ import annotations

import time

from history_helpers import add_device, add_samples
from nicegui import ui
from nicegui.testing.user_simulation import user_simulation

from fleet_server.dashboard import register_pages
from fleet_server.state import FleetState
from fleet_server.store.db import open_database
from fleet_server.store.history.rollups import roll_up_all
from fleet_server.store.models import StatusEvent
from shared import schemas


def _telemetry(device_id: str, ts: int) -> schemas.Telemetry:
    return schemas.Telemetry(device_id=device_id, ts=ts, cpu_pct=42, mem_used_bytes=1, mem_total_bytes=2, mem_pct=50,
                             disk_used_bytes=1, disk_total_bytes=2, disk_pct=50, swap_pct=0, net_rx_bps=0,
                             net_tx_bps=0, uptime_s=60)


async def test_offline_rows_show_greyed_last_values_and_status_since_the_transition(tmp_path, log_in):
    open_database(tmp_path)
    now = int(time.time() * 1000)
    add_device("live")
    add_device("gone")
    state = FleetState()
    state.load_from_db()
    state.upsert("live", status="online", status_ms=now - 3_600_000, telemetry=_telemetry("live", now),
                 last_seen_ms=now)
    state.upsert("live", status="online", status_ms=now)  # re-announced: the hour-old transition stays
    state.upsert("gone", status="offline", status_reason="no data for 3 intervals", status_ms=now - 120_000,
                 telemetry=_telemetry("gone", now - 200_000), last_seen_ms=now - 200_000)
    async with user_simulation() as user:
        register_pages(state)
        await log_in(user)
        await user.open("/")
        await user.should_see("for 1h 0m")  # not "for 0s": since the transition
        await user.should_see("for 2m ")
        rows = {r["id"]: r for r in user.find(marker="fleet-table").elements.pop().rows}
        assert rows["gone"]["stale"] and not rows["live"]["stale"]  # only the offline device's figures are greyed
        assert rows["gone"]["cpu"] == "42%" and "last value" in rows["gone"]["stale_tip"]


async def test_device_page_has_charts_and_availability(tmp_path, log_in):
    database = open_database(tmp_path)
    now = int(time.time() * 1000)
    add_device("box")
    add_samples("box", now - 2 * 86_400_000, now, step_ms=60_000)
    StatusEvent.create(device="box", ts=now - 2 * 86_400_000, state="online")
    StatusEvent.create(device="box", ts=now - 3_600_000, state="offline", reason="last-will")
    StatusEvent.create(device="box", ts=now - 1_800_000, state="online")
    roll_up_all(database)
    state = FleetState()
    state.load_from_db()
    async with user_simulation() as user:
        register_pages(state)
        await log_in(user)
        await user.open("/device/box")
        await user.should_see("5-minute averages and maxima")
        charts = user.find(kind=ui.echart).elements
        assert len(charts) == 7
        cpu = next(c for c in charts if c.options["title"]["text"] == "CPU")
        assert len(cpu.options["series"][0]["data"]) >= 288  # 24 h of 5-minute buckets
        await user.should_see("uptime 24 h", retries=50)
        await user.should_see("97.92%")  # 30 of 1440 minutes offline
        await user.should_see("30m 0s, last will")


def test_a_young_device_opens_on_a_short_window_and_charts_use_the_viewer_zone():
    from fleet_server.dashboard.parts.charts import CHARTS, ChartLook, chart_options, first_window

    now = 1_800_000_000_000
    assert first_window(now - 30 * 60_000, now) == "1h" and first_window(now - 5 * 3_600_000, now) == "6h"
    assert first_window(now - 3 * 86_400_000, now) == "24h" and first_window(None, now) == "24h"
    opts = chart_options(CHARTS[0], "raw", [], [], now - 3_600_000, now, 30, ChartLook("Asia/Kolkata", dark=True))
    assert opts["xAxis"]["axisLabel"]["hideOverlap"] is True  # no overlapping time labels on a phone
    assert '"Asia/Kolkata"' in opts["xAxis"]["axisLabel"][":formatter"] and '"Asia/Kolkata"' in opts["tooltip"][
        ":formatter"]
    assert opts["title"]["textStyle"]["color"] == "#e5e7eb"  # readable on the dark card


def test_uptime_says_how_much_of_the_window_is_known():
    from fleet_server.store.history.availability import Period, uptime

    now = 1_800_000_000_000
    periods = [Period("online", now - 3_600_000, None, None)]  # a device one hour old
    pct, known = uptime(periods, now - 30 * 86_400_000, now)
    assert pct == 100.0 and known == 3_600_000  # 100 % of one hour, not of 30 days
