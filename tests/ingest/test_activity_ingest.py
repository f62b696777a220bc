"""Sessions, runs, tool calls and version changes through the real ingest path (managed Mosquitto on
loopback, FleetServer, SQLite): stored from a device's usage messages, older revisions ignored, an agent that
sends none keeps working, and a new OpenClaw version in meta is recorded as a change."""

from __future__ import annotations

from e2e_helpers import wait_for
from payload_helpers import DeviceConn, activity_batch, batch, meta, run_record, session_record, tool_call, usage_record

from fleet_server.server import FleetServer
from fleet_server.store.models import AgentRun, AgentSession, ToolCall, UsageRecord, VersionChange
from shared.topics import Channel


def test_activity_messages_are_stored_and_old_agents_still_work(fleet: FleetServer):
    with DeviceConn(fleet, "activity-host") as dev:
        d = dev.device_id
        run = run_record(rev=4)
        dev.publish(Channel.USAGE, activity_batch(d, sessions=[session_record()], runs=[run],
                                                  tool_calls=[tool_call(run=run["id"])]))
        wait_for(lambda: AgentRun.get_or_none(AgentRun.device == d) and ToolCall.get_or_none(ToolCall.device == d),
                 15, what="the run and the tool call")
        s = wait_for(lambda: AgentSession.get_or_none(AgentSession.device == d), 10, what="the session")
        assert (s.session_key, s.turns, s.failed_turns, s.error_messages, s.tool_calls) == (
            "agent:main:planning", 1, 1, 2, 1)
        # a later revision (the turn succeeded on a retry) replaces it; a late older one does not come back
        dev.publish(Channel.USAGE, activity_batch(d, runs=[{**run, "status": "ok", "stop_reason": "stop", "rev": 6,
                                                            "error": ""}]))
        dev.publish(Channel.USAGE, activity_batch(d, runs=[run]))
        old = usage_record()  # an agent from before sessions: plain usage batches
        dev.publish(Channel.USAGE, batch(d, [old]))
        wait_for(lambda: UsageRecord.get_or_none((UsageRecord.device == d) & (UsageRecord.id == old["id"])), 15,
                 what="the old agent's usage record")
        assert AgentRun.get(AgentRun.device == d).status == "ok"
        assert AgentSession.get(AgentSession.device == d).failed_turns == 0
        # versions: the first meta records the first versions, a new OpenClaw version a change
        dev.publish(Channel.META, meta(d, openclaw_version="2026.7.35"), retain=True)
        wait_for(lambda: (v := fleet.state.get(d)) and v.meta and v.meta.openclaw_version == "2026.7.35", 10,
                 what="the first meta")
        dev.publish(Channel.META, meta(d, openclaw_version="2026.9.6"), retain=True)
        wait_for(lambda: VersionChange.select().where((VersionChange.device == d)
                                                      & (VersionChange.new_version == "2026.9.6")).exists(), 10,
                 what="the version change")
        rows = [(c.kind, c.old_version, c.new_version) for c in VersionChange.select().where(
            VersionChange.device == d).order_by(VersionChange.id)]
        assert rows == [("openclaw", None, "2026.7.35"), ("agent", None, "0.1.0"),
                        ("openclaw", "2026.7.35", "2026.9.6")]
        assert fleet.ingest.counters["rejected_invalid"] == 0
