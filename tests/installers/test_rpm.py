"""The agent's .rpm, made by installers/linux/build-packages.sh from the same payload as the .deb, with Debian's
``rpm``/``rpmbuild``. This machine has no RPM-based system to install it into, so it is unpacked into a private
root (``rpm --root``, scripts off: they run as root on Fedora/RHEL/SUSE) and its program run from there; the
metadata and scriptlets are read back with ``rpm -qp``."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from package_helpers import built_packages, bumped_version, one

from shared.version import __version__

pytestmark = [pytest.mark.installers, pytest.mark.timeout(1500),
              pytest.mark.skipif(shutil.which("rpmbuild") is None, reason="rpmbuild not installed (apt install rpm)")]


def _q(rpm: Path, *args: str) -> str:
    return subprocess.run(["rpm", "-qp", *args, str(rpm)], capture_output=True, text=True, check=True).stdout


def test_rpm_carries_the_payload_and_upgrades_in_a_private_root(tmp_path: Path) -> None:
    old, new = one(built_packages(__version__), "*.rpm"), one(built_packages(bumped_version()), "*.rpm")
    files = _q(old, "-l").split()
    assert {"/opt/clawfleet-agent/clawfleet-agent", "/usr/bin/clawfleet-agent",
            "/usr/lib/systemd/system/clawfleet-agent.service", "/usr/lib/systemd/system/clawfleet-agent-update.path",
            "/usr/share/man/man1/clawfleet-agent.1.gz"} <= set(files)
    requires = _q(old, "--requires")
    assert "glibc >= 2." in requires and "python" not in requires  # its own Python inside
    scripts = _q(old, "--scripts")
    assert "useradd --system" in scripts and "try-restart clawfleet-agent.service" in scripts
    assert "if [ $1 -eq 0 ]" in scripts and "userdel clawfleet-agent" in scripts  # purge only on removal
    root = tmp_path / "root"
    rpm = ["rpm", "--root", str(root), "--dbpath", "/var/lib/rpm", "--nodeps", "--noscripts"]
    subprocess.run(["rpm", "--root", str(root), "--dbpath", "/var/lib/rpm", "--initdb"], check=True)
    for pkg, version in ((old, __version__), (new, bumped_version())):
        res = subprocess.run([*rpm, "-U", str(pkg)], capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
        out = subprocess.run([str(root / "opt/clawfleet-agent/clawfleet-agent"), "--version"], capture_output=True,
                             text=True)
        assert out.stdout.strip() == f"clawfleet-agent {version}", out.stderr
    print(f"{old.name}: {old.stat().st_size / 2**20:.1f} MiB")
