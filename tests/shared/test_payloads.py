"""The agent's pydantic-free payloads (shared.payloads) say exactly what the server's models
(shared.schemas) accept: same fields, same defaults, and what the agent encodes decodes."""

import dataclasses
import json

import pytest
from pydantic_core import PydanticUndefined

from shared import payloads, schemas
from shared.topics import Channel

TS = 1_795_234_253_457
PAIRS = [(payloads.Status, schemas.Status), (payloads.Meta, schemas.Meta), (payloads.Telemetry, schemas.Telemetry),
         (payloads.SnoozeRequest, schemas.SnoozeRequest), (payloads.OpenClawState, schemas.OpenClawState),
         (payloads.UsageRecord, schemas.UsageRecord), (payloads.LogRecord, schemas.LogRecord),
         (payloads.UsageBatch, schemas.UsageBatch), (payloads.LogBatch, schemas.LogBatch),
         (payloads.Command, schemas.Command), (payloads.ServerStatus, schemas.ServerStatus),
         (payloads.UpdateInfo, schemas.UpdateInfo),
         (payloads.SessionRecord, schemas.SessionRecord), (payloads.RunRecord, schemas.RunRecord),
         (payloads.ToolCallRecord, schemas.ToolCallRecord)]


@pytest.mark.parametrize(("plain", "model"), PAIRS, ids=[p.__name__ for p, _ in PAIRS])
def test_fields_and_defaults_match_the_server_models(plain, model):
    fields = {f.name: f for f in dataclasses.fields(plain)}
    assert set(fields) == set(model.model_fields), "field names differ"
    for name, info in model.model_fields.items():
        f = fields[name]
        ours = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if info.default is PydanticUndefined and info.default_factory is None:
            assert ours is dataclasses.MISSING, f"{name}: required on the server, has a default here"
        else:
            assert ours == (info.default_factory() if info.default_factory else info.default), name


def test_bounds_are_the_schema_bounds():
    for name in ("MAX_PAYLOAD_BYTES", "MAX_BATCH_RECORDS", "MAX_BYTES", "MAX_BPS", "MAX_UPTIME_S", "MAX_LOAD",
                 "MAX_TOKENS", "MAX_COST_USD", "SAMPLE_WINDOW_MS", "RECORD_MIN_TS_MS", "MAX_AHEAD_MS", "MAX_COUNT",
                 "MAX_DURATION_S", "MAX_RUN_ERROR"):
        assert getattr(schemas, name) is getattr(payloads, name), name


def _telemetry() -> payloads.Telemetry:
    return payloads.Telemetry(device_id="dev-1", ts=TS, cpu_pct=12.5, mem_used_bytes=1, mem_total_bytes=2,
                              mem_pct=50.0, disk_used_bytes=3, disk_total_bytes=4, disk_pct=75.0, swap_pct=0.0,
                              net_rx_bps=10.0, net_tx_bps=20.0, load_avg=(0.1, 0.2, 0.3), uptime_s=100.0,
                              openclaw=payloads.OpenClawState(installed=True, up=True, port=18789, version="2026.9.6"))


def test_what_the_agent_encodes_the_server_decodes_unchanged():
    tel = _telemetry()
    model = schemas.decode(Channel.TELEMETRY, payloads.encode(tel), "dev-1", now_ms=TS)
    assert json.loads(payloads.encode(tel)) == json.loads(schemas.encode(model))
    usage = payloads.UsageRecord(id="u" * 32, ts=TS, input_tokens=3, output_tokens=4, cache_read_tokens=5,
                                 total_tokens=999, cost_usd=0.5)
    assert usage.total_tokens == 12  # the sum, as the server recomputes it
    log = payloads.LogRecord(id="l" * 32, ts=TS, level="error", message="HTTP 500 ünïcode", session_id="s1")
    for channel, batch in ((Channel.USAGE, payloads.UsageBatch(device_id="dev-1", ts=TS, records=[usage])),
                           (Channel.LOGS, payloads.LogBatch(device_id="dev-1", ts=TS, records=[log]))):
        raw = payloads.encode(batch)
        assert json.loads(raw) == json.loads(schemas.encode(schemas.decode(channel, raw, "dev-1", now_ms=TS)))
    meta = payloads.Meta(device_id="dev-1", ts=TS, hostname="h", os="Linux", agent_version="0.1.0", cpu_count=2,
                         mem_total_bytes=2, disk_total_bytes=4, boot_time_ms=TS - 1000, agents=["main"],
                         interval_s=30.0)
    status = payloads.Status(device_id="dev-1", ts=TS, state="offline", reason="last-will")
    for channel, p in ((Channel.META, meta), (Channel.STATUS, status)):
        raw = payloads.encode(p)
        assert json.loads(raw) == json.loads(schemas.encode(schemas.decode(channel, raw, "dev-1", now_ms=TS)))
    assert "reason" not in json.loads(payloads.encode(payloads.Status(device_id="d", ts=TS, state="online")))


