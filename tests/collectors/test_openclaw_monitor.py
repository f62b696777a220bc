"""The agent re-reads OpenClaw's config and command when the state dir appears, the config changes or
the gateway restarts; it follows ``logging.file`` only, and reads no shared log dir without a state dir.
The log directory is injected (``TMPDIR`` and ``logging.file`` under tmp_path), never /tmp/openclaw."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures_openclaw import LATEST, LOG_NAME, backdate
from mqtt_helpers import free_port

from agent_tray.collectors.openclaw import _proc_start_time, locate_openclaw
from agent_tray.config import AgentConfig
from agent_tray.openclaw_monitor import OpenClawMonitor
from agent_tray.outbox import Outbox

UID = f"openclaw-{os.getuid()}" if hasattr(os, "getuid") else "openclaw"


def _line(message: str) -> str:
    return json.dumps({"0": message, "_meta": {"logLevelId": 5, "logLevelName": "ERROR", "name": "openclaw",
                                               "date": "2026-11-21T04:12:34.177Z"}, "time": "2026-11-21T04:12:34.177Z"})


@pytest.fixture
def machine(tmp_path):
    """A home without OpenClaw, and a shared temp log dir holding another instance's lines."""
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    shared = tmp / UID
    shared.mkdir(parents=True)
    (shared / LOG_NAME).write_text(_line("another instance's error") + "\n")
    env = {"PATH": "", "TMPDIR": str(tmp), "OPENCLAW_GATEWAY_PORT": "", "HOME": str(home)}
    home.mkdir()
    cfg = AgentConfig(device_id="dev-1", broker_url="mqtt://127.0.0.1:1", api_key="k" * 32,
                      data_dir=str(tmp_path / "agent"))
    outbox = Outbox(tmp_path / "outbox.sqlite")
    monitor = OpenClawMonitor(cfg, outbox, locate=lambda: locate_openclaw(env, home=home))
    yield monitor, home, tmp
    outbox.close()


def _write_config(state: Path, port: int, log_file: Path | None) -> None:
    state.mkdir(parents=True, exist_ok=True)
    config = {"gateway": {"port": port}, "agents": {"list": [{"id": "main"}, {"id": "ops"}]}}
    if log_file is not None:
        config["logging"] = {"file": str(log_file)}
    (state / "openclaw.json").write_text(json.dumps(config))


def test_no_state_dir_reads_no_log_dir_and_a_later_install_is_picked_up(machine):
    monitor, home, tmp = machine
    info = monitor.gateway()
    assert not info.installed and monitor.paths.log_dirs == ()
    assert monitor.collect() == (0, 0)  # the shared dir's line belongs to someone else
    port = free_port()
    log_file = tmp / "mine" / "gateway.log"
    log_file.parent.mkdir()
    shutil.copyfile(LATEST / "logs" / LOG_NAME, log_file)
    _write_config(home / ".openclaw", port, log_file)
    backdate(home / ".openclaw")  # the fixture's lines are from 2026-11-21: a state dir older than them
    info = monitor.gateway()
    assert monitor.relocations == 1 and info.installed and info.port == port
    assert set(info.agents) == {"main", "ops"}
    assert monitor.paths.log_dirs == (log_file,)  # logging.file and nothing else
    _, n_logs = monitor.collect()
    assert n_logs > 10
    texts = [json.loads(m.payload)["records"] for m in monitor.outbox.pending(limit=1000) if m.kind == "logs"]
    messages = [r["message"] for batch in texts for r in batch]
    assert "another instance's error" not in messages and any("HTTP 500" in m for m in messages)


def test_config_change_and_gateway_restart_re_read_the_config(machine):
    monitor, home, tmp = machine
    state = home / ".openclaw"
    _write_config(state, free_port(), None)
    monitor.gateway()
    assert monitor.relocations == 1
    assert tmp / UID in monitor.paths.log_dirs  # default dirs once the state dir exists
    monitor.gateway()
    assert monitor.relocations == 1  # nothing changed: nothing re-read
    new_port = free_port()
    _write_config(state, new_port, None)
    os.utime(state / "openclaw.json", ns=(1, 1))  # a same-size rewrite within one mtime tick still counts
    assert monitor.gateway().port == new_port and monitor.relocations == 2
    # the gateway (re)starts: a lock file names a live process, then another one
    config = str(monitor.paths.config_path)
    lock_dir = state / "tmp" / UID
    lock_dir.mkdir(parents=True)
    lock = lock_dir / f"gateway.{hashlib.sha256(config.encode()).hexdigest()[:8]}.lock"
    procs = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) for _ in range(2)]
    try:
        for n, p in enumerate(procs):
            lock.write_text(json.dumps({"pid": p.pid, "startTime": _proc_start_time(p.pid), "configPath": config,
                                        "port": new_port}) + " " * 64)
            assert monitor.gateway().pid == p.pid
            assert monitor.relocations == 3 + n  # the gateway started, then restarted
    finally:
        for p in procs:
            p.kill()
            p.wait()
