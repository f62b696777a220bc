"""The one-line install as root (``curl … | sudo sh``): the .deb from the fleet, enrollment into
/etc/clawfleet-agent (readable by the service's group only), the agent running as the dedicated user, and
running it again upgrades to the fleet's newer .deb. Real server, real dpkg, the packages built by the
project's scripts. No systemd runs here, so install.sh starts the agent itself as the service user (what it
does on machines without systemd); under systemd the packaged unit runs it (.github/workflows/agent-linux.yml)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from e2e_helpers import ServerProcess, server_cli, wait_for
from mqtt_helpers import free_port
from package_helpers import built_packages, bumped_version, device_meta, one

from shared.version import __version__

pytestmark = [
    pytest.mark.installers, pytest.mark.timeout(1800),
    pytest.mark.skipif(shutil.which("dpkg") is None or shutil.which("curl") is None, reason="needs dpkg and curl"),
    pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="the system install needs root"),
]


def _installed() -> bool:
    res = subprocess.run(["dpkg-query", "-W", "-f=${Status}", "clawfleet-agent"], capture_output=True, text=True)
    return "install ok installed" in res.stdout


def _agents() -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["cmdline", "username"])
            if (p.info["cmdline"] or [""])[0] == "/usr/bin/clawfleet-agent" and "run" in p.info["cmdline"]]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    assert not _installed(), "clawfleet-agent is already installed on this machine; purge it first"
    data = tmp_path / "server"
    (data / "agent-packages").mkdir(parents=True)
    shutil.copy(one(built_packages(__version__), "*.deb"), data / "agent-packages")
    srv = ServerProcess(data, free_port(), free_port(), tmp_path / "server.log", "--no-local-agent").start()
    try:
        yield srv
    finally:
        for p in _agents():
            p.send_signal(signal.SIGKILL)
        subprocess.run(["dpkg", "--purge", "clawfleet-agent"], capture_output=True)
        srv.stop()


def _install(url: str, tmp: Path, *args: str, token: str | None = None) -> subprocess.CompletedProcess:
    """``curl -fsSL URL/install.sh | sudo sh`` (the script from the server, run by sh as root); a token goes in
    through stdin (``--token-file -``), never as an argument."""
    script = tmp / "install.sh"
    script.write_bytes(subprocess.run(["curl", "-fsSL", f"{url}/install.sh"], capture_output=True, check=True).stdout)
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8"}
    if token is not None:
        args = (*args, "--token-file", "-")
    return subprocess.run(["sh", str(script), *args], input=(token or "") + "\n", env=env, capture_output=True,
                          text=True, timeout=900, start_new_session=True)


def test_system_install_enrolls_runs_as_the_service_user_and_upgrades(server: ServerProcess, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{server.port}"
    res = server_cli("device", "add", "Rack box", "--data-dir", str(server.data_dir))
    assert res.exit_code == 0, res.output
    token = res.output.split("keep it secret):\n")[1].split()[0]

    res = _install(url, tmp_path, token=token)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert "system install (deb:" in out and "service runs as: clawfleet-agent (dedicated user)" in out
    assert _installed() and token not in out
    cfg = Path("/etc/clawfleet-agent/agent.json")
    assert (cfg.stat().st_uid, cfg.stat().st_mode & 0o777) == (0, 0o640)
    wait_for(lambda: device_meta(server.data_dir, "rack-box").get("agent_version") == __version__, 60,
             what="the system agent reporting")
    assert {p.info["username"] for p in _agents()} == {"clawfleet-agent"}  # not root
    assert Path("/var/lib/clawfleet-agent/outbox.sqlite").exists()  # its data where purge finds it

    shutil.copy(one(built_packages(bumped_version()), "*.deb"), server.data_dir / "agent-packages")
    res = _install(url, tmp_path)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert f"installed: {__version__} -> upgrading in place" in out and "enrollment: kept" in out
    wait_for(lambda: device_meta(server.data_dir, "rack-box").get("agent_version") == bumped_version(), 60,
             what="the upgraded agent reporting")
    assert len(_agents()) == 1
