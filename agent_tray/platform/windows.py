"""Windows: the headless agent as a Windows service (``system``: :mod:`.windows_service`, pywin32) or as
a scheduled task at this user's logon, and the tray's autostart as a value under
``HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run``.

The per-user task is defined in Task Scheduler XML so that it is not stopped after Task Scheduler's
default 72 hours (``ExecutionTimeLimit PT0S``), runs on battery, and is restarted after a failure.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from xml.sax.saxutils import escape

from agent_tray.platform import Written

TASK_NAME = "ClawFleet Agent"
RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"
RUN_VALUE = "ClawFleet Agent"


def task_xml(command: list[str]) -> str:
    """Task Scheduler XML (schema 1.2) of the per-user agent task: at logon, no time limit, on battery too,
    restarted every minute after a failure (up to 999 times), one instance."""
    args = subprocess.list2cmdline(command[1:])
    return f"""<?xml version="1.0" encoding="UTF-16"?>
<Task version="1.2" xmlns="http://schemas.microsoft.com/windows/2004/02/mit/task">
  <RegistrationInfo>
    <Description>ClawFleet agent (reports this machine to a fleet server)</Description>
  </RegistrationInfo>
  <Triggers><LogonTrigger><Enabled>true</Enabled></LogonTrigger></Triggers>
  <Principals>
    <Principal id="Author"><LogonType>InteractiveToken</LogonType><RunLevel>LeastPrivilege</RunLevel></Principal>
  </Principals>
  <Settings>
    <MultipleInstancesPolicy>IgnoreNew</MultipleInstancesPolicy>
    <DisallowStartIfOnBatteries>false</DisallowStartIfOnBatteries>
    <StopIfGoingOnBatteries>false</StopIfGoingOnBatteries>
    <ExecutionTimeLimit>PT0S</ExecutionTimeLimit>
    <RestartOnFailure><Interval>PT1M</Interval><Count>999</Count></RestartOnFailure>
    <StartWhenAvailable>true</StartWhenAvailable>
    <Enabled>true</Enabled>
  </Settings>
  <Actions Context="Author">
    <Exec><Command>{escape(command[0])}</Command><Arguments>{escape(args)}</Arguments></Exec>
  </Actions>
</Task>
"""


def schtasks_create_args(xml_path: str) -> list[str]:
    """``schtasks /Create`` arguments that register the task defined in ``xml_path``."""
    return ["schtasks", "/Create", "/F", "/TN", TASK_NAME, "/XML", xml_path]


def service_command(command: list[str]) -> list[str]:
    """The Windows service's command line for ``clawfleet-agent run --headless --config X``:
    ``clawfleet-agent.exe service-run --config X`` (the console build: the SCM needs no window)."""
    exe = command[0].replace("clawfleet-agent-tray.exe", "clawfleet-agent.exe")
    rest = [a for a in command[1:] if a not in ("run", "--headless")]
    return [exe, "service-run", *rest]


def _run(args: list[str]) -> Written:
    res = subprocess.run(args, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise OSError(f"{args[0]} failed: {(res.stderr or res.stdout).strip() or res.returncode}")
    return Written(subprocess.list2cmdline(args), "ran")


def install_service(command: list[str], system: bool = False, user: str | None = None, enable: bool = True,
                    unit_dir: Path | None = None) -> list[Written]:
    """``system``: the Windows service (:mod:`.windows_service`); else the per-user logon task (started now
    with ``enable``)."""
    if system:
        from agent_tray.platform import windows_service

        return windows_service.install(service_command(command), enable=enable)
    fd, xml = tempfile.mkstemp(suffix=".xml")
    os.close(fd)
    try:
        Path(xml).write_text(task_xml(command), encoding="utf-16")
        _run(schtasks_create_args(xml))
    finally:
        os.unlink(xml)
    done = [Written(f"Task Scheduler \\{TASK_NAME}", "scheduled task (at logon, no time limit, on battery too)")]
    if enable:
        done.append(_run(["schtasks", "/Run", "/TN", TASK_NAME]))
    return done


def uninstall_service(system: bool = False, enable: bool = True, unit_dir: Path | None = None) -> list[Written]:
    """Stop and remove the Windows service (``system``) or the scheduled task."""
    if system:
        from agent_tray.platform import windows_service

        return windows_service.uninstall(enable)
    done: list[Written] = []
    if enable:
        try:
            done.append(_run(["schtasks", "/End", "/TN", TASK_NAME]))
        except OSError:
            pass  # not running
    done.append(_run(["schtasks", "/Delete", "/F", "/TN", TASK_NAME]))
    return done


def set_autostart(on: bool, command: list[str]) -> list[Written]:
    """Set (``on``) or delete the Run-key value that starts the tray at logon."""
    if sys.platform != "win32":
        raise OSError("the Windows Run key exists only on Windows")
    import winreg

    where = f"HKCU\\{RUN_KEY}\\{RUN_VALUE}"
    with winreg.OpenKey(winreg.HKEY_CURRENT_USER, RUN_KEY, 0, winreg.KEY_SET_VALUE) as key:
        if on:
            winreg.SetValueEx(key, RUN_VALUE, 0, winreg.REG_SZ, subprocess.list2cmdline(command))
            return [Written(where, "autostart (Run key)")]
        try:
            winreg.DeleteValue(key, RUN_VALUE)
        except FileNotFoundError:
            return []
        return [Written(where, "removed")]


def open_folder(path: Path) -> None:
    """Open ``path`` in Explorer."""
    os.startfile(str(path))  # type: ignore[attr-defined]  # noqa: S606 - a folder the agent owns
