"""Helpers for end-to-end tests: waiting on conditions, running a real agent process."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from agent_tray.config import AgentConfig, save_config
from agent_tray.service import AgentService

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.05, what: str = "") -> T:
    """Poll ``predicate`` until it returns a truthy value (returned) or fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(interval)


def write_agent_config(tmp: Path, device_id: str, api_key: str, mqtt_port: int, **over: object) -> Path:
    """Agent config for a test agent: 1 s samples, 5 s keepalive, no bridge, no OpenClaw."""
    fields = dict(device_id=device_id, broker_url=f"mqtt://127.0.0.1:{mqtt_port}", api_key=api_key,
                  interval_s=1, keepalive_s=5, data_dir=str(tmp / f"agent-{device_id}"), bridge_port=0,
                  openclaw_state_dir=str(tmp / "no-openclaw"))
    fields.update(over)
    path = tmp / f"agent-{device_id}.json"
    save_config(AgentConfig(**fields), path)
    return path


def start_agent(config_path: Path, log_path: Path) -> subprocess.Popen:
    """Run ``clawfleet-agent run --headless`` as a real child process, logging to ``log_path``."""
    log = open(log_path, "wb")  # noqa: SIM115 - closed with the process by the caller's stop_agent
    return subprocess.Popen([sys.executable, "-m", "agent_tray.cli", "run", "--headless", "--config",
                             str(config_path)], stdout=log, stderr=subprocess.STDOUT)


def stop_agent(proc: subprocess.Popen, timeout: float = 10) -> int:
    """SIGTERM the agent and wait; kill it if it does not stop. Returns the exit code."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


class RunningAgent:
    """An :class:`AgentService` running in a thread of the test process (``.service``); :meth:`stop` joins it."""

    def __init__(self, cfg: AgentConfig) -> None:
        self.service = AgentService(cfg)
        self.thread = threading.Thread(target=self.service.run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Stop the service (final status, disconnect) and wait for its thread."""
        self.service.stop()
        self.thread.join(15)
        assert not self.thread.is_alive()
