"""locate_openclaw: env vars, profiles, OPENCLAW_HOME, JSON5 configs, agents, log dirs."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest
from fixtures_openclaw import fixture_path

from agent_tray.collectors.openclaw import DEFAULT_PORT, locate_openclaw

JSON5_CONFIG = """
// OpenClaw config, JSON5 as users write it
{
  gateway: {
    port: 19001,   // not the default
    bind: 'loopback',
  },
  agents: {
    list: [ { id: 'Work', default: true }, { id: 'home', }, ],
    entries: { research: { name: 'Research', }, },
  },
  logging: { file: '~/oc-logs/gateway.log', },
  /* trailing commas everywhere */
}
"""


def test_defaults_under_home(tmp_path: Path) -> None:
    paths = locate_openclaw({"PATH": ""}, home=tmp_path)
    assert paths.state_dir == tmp_path / ".openclaw"
    assert paths.config_path == tmp_path / ".openclaw" / "openclaw.json"
    assert (paths.port, paths.agent_ids, paths.config, paths.config_error) == (DEFAULT_PORT, ("main",), {}, None)
    assert paths.cli_path is None and paths.profile is None
    assert paths.agent_db("main") == tmp_path / ".openclaw/agents/main/agent/openclaw-agent.sqlite"
    assert paths.sessions_dir("main") == tmp_path / ".openclaw/agents/main/sessions"


def test_legacy_clawdbot_dir_is_used_when_there_is_no_openclaw_dir(tmp_path: Path) -> None:
    (tmp_path / ".clawdbot").mkdir()
    assert locate_openclaw({"PATH": ""}, home=tmp_path).state_dir == tmp_path / ".clawdbot"
    (tmp_path / ".openclaw").mkdir()
    assert locate_openclaw({"PATH": ""}, home=tmp_path).state_dir == tmp_path / ".openclaw"


def test_env_vars_override_everything(tmp_path: Path) -> None:
    state, config = tmp_path / "state", tmp_path / "etc" / "oc.json5"
    config.parent.mkdir()
    config.write_text("{gateway: {port: 19555}}")
    env = {"OPENCLAW_STATE_DIR": str(state), "OPENCLAW_CONFIG_PATH": str(config), "PATH": ""}
    paths = locate_openclaw(env, home=tmp_path / "home")
    assert (paths.state_dir, paths.config_path, paths.port) == (state, config, 19555)
    assert locate_openclaw({**env, "OPENCLAW_GATEWAY_PORT": "20001"}).port == 20001
    assert locate_openclaw({**env, "OPENCLAW_GATEWAY_PORT": "not-a-port"}).port == 19555
    assert locate_openclaw({**env, "OPENCLAW_GATEWAY_PORT": "70000"}).port == 19555


def test_profile_and_openclaw_home(tmp_path: Path) -> None:
    home, oc_home = tmp_path / "home", tmp_path / "oc-home"
    assert locate_openclaw({"PATH": ""}, home=home, profile="work").state_dir == home / ".openclaw-work"
    assert locate_openclaw({"OPENCLAW_PROFILE": "lab", "PATH": ""}, home=home).profile == "lab"
    assert locate_openclaw({"OPENCLAW_PROFILE": "lab", "PATH": ""}, home=home).state_dir == home / ".openclaw-lab"
    env = {"OPENCLAW_HOME": str(oc_home), "PATH": ""}
    paths = locate_openclaw(env, home=home, profile="work")
    assert (paths.home, paths.state_dir) == (oc_home, oc_home / ".openclaw-work")
    assert locate_openclaw({**env, "OPENCLAW_STATE_DIR": "~/custom"}, home=home).state_dir == oc_home / "custom"


def test_json5_config_with_comments_and_trailing_commas(tmp_path: Path) -> None:
    state = tmp_path / ".openclaw"
    (state / "agents" / "main").mkdir(parents=True)
    (state / "agents" / "Not A Valid Id").mkdir()
    (state / "openclaw.json").write_text(JSON5_CONFIG)
    paths = locate_openclaw({"PATH": "", "TMPDIR": str(tmp_path / "tmp")}, home=tmp_path)
    assert paths.config_error is None
    assert paths.port == 19001
    assert paths.agent_ids == ("home", "main", "research", "work")
    assert paths.log_dirs == (tmp_path / "oc-logs" / "gateway.log",)  # logging.file, and nothing else
    uid = f"openclaw-{os.getuid()}" if hasattr(os, "getuid") else "openclaw"
    assert state / "tmp" / uid in paths.lock_dirs and tmp_path / "tmp" / uid in paths.lock_dirs


def test_log_dirs_default_only_with_a_state_dir(tmp_path: Path) -> None:
    env = {"PATH": "", "TMPDIR": str(tmp_path / "tmp")}
    assert locate_openclaw(env, home=tmp_path).log_dirs == ()  # no ~/.openclaw: read no shared log dir
    (tmp_path / ".openclaw").mkdir()
    dirs = locate_openclaw(env, home=tmp_path).log_dirs
    uid = f"openclaw-{os.getuid()}" if hasattr(os, "getuid") else "openclaw"
    assert tmp_path / "tmp" / uid in dirs
    if os.name != "nt":
        assert Path("/tmp/openclaw") in dirs


def test_broken_config_warns_and_uses_defaults(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    state = tmp_path / ".openclaw"
    state.mkdir()
    (state / "openclaw.json").write_text("{gateway: {port: 19001,,, oops")
    with caplog.at_level(logging.WARNING):
        paths = locate_openclaw({"PATH": ""}, home=tmp_path)
    assert (paths.port, paths.agent_ids, paths.config) == (DEFAULT_PORT, ("main",), {})
    assert paths.config_error and "not valid JSON5" in paths.config_error
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "openclaw.json is not valid JSON5" in caplog.records[0].getMessage()
    (state / "openclaw.json").write_text("[1, 2]")
    assert "does not hold a JSON object" in (locate_openclaw({"PATH": ""}, home=tmp_path).config_error or "")


def test_the_fixture_configs(tmp_path: Path) -> None:
    for era, port in (("latest", 18789), ("legacy", 18790)):
        env = {"OPENCLAW_CONFIG_PATH": str(fixture_path(era, "config", "openclaw.json")),
               "OPENCLAW_STATE_DIR": str(tmp_path / era), "PATH": ""}
        paths = locate_openclaw(env)
        assert (paths.port, paths.agent_ids, paths.config_error) == (port, ("main",), None), era


def test_cli_found_on_path(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    cli = bin_dir / ("openclaw.cmd" if os.name == "nt" else "openclaw")
    cli.write_text("#!/bin/sh\necho 'OpenClaw 2026.9.6 (eb377ac)'\n")
    cli.chmod(cli.stat().st_mode | stat.S_IXUSR)
    assert locate_openclaw({"PATH": str(bin_dir)}, home=tmp_path).cli_path == cli
