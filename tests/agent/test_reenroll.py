"""Re-enrolling reaches a running agent, and two agents on one machine are told apart (real Mosquitto,
real headless agent processes).

- After the fleet admin rotates the key, ``clawfleet-agent enroll NEW-TOKEN`` rewrites the config and
  the running agent, refused meanwhile, reconnects with the new key within seconds — no restart.
- ``enroll --gui`` (the tray's Enroll…) exits 0 after a successful enrollment.
- A second agent whose bridge port is taken listens on a free one and records it; ``status`` of each
  config describes that config's device, never the other agent's.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest
from e2e_helpers import start_agent, stop_agent, wait_for
from mqtt_helpers import free_port, make_device, unique_device_id
from typer.testing import CliRunner

from agent_tray import enroll_dialog
from agent_tray.commands import app
from shared.enrollment import Enrollment, encode_token

runner = CliRunner()


def _status(cfg: Path) -> dict | None:
    r = runner.invoke(app, ["status", "--config", str(cfg), "--json"])
    return json.loads(r.output) if r.exit_code == 0 else None


def _enroll(cfg: Path, token: str, *args: str) -> str:
    res = runner.invoke(app, ["enroll", "--config", str(cfg), "-", *args], input=token)
    assert res.exit_code == 0, res.output
    return res.output


def test_a_new_key_reaches_the_running_agent(dynsec, managed_broker, tmp_path: Path) -> None:
    device_id = unique_device_id("reenroll")
    url = f"mqtt://127.0.0.1:{managed_broker.cfg.port}"
    key = make_device(dynsec, device_id)
    cfg = tmp_path / "agent.json"
    _enroll(cfg, encode_token(Enrollment(url=url, device_id=device_id, api_key=key)), "--bridge-port",
            str(free_port()), "--interval", "1", "--data-dir", str(tmp_path / "data"), "--openclaw-state-dir",
            str(tmp_path / "no-openclaw"))
    agent = start_agent(cfg, tmp_path / "agent.log")
    try:
        wait_for(lambda: (s := _status(cfg)) and s["connected"], 20, interval=0.3, what="connected")
        new_key = "cfk_" + secrets.token_urlsafe(32)
        dynsec.set_device_password(device_id, new_key)  # what 'device rotate-key' does on the broker
        wait_for(lambda: (s := _status(cfg)) and s["health"] == "refused", 20, interval=0.3, what="key refused")
        out = _enroll(cfg, encode_token(Enrollment(url=url, device_id=device_id, api_key=new_key)))
        assert "(key accepted)" in out and "switches to it within a few seconds" in out
        wait_for(lambda: (s := _status(cfg)) and s["connected"] and s["health"] == "ok", 15, interval=0.3,
                 what="the running agent connected with the new key")
        assert agent.poll() is None  # the same process: nobody restarted it
    finally:
        assert stop_agent(agent) == 0
    assert "the agent config changed" in (tmp_path / "agent.log").read_text()


def test_enroll_gui_exits_0_after_enrolling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the Tk dialog needs a person to paste a token: its outcome is stood in for here (the dialog's own
    # enrollment is agent_tray.enroll.enroll, tested with a real broker in test_cli.py)
    monkeypatch.setattr(enroll_dialog, "ask_and_enroll", lambda path: True)
    res = runner.invoke(app, ["enroll", "--gui", "--config", str(tmp_path / "agent.json")])
    assert res.exit_code == 0 and "error" not in res.output, res.output
    monkeypatch.setattr(enroll_dialog, "ask_and_enroll", lambda path: False)
    assert runner.invoke(app, ["enroll", "--gui", "--config", str(tmp_path / "agent.json")]).exit_code == 1


def test_two_agents_on_one_machine_each_status_describes_its_own(dynsec, managed_broker, tmp_path: Path) -> None:
    url = f"mqtt://127.0.0.1:{managed_broker.cfg.port}"
    bridge = free_port()
    cfgs, agents = {}, []
    for name in ("first", "second"):
        device_id = unique_device_id(name)
        token = encode_token(Enrollment(url=url, device_id=device_id, api_key=make_device(dynsec, device_id)))
        cfgs[device_id] = tmp_path / f"{name}.json"
        _enroll(cfgs[device_id], token, "--bridge-port", str(bridge), "--interval", "1", "--data-dir",
                str(tmp_path / name), "--openclaw-state-dir", str(tmp_path / "no-openclaw"))
    try:
        for device_id, cfg in cfgs.items():  # one after the other: the second finds the port taken
            agents.append(start_agent(cfg, tmp_path / f"{device_id}.log"))
            wait_for(lambda cfg=cfg: (s := _status(cfg)) and s["connected"], 20, interval=0.3,
                     what=f"{device_id} connected")
        for device_id, cfg in cfgs.items():
            assert _status(cfg)["device_id"] == device_id
        second = list(cfgs)[1]
        assert "listens on 127.0.0.1:" in (tmp_path / f"{second}.log").read_text()
        assert stop_agent(agents.pop()) == 0  # the second stops; the first still answers on the shared port
        res = runner.invoke(app, ["status", "--config", str(cfgs[second])])
        assert res.exit_code == 3 and "answers for another agent" in res.output, res.output
        assert second in res.output and list(cfgs)[0] in res.output
    finally:
        for agent in agents:
            assert stop_agent(agent) == 0
