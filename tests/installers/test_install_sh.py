"""The one-line install and self-update, end to end: a real ``clawfleet-server run`` serving packages built
by the project's scripts, the real ``install.sh`` it serves (run with ``sh``, as ``curl … | sh`` does), the
installed one-folder agent reporting to it, and updates from the fleet.

The broker port the agent uses goes through a :class:`net_helpers.PortGate` so the test can cut the agent off
(a new version that cannot report). No systemd runs here: install.sh then starts the agent in the
background itself, which is what it does on such machines (containers, WSL)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from e2e_helpers import ServerProcess, server_cli, wait_for
from mqtt_helpers import free_port
from net_helpers import PortGate
from package_helpers import built_packages, bumped_version, device_meta, one

from shared.enrollment import decode_token, encode_token
from shared.version import __version__

pytestmark = [pytest.mark.installers, pytest.mark.timeout(1800),
              pytest.mark.skipif(not shutil.which("curl"), reason="install.sh is fetched with curl")]
V0, V1 = __version__, bumped_version()
V2 = f"{V1.rsplit('.', 1)[0]}.{int(V1.rsplit('.', 1)[1]) + 1}"


def _agents(home: Path) -> list[psutil.Process]:
    """The agent processes running from this test's install (by their program's path)."""
    out = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        if cmd and cmd[0].startswith(str(home)) and cmd[1:2] == ["run"]:
            out.append(p)
    return out


AS_USER = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"] if os.geteuid() == 0 else []
"""The user variant runs as an unprivileged user: as root, install.sh would install for the whole system."""


def _home(name: str) -> Path:
    """An empty home directory the unprivileged user owns (outside pytest's root-only temp dir)."""
    home = Path(tempfile.mkdtemp(prefix=f"clawfleet-{name}-"))
    home.chmod(0o755)
    if AS_USER:
        shutil.chown(home, "nobody", "nogroup")
    return home


def _update_state(path: Path) -> str | None:
    """The agent's update state from its update.json; fails the test at once when the update was refused or
    failed (with the agent's reason)."""
    if not path.exists():
        return None
    st = json.loads(path.read_text())
    assert st["state"] not in ("refused", "failed"), st
    return st["state"]


def _watchdogs(home: Path) -> list[psutil.Process]:
    """Update watchdogs started from this test's install."""
    return [p for p in psutil.process_iter(["cmdline"])
            if (cmd := p.info["cmdline"] or []) and cmd[0].startswith(str(home)) and cmd[1:2] == ["update-watchdog"]]


def _install(url: str, home: Path, *args: str, token: str | None = None) -> subprocess.CompletedProcess:
    """``curl -fsSL URL/install.sh | sh -s -- ARGS`` as a user whose home is ``home`` (no desktop, no tty);
    the token, when given, is piped through a file descriptor, never an argument."""
    env = {"HOME": str(home), "PATH": os.environ["PATH"], "LANG": "C.UTF-8"}
    script = subprocess.run(["curl", "-fsSL", f"{url}/install.sh"], capture_output=True, check=True).stdout
    path = home.parent / f"install-{home.name}.sh"
    path.write_bytes(script)
    path.chmod(0o644)
    try:
        if token is None:
            return subprocess.run([*AS_USER, "sh", str(path), *args], env=env, capture_output=True, text=True,
                                  timeout=600, stdin=subprocess.DEVNULL, start_new_session=True)
        return subprocess.run([*AS_USER, "sh", str(path), "--token-file", "-", *args], input=token + "\n",
                              env=env, capture_output=True, text=True, timeout=600, start_new_session=True)
    finally:
        path.unlink()


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[tuple[ServerProcess, str, list[Path]]]:
    """A real server on free ports offering V0, its address, and a list of the test's homes (their agents
    are stopped and the homes removed after the test)."""
    data = tmp_path / "server"
    (data / "agent-packages").mkdir(parents=True)
    shutil.copy(one(built_packages(V0), "*.tar.gz"), data / "agent-packages")
    server = ServerProcess(data, free_port(), free_port(), tmp_path / "server.log", "--no-local-agent").start()
    homes: list[Path] = []
    try:
        yield server, f"http://127.0.0.1:{server.port}", homes
    finally:
        for home in homes:
            for p in _agents(home) + _watchdogs(home):
                p.send_signal(signal.SIGKILL)
            shutil.rmtree(home, ignore_errors=True)
        server.stop()


def _add_device(server: ServerProcess, name: str, gate: PortGate) -> str:
    res = server_cli("device", "add", name, "--data-dir", str(server.data_dir))
    assert res.exit_code == 0, res.output
    assert f"curl -fsSL http://127.0.0.1:{server.port}/install.sh | sudo sh" in res.output  # the one-liner
    enr = decode_token(res.output.split("keep it secret):\n")[1].split()[0])
    assert enr.fleet_url == f"http://127.0.0.1:{server.port}" and enr.update_key
    return encode_token(enr.model_copy(update={"url": f"mqtt://127.0.0.1:{gate.port}"}))  # through the gate


def test_one_line_install_upgrade_and_self_update_with_rollback(fleet: tuple[ServerProcess, str, list[Path]]
                                                                ) -> None:
    server, url, homes = fleet
    gate = PortGate(target=server.mqtt_port, blocked=False)
    try:
        token = _add_device(server, "Shell Box", gate)
        with urllib.request.urlopen(f"{url}/agent/SHA256SUMS") as r:  # noqa: S310 - the test's server
            assert f"clawfleet-agent-{V0}-linux-" in r.read().decode()

        # --dry-run says what it would do and changes nothing
        dry_home = _home("dry")
        homes.append(dry_home)
        res = _install(url, dry_home, "--dry-run")
        assert res.returncode == 0, res.stdout + res.stderr
        assert f"ClawFleet agent {V0} from {url}" in res.stdout and "would run: tar -xzf" in res.stdout
        assert "dry run: nothing was changed" in res.stdout and not list(dry_home.iterdir())

        # a token on the command line is refused before anything happens
        res = _install(url, dry_home, token)
        assert res.returncode == 2 and "never put the token on the command line" in res.stderr

        # install: downloads, checks the SHA-256, enrolls, starts
        home = _home("user")
        homes.append(home)
        res = _install(url, home, token=token)
        assert res.returncode == 0, res.stdout + res.stderr
        assert "SHA-256 ok" in res.stdout and "enrolled as device 'shell-box'" in res.stdout
        assert "logs:" in res.stdout and token not in res.stdout + res.stderr
        tree = home / ".local/share/clawfleet-agent"
        assert os.readlink(tree / "current") == f"versions/{V0}"
        assert (home / ".config/clawfleet/agent.json").stat().st_mode & 0o777 == 0o600
        wait_for(lambda: device_meta(server.data_dir, "shell-box").get("agent_version") == V0, 60,
                 what="the installed agent reporting")

        # running it again upgrades in place, keeping the enrollment
        shutil.copy(one(built_packages(V1), "*.tar.gz"), server.data_dir / "agent-packages")
        first = {p.pid for p in _agents(home)}
        res = _install(url, home)
        assert res.returncode == 0, res.stdout + res.stderr
        assert f"installed: {V0} -> upgrading in place" in res.stdout and "enrollment: kept" in res.stdout
        assert os.readlink(tree / "current") == f"versions/{V1}"
        wait_for(lambda: device_meta(server.data_dir, "shell-box").get("agent_version") == V1, 60,
                 what=f"the agent reporting as {V1}")
        assert not first & {p.pid for p in _agents(home)}, "the old agent process is still running"

        # self-update to V2 whose first start cannot reach the broker: back to V1 after the deadline
        shutil.copy(one(built_packages(V2, "tar.gz"), "*.tar.gz"), server.data_dir / "agent-packages")
        state = home / ".local/share/clawfleet/update.json"
        res = server_cli("device", "update", "shell-box", "--rollback-after", "30", "--data-dir",
                         str(server.data_dir))
        assert res.exit_code == 0 and f"asked shell-box to update to {V2}" in res.output, res.output
        # the package comes over HTTP, the gate cuts only MQTT: block as soon as the agent took the command
        wait_for(lambda: _update_state(state) in ("downloading", "installing", "installed"), 120, interval=0.02,
                 what="the update to start")
        gate.block()
        wait_for(lambda: os.readlink(tree / "current") == f"versions/{V2}", 120, what="the switch to V2")
        wait_for(lambda: json.loads(state.read_text())["state"] == "rolled-back", 90, what="the rollback")
        assert os.readlink(tree / "current") == f"versions/{V1}"
        gate.blocked = False
        wait_for(lambda: (m := device_meta(server.data_dir, "shell-box")).get("update", {}).get("state")
                 == "rolled-back" and m.get("agent_version") == V1, 60, what="the rolled-back agent reporting")
        assert "did not report within 30 s" in device_meta(server.data_dir, "shell-box")["update"]["detail"]

        # the same update with the broker reachable rolls forward and stays
        res = server_cli("device", "update", "shell-box", "--rollback-after", "30", "--data-dir",
                         str(server.data_dir))
        assert res.exit_code == 0, res.output
        wait_for(lambda: (m := device_meta(server.data_dir, "shell-box")).get("agent_version") == V2
                 and m.get("update", {}).get("state") == "confirmed", 90, what=f"{V2} confirmed")
        assert os.readlink(tree / "current") == f"versions/{V2}"
        assert sorted(p.name for p in (tree / "versions").iterdir()) == sorted([V1, V2])  # V0 pruned
        assert len(_agents(home)) == 1
        wait_for(lambda: not _watchdogs(home), 15, what="the watchdog to stand down once the update is confirmed")
    finally:
        gate.close()
