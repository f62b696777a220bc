"""The headless agent stays small: what its run path imports, and the plain (pydantic-free) parts
that replace the server's models on the agent side (config, bridge bodies)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main

from agent_tray.bridge import parse_event, parse_openclaw_info
from agent_tray.cli import RUN_OPTIONS, headless_run_args
from agent_tray.commands import app
from agent_tray.config import AgentConfig, ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]
NOT_ON_THE_RUN_PATH = ("pydantic", "pydantic_core", "typer", "click", "rich", "fleet_server", "broker", "nicegui",
                       "peewee", "pystray", "PIL", "agent_tray.commands", "agent_tray.tray", "agent_tray.enroll")

# A fresh interpreter goes the way `clawfleet-agent run --headless` goes (entry point, runner, service),
# then takes a sample, reads OpenClaw and answers the local bridge once, and lists what got imported.
_RUN_PATH = """
import json, sys, urllib.request
from pathlib import Path
from agent_tray.cli import headless_run_args
assert headless_run_args(["run", "--headless", "--config", "x.json"]) is not None
import agent_tray.runner
from agent_tray.config import AgentConfig
from agent_tray.service import AgentService
tmp = Path(sys.argv[1])
cfg = AgentConfig(device_id="footprint", broker_url="mqtt://127.0.0.1:1", api_key="k" * 32, data_dir=str(tmp / "data"),
                  openclaw_state_dir=str(tmp / "no-openclaw"), bridge_port=int(sys.argv[2]))
service = AgentService(cfg)
if service.bridge:
    service.bridge.start()
early = sorted(sys.modules)  # the bridge listens, but http.server waits for the first request
service.report()
service.collect_openclaw()
if service.bridge:
    url = f"http://127.0.0.1:{service.bridge.port}"
    assert json.load(urllib.request.urlopen(url + "/telemetry"))["device_id"] == "footprint"
    req = urllib.request.Request(url + "/events", data=b'{"type": "llm_output", "usage": {"input": 3}}',
                                 headers={"Content-Type": "application/json"})
    assert json.load(urllib.request.urlopen(req))["accepted"] == 1
    service.bridge.stop()
