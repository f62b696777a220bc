"""Windows: the headless agent as a scheduled task (at startup as SYSTEM with ``system``, else at
this user's logon), and the tray's autostart as a value under
``HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from agent_tray.platform import Written

TASK_NAME = "ClawFleet Agent"
RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"
RUN_VALUE = "ClawFleet Agent"


def schtasks_create_args(command: list[str], system: bool) -> list[str]:
    """``schtasks /Create`` arguments for the agent task (restart is the agent's own loop)."""
    args = ["schtasks", "/Create", "/F", "/TN", TASK_NAME, "/TR", subprocess.list2cmdline(command)]
    if system:
        args += ["/SC", "ONSTART", "/RU", "SYSTEM", "/RL", "HIGHEST"]
    else:
        args += ["/SC", "ONLOGON", "/RL", "LIMITED"]
    return args


def _run(args: list[str]) -> Written:
    res = subprocess.run(args, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise OSError(f"{args[0]} failed: {(res.stderr or res.stdout).strip() or res.returncode}")
    return Written(subprocess.list2cmdline(args), "ran")


def install_service(command: list[str], system: bool = False, user: str | None = None, enable: bool = True,
                    unit_dir: Path | None = None) -> list[Written]:
    """Create the scheduled task (and start it now with ``enable``)."""
    done = [_run(schtasks_create_args(command, system))]
    done[0] = Written(f"Task Scheduler \\{TASK_NAME}", "scheduled task")
    if enable:
        done.append(_run(["schtasks", "/Run", "/TN", TASK_NAME]))
    return done


def uninstall_service(system: bool = False, enable: bool = True, unit_dir: Path | None = None) -> list[Written]:
    """Stop and delete the scheduled task."""
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
    import os

    os.startfile(str(path))  # type: ignore[attr-defined]  # noqa: S606 - a folder the agent owns
