"""Every page says when the server has lost its broker (NiceGUI user simulation, real SQLite; the
server's health is a plain function here, the real one is exercised in tests/jobs)."""

from nicegui.testing.user_simulation import user_simulation

from fleet_server.dashboard import register_pages
from fleet_server.dashboard.parts import server_banner
from fleet_server.server import ServerHealth
from fleet_server.state import FleetState
from fleet_server.store.db import open_database


async def test_banner_shows_while_ingest_has_no_broker_and_goes_when_it_is_back(tmp_path, log_in, monkeypatch):
    monkeypatch.setattr(server_banner, "CHECK_S", 0.2)
    open_database(tmp_path)
    state = FleetState()
    state.load_from_db()
    connected = {"up": False}

    def health() -> ServerHealth:
        return ServerHealth(connected["up"], "" if connected["up"] else "no broker", {"connected": connected["up"]})

    async with user_simulation() as user:
        register_pages(state, health=health)
        await log_in(user)
        await user.open("/")
        await user.should_see("lost its connection to the MQTT broker")
        await user.open("/devices")
        await user.should_see(marker="broker-lost")
        connected["up"] = True
        await user.should_not_see("lost its connection to the MQTT broker", retries=30)
