"""macOS: launchd jobs. The headless agent is a LaunchAgent (per user, ``~/Library/LaunchAgents``)
or, with ``system``, a LaunchDaemon (``/Library/LaunchDaemons``, needs root); the tray's autostart
entry is a LaunchAgent that starts ``clawfleet-agent run`` at login.
"""

from __future__ import annotations

import os
import plistlib
import shutil
import subprocess
from pathlib import Path

from agent_tray.platform import LAUNCHD_LABEL, Written, stop_and_remove

TRAY_LABEL = LAUNCHD_LABEL + ".tray"


def plist_path(label: str, system: bool = False, plist_dir: Path | None = None) -> Path:
    """Where the job's plist goes."""
    if plist_dir is None:
        plist_dir = Path("/Library/LaunchDaemons") if system else Path.home() / "Library" / "LaunchAgents"
    return plist_dir / f"{label}.plist"


def job_plist(label: str, command: list[str], keep_alive: bool, user: str | None = None) -> bytes:
    """The launchd job (XML plist): runs ``command`` at load, restarted on crash when ``keep_alive``."""
    job: dict = {"Label": label, "ProgramArguments": command, "RunAtLoad": True, "ProcessType": "Background"}
    if keep_alive:
        job["KeepAlive"] = {"SuccessfulExit": False}
        job["ThrottleInterval"] = 5
    else:
        job["ProcessType"] = "Interactive"
    if user:
        job["UserName"] = user
    return plistlib.dumps(job)


def _launchctl(*args: str) -> Written | None:
    if shutil.which("launchctl") is None:
        return None
    res = subprocess.run(["launchctl", *args], capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise OSError(f"launchctl {' '.join(args)} failed: {res.stderr.strip() or res.returncode}")
    return Written("launchctl " + " ".join(args), "ran")


def _domain(system: bool) -> str:
    return "system" if system else f"gui/{os.getuid()}"


def install_service(command: list[str], system: bool = False, user: str | None = None, enable: bool = True,
                    unit_dir: Path | None = None) -> list[Written]:
    """Write the agent's plist; with ``enable``, load it (``launchctl bootstrap``)."""
    path = plist_path(LAUNCHD_LABEL, system, unit_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(job_plist(LAUNCHD_LABEL, command, keep_alive=True, user=user if system else None))
    done = [Written(str(path), "launchd " + ("daemon" if system else "agent"))]
    if enable:
        ran = _launchctl("bootstrap", _domain(system), str(path))
        if ran:
            done.append(ran)
    return done


def uninstall_service(system: bool = False, enable: bool = True, unit_dir: Path | None = None) -> list[Written]:
    """Unload (with ``enable``) and remove the agent's plist."""
    stop = (lambda: _launchctl("bootout", f"{_domain(system)}/{LAUNCHD_LABEL}")) if enable else None
    return stop_and_remove(plist_path(LAUNCHD_LABEL, system, unit_dir), stop)


def set_autostart(on: bool, command: list[str]) -> list[Written]:
    """Write (``on``) or remove the LaunchAgent that starts the tray at login."""
    path = plist_path(TRAY_LABEL)
    if on:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(job_plist(TRAY_LABEL, command, keep_alive=False))
        return [Written(str(path), "login item (LaunchAgent)")]
    if path.exists():
        path.unlink()
        return [Written(str(path), "removed")]
    return []


def open_folder(path: Path) -> None:
    """Open ``path`` in the Finder."""
    subprocess.Popen(["open", str(path)])
