"""API tokens and MQTT integrations pages (admins only): create shows the secret once, revoke works
(NiceGUI user simulation, real SQLite, a real Mosquitto for the integrations)."""

from __future__ import annotations

from nicegui import ui
from nicegui.testing.user_simulation import user_simulation

from fleet_server.auth import api_tokens
from fleet_server.dashboard import register_pages
from fleet_server.integrations.accounts import list_integrations
from fleet_server.state import FleetState
from fleet_server.store.models import ApiToken


async def test_api_token_page_shows_the_token_once_and_revokes(db, log_in):
    async with user_simulation() as user:
        register_pages(FleetState())
        await log_in(user)
        await user.open("/settings/api")
        user.find(kind=ui.input, content="Name").type("grafana")
        user.find(kind=ui.button, content="Create token").click()
        await user.should_see("copy it now")
        token = next(iter(user.find(marker=None, content="cft_").elements)).text
        assert api_tokens.user_for_token(token) is not None
        row = ApiToken.get()
        assert row.token_hash != token and token not in row.hint
        user.find(kind=ui.button, content="Revoke").click()
        await user.should_see("revoked")
        assert api_tokens.user_for_token(token) is None


async def test_settings_pages_are_for_admins(db, log_in):
    async with user_simulation() as user:
        register_pages(FleetState())
        await log_in(user, "vera", role="viewer")
        for path in ("/settings/api", "/settings/integrations"):
            await user.open(path)
            await user.should_see("admins only")


async def test_integrations_page_adds_and_revokes(db, log_in, dynsec):
    async with user_simulation() as user:
        register_pages(FleetState(), dynsec=lambda: dynsec, broker_url=lambda: "mqtt://127.0.0.1:1883")
        await log_in(user)
        await user.open("/settings/integrations")
        user.find(kind=ui.input, content="Name").type("home-assistant")
        user.find(kind=ui.button, content="Add").click()
        await user.should_see("copy the password now", retries=50)
        await user.should_see("integration.home-assistant")
        assert [r.name for r in list_integrations()] == ["home-assistant"]
        user.find(kind=ui.button, content="Revoke").click()
        await user.should_see("revoked", retries=50)
        assert list_integrations() == []
