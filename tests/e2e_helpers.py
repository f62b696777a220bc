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
    log = open(log_path, "wb")  # closed with the process by the caller's stop_agent
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


class CliResult:
    """What a ``clawfleet-server`` process did: ``exit_code``, ``output`` (stdout + stderr), ``stdout``."""

    def __init__(self, proc: subprocess.CompletedProcess) -> None:
        self.exit_code, self.stdout, self.output = proc.returncode, proc.stdout, proc.stdout + proc.stderr


def server_cli(*args: str, stdin: str | None = None, timeout: float = 60) -> CliResult:
    """Run ``clawfleet-server ARGS`` as its own process (``stdin`` as its input), as a user does next
    to a running server. (In the test process it would re-point the models' shared database while
    that server writes.)"""
    return CliResult(subprocess.run([sys.executable, "-m", "fleet_server.cli.main", *args], input=stdin,
                                    capture_output=True, text=True, timeout=timeout, env=user_env()))


def user_env() -> dict[str, str]:
    """The environment of a user's shell: NiceGUI switches to its own test mode under pytest."""
    import os

    return {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}


def http_ok(url: str) -> bool:
    """True when ``url`` answers 200 within 2 s."""
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 - loopback URL built by the test
            return r.status == 200
    except OSError:
        return False


class ServerProcess:
    """``clawfleet-server run`` as a real child process (its own session, so its managed Mosquitto
    and local agent can be told apart), on the given dashboard and MQTT ports, logging to ``log_path``
    (appended across restarts). ``extra`` are more ``run`` options."""

    def __init__(self, data_dir: Path, port: int, mqtt_port: int, log_path: Path, *extra: str) -> None:
        self.data_dir, self.port, self.mqtt_port, self.log_path, self.extra = data_dir, port, mqtt_port, log_path, extra
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> ServerProcess:
        """Start and wait until ``/healthz`` answers. Raises AssertionError (with the log's tail) if it exits."""
        log = open(self.log_path, "ab")  # the child keeps its own copy of the descriptor
        self.proc = subprocess.Popen([sys.executable, "-m", "fleet_server.cli.main", "run", "--data-dir",
                                      str(self.data_dir), "--port", str(self.port), "--mqtt-port", str(self.mqtt_port),
                                      *self.extra], stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                     env=user_env())
        log.close()
        proc = self.proc
        wait_for(lambda: http_ok(f"http://127.0.0.1:{self.port}/healthz") or proc.poll() is not None, timeout,
                 what="the dashboard to answer")
        assert proc.poll() is None, self.log_path.read_text()[-3000:]
        return self

    def broker_pid(self) -> int:
        """Pid of the managed Mosquitto, from ``<data dir>/mosquitto/mosquitto.pid``."""
        import json

        return int(json.loads((self.data_dir / "mosquitto" / "mosquitto.pid").read_text())["pid"])

    def kill(self) -> None:
        """SIGKILL the server process only (its managed broker is left running, orphaned)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM and wait (the server stops its broker); SIGKILL after ``timeout`` s. Also stops an
        orphaned broker left by :meth:`kill`."""
        import signal

        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        import psutil

        try:
            broker = psutil.Process(self.broker_pid())
            if broker.name().startswith("mosquitto"):
                broker.send_signal(signal.SIGTERM)
                broker.wait(10)
        except (OSError, ValueError, psutil.Error):
            pass
