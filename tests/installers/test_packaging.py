"""The agent installs and runs without the server's packages; the wheel builds from the repo."""

from __future__ import annotations

import email
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVER_ONLY = ("nicegui", "peewee", "playhouse", "cryptography", "qrcode", "argon2", "starlette", "fastapi",
               "fleet_server", "broker")
"""Never imported by the agent's commands at start (cryptography only while it checks an update)."""

# Runs in a fresh interpreter: any import of a server package fails, as in an agent-only install.
_BLOCKER = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {SERVER_ONLY!r}:
            raise ModuleNotFoundError(f"server module {{name}} imported by the agent", name=name)
sys.meta_path.insert(0, Block())
import agent_tray.cli, agent_tray.service, agent_tray.tray, agent_tray.enroll, agent_tray.enroll_dialog
import agent_tray.platform.linux, agent_tray.platform.macos, agent_tray.platform.windows, agent_tray.bridge
import shared.enrollment, shared.schemas, shared.topics
sys.argv = ["clawfleet-agent", "--help"]
agent_tray.cli.main()
"""


def test_agent_never_imports_server_packages() -> None:
    res = subprocess.run([sys.executable, "-c", _BLOCKER], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "install-service" in res.stdout


def test_server_entry_point_explains_a_missing_extra() -> None:
    for missing, args in (("argon2", ["--help"]), ("nicegui", ["run"])):
        code = ("import sys, importlib.abc\n"
                "class B(importlib.abc.MetaPathFinder):\n"
                "    def find_spec(self, name, path=None, target=None):\n"
                f"        if name.split('.')[0] == {missing!r}: raise ModuleNotFoundError(name=name)\n"
                "sys.meta_path.insert(0, B())\n"
                "from fleet_server.cli.entry import main; main()")
        res = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True,
                             env={**os.environ, "CLAWFLEET_DATA_DIR": "/nonexistent/clawfleet-test"})
        assert res.returncode == 1, (missing, res.stdout, res.stderr)
        assert f"({missing} is not installed): pip install 'clawfleet[server]'" in res.stderr


@pytest.mark.installers
def test_wheel_builds_with_agent_only_base_requirements(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(ROOT)],
                   check=True, capture_output=True)
    (wheel,) = tmp_path.glob("clawfleet-*-py3-none-any.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        meta = email.message_from_bytes(zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))))
    assert meta["License-Expression"] == "Apache-2.0"
    requires = meta.get_all("Requires-Dist")
    base = [r for r in requires if "extra ==" not in r]
    assert not [r for r in base if r.split(">")[0].split("<")[0].strip().lower() in ("nicegui", "peewee",
                                                                                    "qrcode", "argon2-cffi")]
    assert any(r.startswith("cryptography>=") for r in base)  # the agent checks update signatures with it
    assert any(r.startswith("nicegui>=3.1") and 'extra == "server"' in r for r in requires)
    assert "agent_tray/tray.py" in names and "fleet_server/cli/entry.py" in names
    print(f"wheel {wheel.name}: {wheel.stat().st_size / 1024:.0f} KiB")
