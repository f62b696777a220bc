"""The fleet's token totals equal OpenClaw's own `openclaw gateway usage-cost` on the same machine.

Real OpenClaw 2026.9.6 gateway (npm) → its SQLite transcripts and file log → a real ClawFleet agent
(AgentService) → managed Mosquitto → ingest → SQLite → the numbers the dashboard shows.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from e2e_helpers import wait_for
from peewee import fn

from agent_tray.config import AgentConfig
from agent_tray.service import AgentService
from fleet_server.devices.registry import add_device
from fleet_server.server import FleetServer
from fleet_server.store.models import LogRecord, UsageRecord
from fleet_server.store.usage import sums

KEYS = (("input", "input_tokens"), ("output", "output_tokens"), ("cacheRead", "cache_read_tokens"),
        ("cacheWrite", "cache_write_tokens"), ("totalTokens", "total_tokens"))


def _fleet_totals(device_id: str) -> dict[str, int]:
    cols = [fn.COALESCE(fn.SUM(getattr(UsageRecord, col)), 0) for _, col in KEYS]
    row = UsageRecord.select(*cols).where(UsageRecord.device == device_id).tuples()[0]
    return {name: int(v) for (name, _), v in zip(KEYS, row, strict=True)}


def test_fleet_totals_equal_openclaw_usage_cost(real_openclaw: Any, fleet: FleetServer, tmp_path,
                                                openclaw_say: Callable[[str], None]) -> None:
    gw, stub = real_openclaw.gateway, real_openclaw.stub
    stub.clear_failures()
    assert gw.turn("fleet-one", "hello from the fleet test").ok
    assert gw.turn("fleet-two", "another session").ok
    stub.fail_next(None, status=500)
    try:
        assert not gw.turn("fleet-two", "this turn fails upstream").ok
    finally:
        stub.clear_failures()
    assert gw.turn("fleet-one", "a last good turn").ok

    new = add_device(fleet.dynsec, "openclaw-host", fleet.broker_url)
    cfg = AgentConfig(device_id="openclaw-host", broker_url=fleet.broker_url, api_key=new.api_key, interval_s=1,
                      data_dir=str(tmp_path / "agent"), bridge_port=0, openclaw_state_dir=str(gw.state_dir))
    service = AgentService(cfg)
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    try:
        reference = gw.usage_cost()  # OpenClaw's own daily totals, --all-agents, fresh after the turns
        expected = {k: int(reference["totals"][k]) for k, _ in KEYS}
        wait_for(lambda: _fleet_totals("openclaw-host") == expected, 60,
                 what=f"fleet totals to reach OpenClaw's {expected} (now {_fleet_totals('openclaw-host')})")
        openclaw_say(f"OpenClaw usage-cost totals: {expected}")
        openclaw_say(f"ClawFleet stored totals   : {_fleet_totals('openclaw-host')}")
        cached = sums.total_usage(devices=["openclaw-host"])  # all time, as the overview and API show it
        assert cached.total_tokens == expected["totalTokens"] and cached.input_tokens == expected["input"]

        # the failed turn is an error record, not usage; gateway log warnings/errors arrive too
        wait_for(lambda: LogRecord.select().where((LogRecord.device == "openclaw-host") &
                                                  (LogRecord.source == "transcript")).count() >= 1, 20,
                 what="the failed turn as an error record")
        assert LogRecord.select().where((LogRecord.device == "openclaw-host") &
                                        (LogRecord.source == "gateway-log")).count() >= 1
        # gateway state: up, version and agents reach the dashboard's cache
        view = wait_for(lambda: (v := fleet.state.get("openclaw-host")) and v.meta and v.meta.openclaw_version
                        and v.telemetry and v.telemetry.openclaw and v, 20, what="meta with the OpenClaw version")
        assert view.telemetry.openclaw.up and view.telemetry.openclaw.port == gw.port
        assert view.meta.openclaw_version == real_openclaw.install.version
        assert "main" in view.meta.agents
    finally:
        service.stop()
        thread.join(15)
