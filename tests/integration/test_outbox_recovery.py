"""Broker down → the agent keeps collecting into its outbox → broker back → everything arrives
exactly once; an agent restart repeats nothing. Real Mosquitto, real OpenClaw fixture files."""

from __future__ import annotations

import json

from e2e_helpers import RunningAgent, wait_for
from fixtures_openclaw import EXPECTED, make_legacy_state, make_log_dir
from peewee import fn

from agent_tray.config import AgentConfig
from fleet_server.devices.registry import add_device
from fleet_server.server import FleetServer
from fleet_server.store.models import LogRecord, UsageRecord
from fleet_server.store.usage import sums

LEGACY = [v for (era, _), v in EXPECTED.items() if era == "legacy"]
ASSISTANT = sum(v[1] for v in LEGACY)
ERRORS = sum(v[6] for v in LEGACY)
EXPECTED_USAGE = (ASSISTANT,  # every assistant message is a usage record (failed turns flagged failed)
                  sum(v[2] for v in LEGACY), sum(v[3] for v in LEGACY),
                  sum(v[4] for v in LEGACY), sum(v[5] for v in LEGACY))
GATEWAY_LOG_RECORDS = 27  # WARN + ERROR lines in the legacy gateway log (tests/collectors count them)


def _usage_totals(device_id: str) -> tuple:
    u = UsageRecord
    return tuple(u.select(fn.COUNT(u.id), fn.SUM(u.input_tokens), fn.SUM(u.output_tokens),
                          fn.SUM(u.cache_read_tokens), fn.SUM(u.total_tokens))
                 .where(u.device == device_id).tuples()[0])


def _log_counts(device_id: str) -> dict[str, int]:
    q = LogRecord.select(LogRecord.source, fn.COUNT(LogRecord.id)).where(LogRecord.device == device_id)
    return dict(q.group_by(LogRecord.source).tuples())


def test_outbox_survives_broker_outage_and_agent_restart(fleet: FleetServer, tmp_path):
    state = make_legacy_state(tmp_path)
    log_file = make_log_dir(tmp_path, "legacy") / "openclaw-2026-11-21.log"
    config = json.loads((state / "openclaw.json").read_text())
    config["logging"] = {"file": str(log_file)}  # follow the fixture log, not /tmp/openclaw
    (state / "openclaw.json").write_text(json.dumps(config))
    new = add_device(fleet.dynsec, "laptop", fleet.broker_url)
    cfg = AgentConfig(device_id="laptop", broker_url=fleet.broker_url, api_key=new.api_key, interval_s=1,
                      keepalive_s=5, data_dir=str(tmp_path / "agent"), bridge_port=0,
                      openclaw_state_dir=str(state))

    fleet.broker.stop()  # the broker is down before the agent ever connects
    agent = RunningAgent(cfg)
    try:
        outbox = agent.service.outbox
        wait_for(lambda: outbox.position("usage") and outbox.position("logs") and outbox.stats()["messages"] >= 4,
                 15, what="usage, logs and telemetry queued in the outbox")
        queued = outbox.stats()
        assert _usage_totals("laptop")[0] == 0  # nothing reached the server yet
        fleet.broker.start()
        wait_for(lambda: _usage_totals("laptop") == EXPECTED_USAGE, 60, what="all usage records after the outage")
        wait_for(lambda: _log_counts("laptop") == {"transcript": ERRORS, "gateway-log": GATEWAY_LOG_RECORDS},
                 10, what="all log records")
        wait_for(lambda: outbox.stats()["messages"] == 0, 10, what="the outbox to drain")
        print(f"outbox held {queued['messages']} messages ({queued['bytes']} bytes) while the broker was down")
    finally:
        agent.stop()

    counters = dict(fleet.ingest.counters)
    agent = RunningAgent(cfg)  # restart: positions were persisted with the records
    try:
        wait_for(lambda: agent.service.samples_taken >= 3 and agent.service.publisher.connected.is_set(), 20,
                 what="the restarted agent to run a few passes")
        # at most the newest telemetry samples, waiting for their receipt (about a second)
        assert {m.kind for m in agent.service.outbox.pending()} <= {"telemetry"}
        assert agent.service.outbox.stats()["messages"] <= 2
    finally:
        agent.stop()
    # nothing was sent again (the server would have ignored duplicates, so count what arrived)
    assert fleet.ingest.counters["stored_usage"] == counters["stored_usage"]
    assert fleet.ingest.counters["stored_logs"] == counters["stored_logs"]
    assert _usage_totals("laptop") == EXPECTED_USAGE
    assert sums.total_usage(devices=["laptop"]).total_tokens == EXPECTED_USAGE[4]  # all-time sums: no double count
