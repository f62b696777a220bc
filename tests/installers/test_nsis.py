"""makensis compiles the Windows installer script (Debian's nsis). The payload here is a stand-in file:
the real clawfleet-agent.exe is built by PyInstaller on a Windows runner (.github/workflows/agent-windows.yml)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.installers,
              pytest.mark.skipif(shutil.which("makensis") is None, reason="makensis not installed (apt install nsis)")]


def test_windows_installer_script_compiles(tmp_path: Path) -> None:
    payload = tmp_path / "payload"
    payload.mkdir()
    (payload / "clawfleet-agent.exe").write_bytes(b"stand-in for the PyInstaller build")
    out = tmp_path / "clawfleet-agent-installer.exe"
    res = subprocess.run([str(ROOT / "installers/windows/build-installer.sh"), str(payload), str(out)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "warning" not in res.stdout.lower(), res.stdout
    assert out.read_bytes()[:2] == b"MZ"  # a Windows executable
    print(res.stdout.strip().splitlines()[-1])


def test_installer_needs_the_payload(tmp_path: Path) -> None:
    res = subprocess.run([str(ROOT / "installers/windows/build-installer.sh"), str(tmp_path)], capture_output=True,
                         text=True)
    assert res.returncode == 1 and "PyInstaller" in res.stderr


def test_a_relative_output_path_works_and_no_python3_is_needed(tmp_path: Path) -> None:
    """The Windows workflow passes dist/…: makensis changes into the script's folder before it writes, so the
    script must hand it an absolute path; and Windows runners have no 'python3' on PATH."""
    payload = tmp_path / "payload"
    payload.mkdir()
    (payload / "clawfleet-agent.exe").write_bytes(b"stand-in")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("makensis", "sed", "dirname", "basename", "mkdir", "du", "cut", "bash"):
        (bin_dir / tool).symlink_to(shutil.which(tool))  # a PATH without python3
    res = subprocess.run(["bash", str(ROOT / "installers/windows/build-installer.sh"), "payload", "dist/setup.exe"],
                         cwd=tmp_path, capture_output=True, text=True, env={"PATH": str(bin_dir)})
    assert res.returncode == 0, res.stdout + res.stderr
    assert (tmp_path / "dist" / "setup.exe").read_bytes()[:2] == b"MZ"