service.outbox.close()
print(json.dumps([early, sorted(sys.modules)]))
"""


@pytest.mark.parametrize("bridge", [False, True], ids=["bridge-off", "bridge-on"])
def test_run_path_imports_no_server_tray_cli_or_pydantic(tmp_path: Path, bridge: bool) -> None:
    from mqtt_helpers import free_port

    res = subprocess.run([sys.executable, "-c", _RUN_PATH, str(tmp_path), str(free_port() if bridge else 0)],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    early, modules = (set(names) for names in json.loads(res.stdout.splitlines()[-1]))
    assert "http.server" not in early
    loaded = [m for m in NOT_ON_THE_RUN_PATH if m in modules or any(x.startswith(m + ".") for x in modules)]
    assert loaded == [], f"the headless agent's run path imports {loaded}"
    assert ("http.server" in modules) == bridge, "http.server only when the bridge is on"
    assert "agent_tray.service" in modules and "paho.mqtt.client" in modules  # the probe did run the agent


def test_fast_path_takes_the_same_run_options_as_the_typer_command() -> None:
    run = typer.main.get_command(app).commands["run"]  # type: ignore[attr-defined]
    declared = {opt for p in run.params for opt in p.opts} - {"--help"}
    assert declared == RUN_OPTIONS  # typer's --no-headless / --no-autostart take the typer path
    full = ["run", "--headless", "-c", "a.json", "--log-dir", "logs", "--no-log-file", "--autostart", "-v"]
    args = headless_run_args(full)
    assert args is not None and (str(args.config), str(args.log_dir), args.no_log_file, args.autostart,
                                 args.verbose) == ("a.json", "logs", True, True, True)
    assert headless_run_args(["run", "--config", "a.json"]) is None  # the tray: typer
    assert headless_run_args(["run", "--headless", "--help"]) is None
    assert headless_run_args(["run", "--headless", "--bogus"]) is None  # typer explains the error
    assert headless_run_args(["run", "--headless", "--config"]) is None
    assert headless_run_args(["run", "--headless", "--no-autostart"]) is None


def test_headless_help_and_errors_still_come_from_the_cli(tmp_path: Path) -> None:
    help_ = subprocess.run([sys.executable, "-m", "agent_tray.cli", "run", "--headless", "--help"], cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
    assert help_.returncode == 0 and "--log-dir" in help_.stdout and "tray icon" in help_.stdout
    bad = tmp_path / "agent.json"
    bad.write_text(json.dumps({"device_id": "d1", "broker_url": "mqtt://127.0.0.1:1", "api_key": "k" * 32,
                               "interval_s": 5000, "bridge_prot": 1}))
    res = subprocess.run([sys.executable, "-m", "agent_tray.cli", "run", "--headless", "--no-log-file", "--config",
                          str(bad)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert "'bridge_prot': unknown setting" in res.stderr and "Fix the key or enroll again" in res.stderr


def _write(tmp_path: Path, **over: object) -> Path:
    data = {"device_id": "d1", "broker_url": "mqtt://127.0.0.1:1883", "api_key": "k" * 32, **over}
    path = tmp_path / "agent.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(("over", "message"), [
    ({"interval_s": 0.5}, "'interval_s': must be at least 1"),
    ({"interval_s": "30"}, "'interval_s': must be a number, not '30'"),
    ({"keepalive_s": 30.5}, "'keepalive_s': must be a whole number"),
    ({"insecure": 1}, "'insecure': must be true or false"),
    ({"device_id": "Not Valid"}, "'device_id': must match"),
    ({"api_key": "short"}, "'api_key': must be at least 16 characters long"),
    ({"log_min_level": "loud"}, "'log_min_level': must match"),
    ({"api_key": None}, "'api_key': must be set"),
    ({"broker_url": "http://x"}, "'broker_url': broker URL 'http://x' must look like mqtt://host:port"),
])
def test_config_errors_name_the_key_and_the_fix(tmp_path: Path, over: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, **over))
    assert message in str(err.value) and str(tmp_path / "agent.json") in str(err.value)


def test_config_numbers_take_json_forms_and_round_trip(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, interval_s=5, keepalive_s=60.0, bridge_token=None))
    assert (cfg.interval_s, type(cfg.interval_s), cfg.keepalive_s, type(cfg.keepalive_s)) == (5.0, float, 60, int)
    assert cfg.to_dict() == {"device_id": "d1", "broker_url": "mqtt://127.0.0.1:1883", "api_key": "k" * 32,
                             "insecure": False, "interval_s": 5.0, "keepalive_s": 60,
                             "outbox_max_bytes": 64 * 1024 * 1024, "log_min_level": "warn", "bridge_port": 17890,
                             "self_update": True}
    assert cfg.model_copy(update={"bridge_port": 0}).bridge_port == 0
    with pytest.raises(ConfigError, match="'bridge_port': must be at most 65535"):
        cfg.model_copy(update={"bridge_port": 70000})
    with pytest.raises(ConfigError, match="'interval_s': must be at most 3600"):
        AgentConfig(device_id="d1", broker_url="mqtt://h:1", api_key="k" * 32, interval_s=1e999)


def test_bridge_bodies_are_checked_without_pydantic() -> None:
    ev = parse_event({"type": "llm_output", "agentId": "ops", "usage": {"input": 5, "cacheRead": 2.0}, "x": 1})
    assert (ev.type, ev.agentId, ev.sessionId) == ("llm_output", "ops", "")
    ev = parse_event({"type": "after_tool_call", "toolName": "exec", "toolCallId": "c", "durationMs": 3, "error": True})
    assert (ev.toolName, ev.durationMs, ev.error) == ("exec", 3, True)
    for bad, why in (({"type": "nope"}, "'type': must be one of"), ({"type": "gateway_start", "port": 0}, "'port'"),
                     ({"type": "after_tool_call", "durationMs": -1}, "'durationMs': must be at least 0"),
                     ({"type": "after_tool_call", "error": [1]}, "'error': must be a string"), ([], "JSON object")):
        with pytest.raises(ValueError, match=why):
            parse_event(bad)
    info = parse_openclaw_info({"openclaw_version": "2026.9.6", "agents": ["main", "ops"]})
    assert (info.openclaw_version, info.agents, info.plugin_version) == ("2026.9.6", ("main", "ops"), None)
    with pytest.raises(ValueError, match="'agents'"):
        parse_openclaw_info({"agents": "main"})
    with pytest.raises(ValueError, match="'openclaw_version': must be at most 100"):
        parse_openclaw_info({"openclaw_version": "x" * 101})


def test_network_loop_sleeps_longer_but_pings_in_time() -> None:
    import paho.mqtt.client as mqtt

    from agent_tray.publisher import _Client, network_loop_timeout

    assert "_thread_main" in vars(mqtt.Client), "paho renamed loop_start's thread target: update _Client"
    assert "_thread_main" in vars(_Client)
    for keepalive in (5, 30, 600):  # a ping goes out at most this late; the broker waits 1.5 x keepalive
        assert keepalive + network_loop_timeout(keepalive) < 1.5 * keepalive
    assert network_loop_timeout(30) == 5.0
