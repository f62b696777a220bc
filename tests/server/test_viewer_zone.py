"""Every time on a page is in the viewer's zone — the user's saved one, else the browser's — and the page
names it: the device page's sample, "status since", boot time and latest error, every time on /logs,
the audit log. Dark mode and the zone are the user's settings, kept across browsers and logins
(real SQLite, NiceGUI user simulation; the simulated browser tells no zone, so the saved one is set)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from nicegui import ui
from nicegui.testing.user_simulation import user_simulation

from fleet_server.auth.accounts import save_user_settings, user_settings
from fleet_server.dashboard import register_pages
from fleet_server.state import FleetState
from fleet_server.store.models import Device, LogRecord, StatusEvent
from fleet_server.store.rows import meta_json
from shared import schemas

KOLKATA = ZoneInfo("Asia/Kolkata")
T = int(datetime(2026, 12, 7, 9, 15, 30, tzinfo=ZoneInfo("UTC")).timestamp() * 1000)  # 14:45:30 in Kolkata


def _seed() -> FleetState:
    meta = schemas.Meta(device_id="box", ts=T, hostname="box", os="Linux", agent_version="0.1", cpu_count=2,
                        mem_total_bytes=1, disk_total_bytes=1, boot_time_ms=T - 3_600_000)
    Device.create(id="box", name="Box", key_hash="x", key_hint="abcd", created_ms=T, status="online", status_ms=T,
                  meta_json=meta_json(meta))
    StatusEvent.create(device="box", ts=T, state="online")
    LogRecord.create(device="box", id="e1", ts=T + 60_000, level="error", subsystem="gateway",
                     message="HTTP 500 from the model", fingerprint="f" * 16, source="gateway-log")
    state = FleetState()
    state.load_from_db()
    state.upsert("box", telemetry=schemas.Telemetry(
        device_id="box", ts=T, cpu_pct=1, mem_used_bytes=1, mem_total_bytes=2, mem_pct=50, disk_used_bytes=1,
        disk_total_bytes=2, disk_pct=50, swap_pct=0, net_rx_bps=0, net_tx_bps=0, uptime_s=3600))
    return state


async def test_times_are_in_the_saved_zone_and_the_page_names_it(db, log_in):
    state = _seed()
    async with user_simulation() as user:
        register_pages(state)
        await log_in(user)
        save_user_settings("admin", time_zone="Asia/Kolkata")
        await user.open("/device/box")
        await user.should_see("Times in Asia/Kolkata (your saved zone).")
        await user.should_see("2026-12-07 14:45:30")  # the sample, status since
        await user.should_see("2026-12-07 13:45:30")  # booted
        await user.should_see("2026-12-07 14:46:30")  # the latest error
        await user.should_not_see("2026-12-07 09:15:30")  # nothing in UTC
        await user.open("/logs?range=all")
        await user.should_see("Times in Asia/Kolkata (your saved zone).")
        await user.should_see("2026-12-07 14:46:30")
        await user.open("/audit")
        await user.should_see("Times in Asia/Kolkata (your saved zone).")
        save_user_settings("admin", time_zone=None)
        await user.open("/logs?range=all")
        await user.should_see("Times in UTC (no zone saved).")  # no browser answer: UTC, said so
        await user.should_see("2026-12-07 09:16:30")


async def test_the_zone_and_dark_mode_are_chosen_in_the_header_and_kept_per_user(db, log_in):
    state = _seed()
    async with user_simulation() as user:
        register_pages(state)
        await log_in(user)
        await user.open("/")
        user.find(marker="dark-toggle").click()
        assert user_settings("admin").dark_mode
        user.find(marker="zone-button").click()
        user.find(marker="zone-select").elements.pop().value = "Asia/Kolkata"
        user.find(marker="zone-save").click()
        assert user_settings("admin").time_zone == "Asia/Kolkata"
    async with user_simulation() as other:  # another browser, a new session: the same settings
        register_pages(state)
        await log_in(other)
        await other.open("/")
        await other.should_see("Times in Asia/Kolkata (your saved zone).")
        assert other.find(kind=ui.dark_mode).elements.pop().value is True  # opens dark
