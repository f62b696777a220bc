"""The dashboard's parts of the agent's distribution (NiceGUI user simulation, a real FleetServer with its
broker and SQLite, a real agent): the Add-device dialog shows the one-line installs of this server, and the
device page shows the agent's version and last self-update and lets an admin send the offered version.
The agent here runs from this checkout (not a build), so it refuses to update itself, and says so: the
answer travels back through the broker into the page."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_helpers import RunningAgent, wait_for
from mqtt_helpers import free_port
from nicegui.testing.user_simulation import user_simulation

from agent_tray.config import AgentConfig
from fleet_server.dashboard import register_pages
from fleet_server.devices.registry import add_device
from fleet_server.releases.actions import ReleaseActions
from fleet_server.server import FleetServer, ServerOptions
from fleet_server.store.models import AuditEvent, UpdateRequest
from shared.enrollment import decode_token
from shared.packages import package_name
from shared.version import __version__

NEWER = "9.0.0"


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[FleetServer]:
    """A started FleetServer that knows its web address and offers a (stand-in) package of a newer agent."""
    server = FleetServer(ServerOptions(data_dir=tmp_path / "server", mqtt_port=free_port(), local_agent=False,
                                       public_url="https://fleet.example.test"))
    folder = tmp_path / "server" / "agent-packages"
    folder.mkdir(parents=True)
    (folder / package_name("tar.gz", NEWER, "x86_64")).write_bytes(b"stand-in")
    server.start()
    assert server.ingest is not None and server.ingest.connected.wait(5)
    yield server
    server.stop()


async def test_add_device_dialog_shows_the_one_line_installs(fleet: FleetServer, log_in) -> None:
    async with user_simulation() as user:
        register_pages(fleet.state, devices=fleet.devices)
        await log_in(user)
        await user.open("/devices")
        await user.should_see(marker="add-device", retries=50)
        user.find(marker="add-device").click()
        await user.should_see(marker="add-name", retries=20)
        user.find(marker="add-name").type("Desk")
        user.find(marker="add-submit").click()
        await user.should_see(marker="install-linux", retries=100)
        [linux] = user.find(marker="install-linux").elements
        [windows] = user.find(marker="install-windows").elements
        assert linux.text == "curl -fsSL https://fleet.example.test/install.sh | sudo sh"
        assert "irm https://fleet.example.test/install.ps1 | iex" in windows.text
        [token] = user.find(marker="enrollment-token").elements
        assert token.text not in linux.text + windows.text
        enr = decode_token(token.text)
        assert enr.fleet_url == "https://fleet.example.test" and enr.update_key == fleet.catalog.key.public_b64


async def test_device_page_sends_the_offered_version_and_shows_the_agents_answer(fleet: FleetServer, log_in,
                                                                               tmp_path: Path) -> None:
    new = add_device(fleet.dynsec, "Desk", fleet.broker_url, token_extra=fleet.endpoint.token_extra())
    enr = decode_token(new.token)
    cfg = AgentConfig(device_id=enr.device_id, broker_url=enr.url, api_key=enr.api_key, interval_s=1,
                      keepalive_s=5, data_dir=str(tmp_path / "agent"), bridge_port=0,
                      openclaw_state_dir=str(tmp_path / "no-openclaw"), dashboard_url=enr.fleet_url,
                      update_public_key=enr.update_key)
    agent = RunningAgent(cfg)
    try:
        wait_for(lambda: (v := fleet.state.get("desk")) is not None and v.meta is not None, 20, what="meta")
        async with user_simulation() as user:
            register_pages(fleet.state, releases=ReleaseActions(fleet.catalog, fleet.publish_command))
            await log_in(user)
            await user.open("/device/desk")
            await user.should_see(f"version {__version__}", retries=50)
            await user.should_see("last update: none yet")
            await user.should_see(marker="update-agent")
            user.find(marker="update-agent").click()
            await user.should_see(f"desk asked to update to {NEWER}", retries=50)
            wait_for(lambda: (m := fleet.state.get("desk").meta) is not None and m.update is not None, 20,
                     what="the agent's answer in its meta")
            await user.should_see(f"last update: {NEWER}: refused", retries=100)
            await user.should_see("runs from a Python install")
        req = UpdateRequest.get_by_id("desk")
        assert (req.version, req.actor) == (NEWER, "admin")
        assert AuditEvent.get(AuditEvent.action == "device.update").target == "desk"
    finally:
        agent.stop()
