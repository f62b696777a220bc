"""The agent's .deb: built by installers/linux/build-deb.sh, installed with dpkg, run, removed.

Needs root and dpkg (CI runs as root); it really installs into /opt, /usr/bin and /lib/systemd
and removes everything again. The unit and autostart entry are checked, not enabled."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from shared.enrollment import Enrollment, encode_token
from shared.version import __version__

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.installers,
    pytest.mark.skipif(shutil.which("dpkg-deb") is None or shutil.which("dpkg") is None, reason="needs dpkg"),
    pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="dpkg -i needs root (CI is root)"),
    pytest.mark.timeout(900),
]


def _installed() -> bool:
    res = subprocess.run(["dpkg-query", "-W", "-f=${Status}", "clawfleet-agent"], capture_output=True, text=True)
    return "install ok installed" in res.stdout


def test_deb_builds_installs_runs_and_removes(tmp_path: Path) -> None:
    assert not _installed(), "clawfleet-agent is already installed on this machine; remove it first"
    out = subprocess.run([str(ROOT / "installers/linux/build-deb.sh"), str(tmp_path)], capture_output=True,
                         text=True, check=True).stdout
    (deb,) = tmp_path.glob(f"clawfleet-agent_{__version__}_*.deb")
    print(out.strip().splitlines()[-1])
    contents = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True).stdout
    assert "/opt/clawfleet-agent/lib/nicegui/" not in contents and "/opt/clawfleet-agent/lib/peewee" not in contents
    home = tmp_path / "home"
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
           "XDG_DATA_HOME": str(home / ".local/share"), "XDG_STATE_HOME": str(home / ".local/state")}
    subprocess.run(["dpkg", "-i", str(deb)], check=True, capture_output=True)
    try:
        unit = Path("/lib/systemd/system/clawfleet-agent.service")
        assert "ExecStart=/usr/bin/clawfleet-agent run --headless --config /etc/clawfleet-agent/agent.json" \
            in unit.read_text()
        assert Path("/usr/lib/systemd/user/clawfleet-agent.service").exists()
        assert "Exec=/usr/bin/clawfleet-agent run --autostart" in \
            Path("/etc/xdg/autostart/clawfleet-agent.desktop").read_text()
        assert Path("/usr/share/applications/clawfleet-agent.desktop").exists()
        run = lambda *a, **kw: subprocess.run(["/usr/bin/clawfleet-agent", *a], env=env,  # noqa: E731
                                              capture_output=True, text=True, **kw)
        assert run("--version").stdout.strip() == f"clawfleet-agent {__version__}"
        res = run("status")
        assert res.returncode == 2 and "clawfleet-agent enroll" in res.stderr
        token = encode_token(Enrollment(url="mqtt://127.0.0.1:1", device_id="deb-box", api_key="k" * 32))
        res = run("enroll", "--offline", "-", input=token)
        assert res.returncode == 0, res.stderr
        res = run("status")
        assert res.returncode == 3 and "not running" in res.stdout and "deb-box" in res.stdout
    finally:
        subprocess.run(["dpkg", "-r", "clawfleet-agent"], check=True, capture_output=True)
    assert not _installed()
    for path in ("/usr/bin/clawfleet-agent", "/opt/clawfleet-agent", "/lib/systemd/system/clawfleet-agent.service",
                 "/etc/xdg/autostart/clawfleet-agent.desktop"):
        assert not Path(path).exists(), path
    subprocess.run(["dpkg", "--purge", "clawfleet-agent"], check=True, capture_output=True)  # leave no 'rc' state
