"""Revoking while the broker does not answer (a real Mosquitto stopped with SIGSTOP): the device is
revoked with its audit row, and the page says what happened (real SQLite, NiceGUI simulation)."""

from __future__ import annotations

import os
import signal

from e2e_helpers import wait_for
from mqtt_helpers import connect_probe
from nicegui.testing.user_simulation import user_simulation

from fleet_server.dashboard import register_pages
from fleet_server.devices.actions import DeviceActions, server_session
from fleet_server.endpoints.broker_link import AgentEndpoint
from fleet_server.state import FleetState
from fleet_server.store.models import AuditEvent, Device


async def test_revoke_with_a_stopped_broker_is_audited_and_reported(db, broker_factory, log_in):
    broker = broker_factory()
    port = broker.cfg.port
    state = FleetState()
    state.load_from_db()
    with broker.admin_client() as dynsec, server_session("127.0.0.1", port, broker.admin.username,
                                                         broker.admin.password) as client:
        dynsec.ensure_server_role()
        actions = DeviceActions(dynsec, lambda: AgentEndpoint(f"mqtt://127.0.0.1:{port}"), state, publisher=client)
        new = actions.add("admin", "Slow Box")
        async with user_simulation() as user:
            register_pages(state, devices=actions)
            await log_in(user)
            await user.open("/devices")
            await user.should_see(marker="revoke-slow-box", retries=50)
            user.find(marker="revoke-slow-box").click()
            await user.should_see(marker="confirm-action", retries=50)
            assert broker.pid is not None
            os.kill(broker.pid, signal.SIGSTOP)
            try:
                user.find(marker="confirm-action").click()
                await user.should_see("slow-box is revoked", retries=300)
                await user.should_see("the broker did not confirm")
                await user.should_not_see("revoking failed")
                await user.should_see(marker="status-revoked", retries=50)
            finally:
                os.kill(broker.pid, signal.SIGCONT)
        # the command waited in the socket: once the broker runs again, the key is refused
        def refused() -> bool:
            probe, rc = connect_probe("127.0.0.1", port, "slow-box", new.api_key)
            probe.close()
            return rc.value == 0x87
        wait_for(refused, timeout=10, what="the broker to refuse the revoked key")
    assert Device.get_by_id("slow-box").revoked_ms is not None
    [row] = AuditEvent.select().where(AuditEvent.action == "device.revoke")
    assert (row.actor, row.target) == ("admin", "slow-box")
    assert "broker did not confirm" in row.detail