def test_encode_refuses_what_json_cannot_carry():
    tel = _telemetry()
    tel.cpu_pct = float("nan")
    with pytest.raises(ValueError):
        payloads.encode(tel)


def test_commands_and_server_status_parse_like_the_models():
    good = json.dumps({"v": 1, "ts": TS, "command": "report_now", "extra": 1}).encode()
    assert payloads.parse_command(good) == payloads.Command(ts=TS, command="report_now")
    schemas.Command.model_validate_json(good)
    assert payloads.parse_server_status(b'{"v":1,"ts":%d,"state":"online"}' % TS).state == "online"
    for raw, why in ((b"not json", "not UTF-8 JSON"), (b"[1]", "not a JSON object"),
                     (b'{"v":2,"ts":1,"command":"report_now"}', "protocol version"),
                     (b'{"v":1,"ts":"x","command":"report_now"}', "ts:"),
                     (b'{"v":1,"ts":%d,"command":"reboot"}' % TS, "command: 'reboot'"),
                     (b"\xff", "not UTF-8 JSON")):
        with pytest.raises(ValueError, match=why):
            payloads.parse_command(raw)
        with pytest.raises(ValueError):
            schemas.Command.model_validate_json(raw)
    update = json.dumps({"v": 1, "ts": TS, "command": "update", "version": "0.2.0", "rollback_after_s": 600}).encode()
    assert payloads.parse_command(update) == payloads.Command(ts=TS, command="update", version="0.2.0",
                                                              rollback_after_s=600)
    assert schemas.Command.model_validate_json(update).version == "0.2.0"
    for bad, why in (({"version": "../../etc"}, "version:"), ({}, "version:"), ({"version": "0.2.0\n"}, "version:"),
                     ({"version": "0.2.0", "rollback_after_s": 5}, "rollback_after_s"),
                     ({"version": "0.2.0", "rollback_after_s": 60.5}, "rollback_after_s")):
        raw = json.dumps({"v": 1, "ts": TS, "command": "update", **bad}).encode()
        with pytest.raises(ValueError, match=why):
            payloads.parse_command(raw)
        with pytest.raises(ValueError):
            schemas.Command.model_validate_json(raw)
    with pytest.raises(ValueError, match="online or offline"):
        payloads.parse_server_status(b'{"v":1,"ts":%d,"state":"maybe"}' % TS)


def test_sessions_runs_and_tool_calls_round_trip_and_old_batches_still_decode():
    run = payloads.RunRecord(id="r" * 32, session_id="s1", started_ms=TS, ended_ms=TS + 5, status="failed",
                             input_tokens=3, output_tokens=4, total_tokens=99, error="HTTP 500", rev=3)
    assert run.total_tokens == 7
    call = payloads.ToolCallRecord(id="c" * 32, session_id="s1", ts=TS, tool="exec", error=None)
    sess = payloads.SessionRecord(session_id="s1", session_key="agent:main:planning", updated_ms=TS)
    raw = payloads.encode(payloads.UsageBatch(device_id="dev-1", ts=TS, records=[], sessions=[sess], runs=[run],
                                              tool_calls=[call]))
    model = schemas.decode(Channel.USAGE, raw, "dev-1", now_ms=TS)
    assert json.loads(raw) == json.loads(schemas.encode(model))
    old = b'{"v":1,"device_id":"dev-1","ts":%d,"records":[]}' % TS  # an agent that sends no sessions or runs
    assert schemas.decode(Channel.USAGE, old, "dev-1", now_ms=TS).runs == []
    log = payloads.LogRecord(id="l" * 32, ts=TS, level="error", message="x", session_key="agent:main:a", run_id="r1")
    raw = payloads.encode(payloads.LogBatch(device_id="dev-1", ts=TS, records=[log]))
    assert schemas.decode(Channel.LOGS, raw, "dev-1", now_ms=TS).records[0].session_key == "agent:main:a"
    bad = json.loads(payloads.encode(payloads.UsageBatch(device_id="dev-1", ts=TS, records=[], runs=[run])))
    bad["runs"][0]["status"] = "exploded"
    with pytest.raises(schemas.PayloadError, match="runs.0.status"):
        schemas.decode(Channel.USAGE, json.dumps(bad).encode(), "dev-1", now_ms=TS)
