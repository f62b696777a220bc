"""The agent's "Pause reporting" shows as paused (not offline, no stale verdict, no alert) and its
"Snooze alerts for this machine" reaches the server (real Mosquitto, real server, the agent's core
running in a thread)."""

from __future__ import annotations

import time

from e2e_helpers import RunningAgent, wait_for, write_agent_config

from agent_tray.config import load_config
from agent_tray.service import tomorrow_morning_ms
from fleet_server.alerts.rules import save_rule
from fleet_server.devices.registry import add_device
from fleet_server.server import FleetServer
from fleet_server.store.alert_models import AlertIncident, AlertSilence
from fleet_server.store.models import Device


def test_pause_is_paused_not_offline_and_snooze_reaches_the_server(fleet: FleetServer, tmp_path):
    save_rule("offline", "fleet", "critical", {"for_s": 0, "clear_s": 0})
    assert fleet.alerts is not None
    fleet.alerts.engine.settle_until = 0
    fleet.alerts.engine.request_reload()
    new = add_device(fleet.dynsec, "desk", fleet.broker_url)
    agent = RunningAgent(load_config(write_agent_config(tmp_path, "desk", new.api_key, fleet.opts.mqtt_port)))
    try:
        wait_for(lambda: fleet.state.get("desk") and fleet.state.get("desk").status == "online", 20, what="online")
        agent.service.set_paused(True)
        wait_for(lambda: Device.get_by_id("desk").status == "paused", 10, what="paused")
        time.sleep(5)  # 5 x the 1 s interval: a silent online device would be stale by now
        assert fleet.state.get("desk").status == "paused"
        assert AlertIncident.select().count() == 0
        agent.service.set_paused(False)
        wait_for(lambda: fleet.state.get("desk").status == "online", 10, what="online again")
        until = agent.service.snooze_alerts(3600)
        assert until is not None
        row = wait_for(lambda: AlertSilence.get_or_none(AlertSilence.scope == "device:desk"), 10, what="snooze")
        assert row.created_by == "device:desk" and abs(row.end_ms - until) < 2000
    finally:
        agent.stop()
    assert tomorrow_morning_ms() > time.time() * 1000
