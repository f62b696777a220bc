"""``install-service`` / ``uninstall-service`` / ``autostart`` on Linux, for real: files written into a
temporary $HOME / $XDG_CONFIG_HOME (``--no-enable``: nothing is started), checked with
``systemd-analyze verify`` when it is installed. macOS plists and Windows task arguments are
generated and parsed here; loading them needs those OSes."""

from __future__ import annotations

import configparser
import plistlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent_tray.commands import app
from agent_tray.platform import agent_command, linux, macos, windows

runner = CliRunner()
pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="Linux unit and autostart files")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / ".config"))
    return tmp_path


def _config(home: Path) -> Path:
    cfg = home / "agent.json"
    cfg.write_text("{}")
    return cfg


def test_user_unit_written_where_systemd_looks_and_removed(home: Path) -> None:
    cfg = _config(home)
    res = runner.invoke(app, ["install-service", "--config", str(cfg), "--no-enable"])
    assert res.exit_code == 0, res.output
    unit = home / ".config" / "systemd" / "user" / "clawfleet-agent.service"
    assert f"systemd user unit: {unit}" in res.output and "not started (--no-enable)" in res.output
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(unit.read_text())
    exec_start = parser["Service"]["ExecStart"]
    assert exec_start.endswith(f"run --headless --config {cfg}")
    assert Path(exec_start.split()[0]).exists()  # this installation's clawfleet-agent (or python)
    assert parser["Install"]["WantedBy"] == "default.target" and "User" not in parser["Service"]
    if shutil.which("systemd-analyze"):
        # system-mode verify works without a user manager; it names the file on every complaint (unknown key, ...)
        out = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
        assert f"{unit}:" not in out.stderr, out.stderr
    res = runner.invoke(app, ["uninstall-service", "--no-enable"])
    assert res.exit_code == 0 and f"removed: {unit}" in res.output and not unit.exists()
    assert "nothing to remove" in runner.invoke(app, ["uninstall-service", "--no-enable"]).output


def test_install_service_needs_a_config(home: Path) -> None:
    res = runner.invoke(app, ["install-service", "--config", str(home / "missing.json"), "--no-enable"])
    assert res.exit_code == 2 and "enroll" in res.output


def test_system_unit_runs_as_the_named_user(tmp_path: Path) -> None:
    text = linux.service_unit(["/opt/clawfleet-agent/bin/clawfleet-agent", "run", "--headless"], system=True,
                              user="alice")
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(text)
    assert parser["Service"]["User"] == "alice" and parser["Install"]["WantedBy"] == "multi-user.target"
    assert "PrivateTmp" not in parser["Service"]  # the agent reads OpenClaw's default log dir, /tmp/openclaw
    written = linux.install_service(["/bin/true"], system=True, user="alice", enable=False, unit_dir=tmp_path)
    assert [w.where for w in written] == [str(tmp_path / "clawfleet-agent.service")]


def test_autostart_entry_on_and_off(home: Path) -> None:
    res = runner.invoke(app, ["autostart", "on"])
    assert res.exit_code == 0, res.output
    entry = home / ".config" / "autostart" / "clawfleet-agent.desktop"
    assert f"autostart entry: {entry}" in res.output
    desktop = configparser.ConfigParser(interpolation=None)
    desktop.optionxform = str  # keys are case-sensitive
    desktop.read_string(entry.read_text())
    d = desktop["Desktop Entry"]
    assert d["Type"] == "Application" and d["Exec"].endswith("run --autostart") and d["Terminal"] == "false"
    if shutil.which("desktop-file-validate"):
        assert subprocess.run(["desktop-file-validate", str(entry)]).returncode == 0
    res = runner.invoke(app, ["autostart", "off"])
    assert res.exit_code == 0 and f"removed: {entry}" in res.output and not entry.exists()
    assert runner.invoke(app, ["autostart", "maybe"]).exit_code == 2


def test_autostart_at_login_without_config_exits_quietly(home: Path) -> None:
    res = runner.invoke(app, ["run", "--autostart", "--config", str(home / "none.json"), "--no-log-file"])
    assert res.exit_code == 0


def test_macos_plists_and_windows_task_arguments(tmp_path: Path) -> None:
    cmd = agent_command("run", "--headless")
    written = macos.install_service(cmd, enable=False, unit_dir=tmp_path)
    job = plistlib.loads(Path(written[0].where).read_bytes())
    assert job["Label"] == "ai.clawfleet.agent" and job["ProgramArguments"] == cmd and job["RunAtLoad"]
    assert job["KeepAlive"] == {"SuccessfulExit": False}
    tray = plistlib.loads(macos.job_plist(macos.TRAY_LABEL, cmd, keep_alive=False))
    assert "KeepAlive" not in tray and tray["ProcessType"] == "Interactive"
    exe = r"C:\Program Files\ClawFleet Agent\clawfleet-agent.exe"
    assert windows.schtasks_create_args("t.xml") == ["schtasks", "/Create", "/F", "/TN", "ClawFleet Agent", "/XML",
                                                     "t.xml"]
    import xml.etree.ElementTree as ET

    ns = {"t": "http://schemas.microsoft.com/windows/2004/02/mit/task"}
    task = ET.fromstring(windows.task_xml([exe, "run", "--headless", "--config", r"C:\a b\agent.json"]).encode(  # noqa: S314
        "utf-16"))
    settings = task.find("t:Settings", ns)
    assert settings.find("t:ExecutionTimeLimit", ns).text == "PT0S"  # not stopped after 72 hours
    assert settings.find("t:DisallowStartIfOnBatteries", ns).text == "false"
    assert settings.find("t:StopIfGoingOnBatteries", ns).text == "false"
    assert task.find("t:Triggers/t:LogonTrigger", ns) is not None
    assert task.find("t:Actions/t:Exec/t:Command", ns).text == exe
    assert task.find("t:Actions/t:Exec/t:Arguments", ns).text == 'run --headless --config "C:\\a b\\agent.json"'
    assert windows.service_command([exe.replace("agent.exe", "agent-tray.exe"), "run", "--headless", "--config",
                                    "c.json"]) == [exe, "service-run", "--config", "c.json"]
    with pytest.raises(OSError, match="only on Windows"):
        windows.set_autostart(True, cmd)
