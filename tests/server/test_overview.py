"""Overview page rendered from the latest-state cache (NiceGUI user simulation, real SQLite)."""


from nicegui.testing.user_simulation import user_simulation

from fleet_server.dashboard import register_pages
from fleet_server.state import FleetState
from fleet_server.store.db import open_database
from fleet_server.store.models import Device
from fleet_server.store.usage.ledger import insert_usage
from shared import schemas
from shared.clock import now_ms


def telemetry(device_id, cpu):
    return schemas.Telemetry(device_id=device_id, ts=now_ms(), cpu_pct=cpu, mem_used_bytes=2 * 1024**3,
                             mem_total_bytes=8 * 1024**3, mem_pct=25, disk_used_bytes=50 * 1024**3,
                             disk_total_bytes=100 * 1024**3, disk_pct=50, swap_pct=3, net_rx_bps=2048,
                             net_tx_bps=1024, load_avg=(0.5, 0.4, 0.3), uptime_s=90061)


async def test_overview_shows_devices_and_updates_live(tmp_path, log_in):
    db = open_database(tmp_path)
    Device.create(id="alpha", name="Alpha box", key_hash="x", key_hint="abcd", created_ms=now_ms())
    state = FleetState()
    state.load_from_db()
    async with user_simulation() as user:
        register_pages(state)
        await log_in(user)
        await user.open("/")
        await user.should_see("Alpha box")
        await user.should_see("unknown")
        state.upsert("alpha", status="online", telemetry=telemetry("alpha", 42.0), last_seen_ms=now_ms())
        await user.should_see("42%", retries=30)  # redrawn by the page's timer, no reload
        await user.should_see("25% of 8.0 GiB")
        await user.should_see("2.0 KiB/s / 1.0 KiB/s")
        await user.should_see("1d 1h")
        await user.should_see("1 online")
        with db.atomic():
            added = insert_usage([{"id": "r" * 16, "device": "alpha", "ts": now_ms(), "agent_id": "main",
                                   "session_id": "s", "provider": "p", "model": "m", "input_tokens": 1200,
                                   "output_tokens": 34, "cache_read_tokens": 0, "cache_write_tokens": 0,
                                   "total_tokens": 1234, "cost_usd": None, "source": "transcript"}])
        state.note_usage(added)  # as ingest does after the commit
        await user.should_see("1.2k / 1.2k", retries=30)


async def test_empty_fleet_says_how_to_add_a_device(tmp_path, log_in):
    open_database(tmp_path)
    state = FleetState()
    state.load_from_db()
    async with user_simulation() as user:
        register_pages(state)
        await log_in(user)
        await user.open("/")
        await user.should_see("clawfleet-server device add NAME")
