"""``clawfleet-agent`` as a person uses it: enroll (token from stdin / file / argument, settings kept,
key checked with a real Mosquitto before anything is written), status, --version."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from e2e_helpers import start_agent, stop_agent, wait_for, write_agent_config
from mqtt_helpers import free_port, make_device, unique_device_id
from typer.testing import CliRunner

from agent_tray.commands import app
from agent_tray.config import load_config
from shared.enrollment import Enrollment, encode_token
from shared.version import __version__

runner = CliRunner()


@pytest.fixture(scope="module")
def device(dynsec, managed_broker) -> tuple[str, str, str]:
    """``(device_id, token, broker_url)`` of a device that exists on the broker."""
    device_id = unique_device_id("cli")
    key = make_device(dynsec, device_id)
    url = f"mqtt://127.0.0.1:{managed_broker.cfg.port}"
    return device_id, encode_token(Enrollment(url=url, device_id=device_id, api_key=key)), url


def _enroll(cfg: Path, *args: str, stdin: str | None = None):
    return runner.invoke(app, ["enroll", "--config", str(cfg), *args], input=stdin)


def test_version() -> None:
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.strip() == f"clawfleet-agent {__version__}"


def test_enroll_from_stdin_checks_the_key_and_writes_0600(device, tmp_path: Path) -> None:
    device_id, token, url = device
    cfg = tmp_path / "agent.json"
    res = _enroll(cfg, "-", stdin=token + "\n")
    assert res.exit_code == 0, res.output
    assert "(key accepted)" in res.output
    loaded = load_config(cfg)
    assert (loaded.device_id, loaded.broker_url) == (device_id, url)
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o600


def test_enroll_keeps_existing_settings_unless_given(device, tmp_path: Path) -> None:
    _device_id, token, _url = device
    cfg = tmp_path / "agent.json"
    token_file = tmp_path / "token.txt"
    token_file.write_text(token)
    assert _enroll(cfg, "--token-file", str(token_file), "--bridge-port", "17999", "--interval", "12",
                   "--openclaw-state-dir", str(tmp_path / "oc")).exit_code == 0
    res = _enroll(cfg, "--token-file", str(token_file), "--interval", "45")  # re-enroll: new interval only
    assert res.exit_code == 0, res.output
    assert "kept from the previous config: " in res.output and "bridge_port" in res.output
    loaded = load_config(cfg)
    assert (loaded.bridge_port, loaded.interval_s, loaded.openclaw_state_dir) == (17999, 45, str(tmp_path / "oc"))


def test_wrong_key_is_refused_and_nothing_is_written(device, tmp_path: Path) -> None:
    device_id, token, url = device
    cfg = tmp_path / "agent.json"
    assert _enroll(cfg, "-", stdin=token).exit_code == 0
    before = cfg.read_bytes()
    bad = encode_token(Enrollment(url=url, device_id=device_id, api_key="cfk_" + "x" * 40))
    res = _enroll(cfg, "--interval", "99", "-", stdin=bad)
    assert res.exit_code == 3
    assert "key refused" in res.output and "ask the fleet admin for a new token" in res.output
    assert "nothing was written" in res.output
    assert cfg.read_bytes() == before
    # --offline writes without asking the broker
    assert _enroll(cfg, "--offline", "-", stdin=bad).exit_code == 0
    assert load_config(cfg).api_key.endswith("x" * 8)


def test_unreachable_broker_writes_nothing(tmp_path: Path) -> None:
    token = encode_token(Enrollment(url=f"mqtt://127.0.0.1:{free_port()}", device_id="lost", api_key="k" * 32))
    cfg = tmp_path / "agent.json"
    res = _enroll(cfg, token)
    assert res.exit_code == 4 and "broker unreachable" in res.output and "--offline" in res.output
    assert not cfg.exists()


def test_damaged_token_and_missing_token(tmp_path: Path) -> None:
    res = _enroll(tmp_path / "a.json", "cfe1.garbage")
    assert res.exit_code == 2 and "error:" in res.output
    res = _enroll(tmp_path / "a.json", "-", stdin="   \n")
    assert res.exit_code == 2 and "the token is empty" in res.output


def test_status_of_a_running_agent_and_of_a_stopped_one(device, tmp_path: Path) -> None:
    device_id, token, _url = device
    bridge = free_port()
    cfg = tmp_path / "agent.json"
    assert _enroll(cfg, "-", "--bridge-port", str(bridge), "--interval", "1", "--data-dir", str(tmp_path / "data"),
                   "--openclaw-state-dir", str(tmp_path / "no-openclaw"), stdin=token).exit_code == 0
    res = runner.invoke(app, ["status", "--config", str(cfg)])
    assert res.exit_code == 3, res.output
    assert "not running" in res.output and device_id in res.output
    agent = start_agent(cfg, tmp_path / "agent.log")
    try:
        def answer() -> dict | None:
            r = runner.invoke(app, ["status", "--config", str(cfg), "--json"])
            data = json.loads(r.output) if r.exit_code == 0 else None
            return data if data and data["connected"] and data["last_publish_ms"] else None

        data = wait_for(answer, 20, interval=0.3, what="a connected agent that has published")
        assert data["device_id"] == device_id and data["health"] == "ok" and data["openclaw"] == "absent"
        res = runner.invoke(app, ["status", "--config", str(cfg)])
        assert res.exit_code == 0
        for line in ("state         ok: connected", f"device        {device_id}", "outbox", "last publish",
                     "OpenClaw      not installed"):
            assert line in res.output, res.output
    finally:
        assert stop_agent(agent) == 0
    assert "logging to" in (tmp_path / "agent.log").read_text()


def test_status_without_config_says_enroll_first(tmp_path: Path) -> None:
    res = runner.invoke(app, ["status", "--config", str(tmp_path / "none.json")])
    assert res.exit_code == 2 and "clawfleet-agent enroll" in res.output


def test_console_script_runs(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "agent_tray.cli", "--version"], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == f"clawfleet-agent {__version__}"


def test_log_file_rotates_in_the_log_dir(device, tmp_path: Path, managed_broker) -> None:
    cfg = write_agent_config(tmp_path, device[0], "irrelevant-key-0123456789", managed_broker.cfg.port)
    logs = tmp_path / "logs"
    proc = subprocess.Popen([sys.executable, "-m", "agent_tray.cli", "run", "--headless", "--config", str(cfg),
                             "--log-dir", str(logs)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        log = logs / "agent.log"
        wait_for(lambda: log.exists() and f"agent {__version__} starting" in log.read_text(), 15, what="the log file")
    finally:
        assert stop_agent(proc) == 0
