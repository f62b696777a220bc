"""A full outbox never throws usage or logs away: they wait in OpenClaw's own files and arrive
once the broker is back (real Mosquitto, real ingest, a busy synthetic OpenClaw state dir)."""

from __future__ import annotations

from e2e_helpers import RunningAgent, wait_for
from fixtures_openclaw import make_busy_legacy_state

from agent_tray.config import AgentConfig
from fleet_server.devices.registry import add_device
from fleet_server.server import FleetServer
from fleet_server.store.models import LogRecord, UsageRecord

USAGE = 6000
LOGS = 300
BOUND = 1024 * 1024


def _stored() -> tuple[int, int]:
    usage = UsageRecord.select().where(UsageRecord.device == "busy").count()
    logs = LogRecord.select().where((LogRecord.device == "busy")
                                    & LogRecord.message.startswith("transient same-model retry")).count()
    return usage, logs


def test_a_full_outbox_defers_usage_and_logs_instead_of_dropping_them(fleet: FleetServer, tmp_path):
    state = make_busy_legacy_state(tmp_path, USAGE, LOGS)
    new = add_device(fleet.dynsec, "busy", fleet.broker_url)
    cfg = AgentConfig(device_id="busy", broker_url=fleet.broker_url, api_key=new.api_key, interval_s=1,
                      keepalive_s=5, data_dir=str(tmp_path / "agent"), bridge_port=0, outbox_max_bytes=BOUND,
                      openclaw_state_dir=str(state))
    fleet.broker.stop()  # broker down: ~2.5 MB of usage cannot fit into a 1 MiB outbox
    agent = RunningAgent(cfg)
    try:
        service = agent.service
        wait_for(lambda: service.outbox.stats()["bytes"] > BOUND / 2 and service.samples_taken >= 3, 30,
                 what="the outbox to fill up")
        wait_for(lambda: "usage" in service.bridge_health()["openclaw_backlog"], 30,
                 what="usage records to wait in OpenClaw's files")
        health = service.bridge_health()
        usage_behind = health["openclaw_backlog"]["usage"]
        assert usage_behind["waiting_since_ms"] > 0 and usage_behind["oldest_waiting_ms"] > 0
        assert health["outbox"]["bytes"] <= BOUND
        fleet.broker.start()
        wait_for(lambda: _stored() == (USAGE, LOGS), 90, what=f"{USAGE} usage and {LOGS} log records stored")
        wait_for(lambda: not service.bridge_health()["openclaw_backlog"], 20, what="the backlog to clear")
    finally:
        agent.stop()
    assert _stored() == (USAGE, LOGS)
