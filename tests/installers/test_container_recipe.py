"""The container's command, run here without a container runtime (none works on this machine: no
Docker daemon, no podman): the Dockerfile's CMD is started as a process, with loopback and free
ports instead of 0.0.0.0:8080/8883, and answers the HEALTHCHECK's /healthz."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import yaml
from e2e_helpers import wait_for
from mqtt_helpers import free_port

ROOT = Path(__file__).resolve().parents[2]


def _cmd() -> list[str]:
    text = (ROOT / "Dockerfile").read_text()
    entry = json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", text, re.M).group(1))
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", text, re.M).group(1))
    assert entry == ["clawfleet-server"]
    return cmd


def test_compose_publishes_the_dashboard_on_loopback_and_mqtt_tls() -> None:
    svc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["server"]
    assert svc["ports"] == ["127.0.0.1:8080:8080", "8883:8883"]
    assert svc["volumes"] == ["clawfleet-data:/var/lib/clawfleet"]
    assert "EXPOSE 8080 8883" in (ROOT / "Dockerfile").read_text()


def test_container_command_serves_healthz(tmp_path: Path) -> None:
    cmd = _cmd()
    assert cmd[:3] == ["run", "--host", "0.0.0.0"] and "--no-local-agent" in cmd  # noqa: S104 - the image's bind
    cmd[2] = "127.0.0.1"  # tests listen on loopback only
    port = free_port()
    args = [sys.executable, "-m", "fleet_server.cli", *cmd, "--port", str(port), "--mqtt-port", str(free_port()),
            "--mqtt-tls-port", str(free_port())]
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}  # else NiceGUI acts as under pytest
    env["CLAWFLEET_DATA_DIR"] = str(tmp_path / "data")
    log = open(tmp_path / "server.log", "wb")  # closed below
    proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    return r.status == 200
            except OSError:
                return False

        wait_for(healthy, 60, interval=0.5, what="/healthz")
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
    # 'docker stop' sends SIGTERM: uvicorn shuts down, then re-raises the signal (exit 143 in the container)
    log_text = (tmp_path / "server.log").read_text()
    assert proc.returncode in (0, -signal.SIGTERM, 143), log_text[-2000:]
    assert "server stopped" in log_text
