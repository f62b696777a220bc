"""The server's own local agent (``clawfleet-server run --local-agent``): reports this machine.

Enrolls a device named after this host on first use, writes its agent config into
``<data_dir>/local-agent/agent.json`` (mode 0600), and runs ``clawfleet-agent run --headless``
as a supervised child process that is stopped with the server.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from agent_tray.config import AgentConfig, ConfigError, load_config, save_config
from agent_tray.service import EXIT_WITH_PARENT_ENV
from broker.acl import is_server_client_id
from broker.dynsec import DynSecClient
from fleet_server.devices.reconcile import NEEDS_NEW_KEY
from fleet_server.devices.registry import add_device
from fleet_server.store.models import Device
from shared.topics import suggest_device_id

log = logging.getLogger("clawfleet.local-agent")


def ensure_local_device(dynsec: DynSecClient, data_dir: Path, broker_url: str, interval_s: float,
                        ca_pem: str | None = None, bridge_port: int = 17890) -> Path:
    """Make sure this host is enrolled and has a valid agent config; return the config path.

    ``ca_pem``: CA certificate the local agent pins for an ``mqtts://`` ``broker_url``;
    ``bridge_port``: its local bridge port (0 = off), updated in place when it changed.
    A device whose config is missing or whose broker URL or CA changed, or whose broker client was
    lost (reconciliation marked it "needs new key"), is (re)enrolled under the same id.
    """
    cfg_path = data_dir / "local-agent" / "agent.json"
    name = socket.gethostname() or "localhost"
    device_id = suggest_device_id(name)
    if is_server_client_id(device_id):  # a host named e.g. "clawfleet-server": that id is the server's own
        device_id = f"host-{device_id}"[:63]
    try:
        cfg = load_config(cfg_path)
        dev = Device.get_or_none(Device.id == device_id)
        if (cfg.device_id == device_id and cfg.broker_url == broker_url and cfg.ca_pem == ca_pem
                and dev is not None and dev.status_reason != NEEDS_NEW_KEY):  # devices: broker client lost
            if cfg.bridge_port != bridge_port or cfg.interval_s != interval_s:
                save_config(cfg.model_copy(update={"bridge_port": bridge_port, "interval_s": interval_s}), cfg_path)
            return cfg_path
    except ConfigError:
        pass
    if Device.get_or_none(Device.id == device_id) is not None:
        from fleet_server.devices.registry import delete_device

        log.info("re-enrolling the local device %s (its agent config was missing or outdated)", device_id)
        delete_device(dynsec, device_id, keep_data=True)
    new = add_device(dynsec, name, broker_url, device_id=device_id, tags="local", ca_pem=ca_pem)
    save_config(AgentConfig(device_id=device_id, broker_url=broker_url, api_key=new.api_key, ca_pem=ca_pem,
                            interval_s=interval_s, data_dir=str(cfg_path.parent), bridge_port=bridge_port), cfg_path)
    log.info("local agent enrolled as device %s", device_id)
    return cfg_path


class LocalAgentProcess:
    """Runs the agent as a child process and restarts it if it dies (5 s backoff)."""

    def __init__(self, config_path: Path) -> None:
        self.config_path = config_path
        self.proc: subprocess.Popen | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._supervise, name="clawfleet-local-agent", daemon=True)

    def start(self) -> None:
        """Start the agent and its supervisor thread."""
        self._spawn()
        self._thread.start()

    def _spawn(self) -> None:
        cmd = [sys.executable, "-m", "agent_tray.cli", "run", "--headless", "--config", str(self.config_path)]
        env = {**os.environ, EXIT_WITH_PARENT_ENV: str(os.getpid())}  # no orphan if the server is SIGKILLed
        self.proc = subprocess.Popen(cmd, env=env)  # inherits stdout/stderr: its log lines appear with the server's
        log.info("local agent started (pid %d)", self.proc.pid)

    def _supervise(self) -> None:
        while not self._stop.wait(1.0):
            if self.proc and self.proc.poll() is not None and not self._stop.is_set():
                log.warning("local agent exited with code %s; restarting in 5 s", self.proc.returncode)
                if self._stop.wait(5):
                    return
                self._spawn()

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM the agent (it publishes 'shutdown' and disconnects), kill it after ``timeout`` s."""
        self._stop.set()
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        deadline = time.monotonic() + 2
        while self._thread.is_alive() and time.monotonic() < deadline:
            self._thread.join(timeout=0.1)
