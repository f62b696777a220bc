"""Data directories are the owner's only (0700): a new server or agent data dir, and one an older
release left 0755 (real files, real server start)."""

from __future__ import annotations

import stat
from pathlib import Path

from agent_tray.config import AgentConfig, save_config
from agent_tray.outbox import Outbox
from fleet_server.store.db import open_database
from shared.private_files import ensure_private_dir


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_server_and_agent_data_dirs_are_private(tmp_path):
    server_dir = tmp_path / "server"
    open_database(server_dir).close()
    assert mode(server_dir) == 0o700
    old = tmp_path / "old-server"
    old.mkdir(mode=0o755)
    old.chmod(0o755)  # as an older release (and the umask) left it
    open_database(old).close()
    assert mode(old) == 0o700
    agent_dir = tmp_path / "agent"
    save_config(AgentConfig(device_id="box", broker_url="mqtt://127.0.0.1:1883", api_key="k" * 43,
                            data_dir=str(agent_dir)), agent_dir / "agent.json")
    Outbox(agent_dir / "data" / "outbox.sqlite").close()
    assert mode(agent_dir) == 0o700 and mode(agent_dir / "data") == 0o700


def test_ensure_private_dir_tightens_and_creates(tmp_path):
    d = tmp_path / "a" / "b"
    assert ensure_private_dir(d) == d and mode(d) == 0o700
    d.chmod(0o775)
    ensure_private_dir(d)
    assert mode(d) == 0o700
