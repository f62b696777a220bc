"""Per-OS integration: the headless service (``install-service``) and the tray's autostart entry.

Each OS has its own module with the same three functions, ``install_service``,
``uninstall_service`` and ``set_autostart``; :func:`current` picks the one for this machine.
They return :class:`Written` lines so the CLI can say what it wrote where.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

SERVICE_NAME = "clawfleet-agent"
"""systemd unit / Windows task name."""
LAUNCHD_LABEL = "ai.clawfleet.agent"
"""launchd label of the headless agent (the tray's autostart entry adds ``.tray``)."""


@dataclass(frozen=True)
class Written:
    """One thing changed on this machine: ``where`` (a path, registry value or task name) and ``what``."""

    where: str
    what: str

    def __str__(self) -> str:
        return f"{self.what}: {self.where}"


def stop_and_remove(path: Path, stop: Callable[[], Written | None] | None) -> list[Written]:
    """Uninstall step every OS shares: when ``path`` exists, run ``stop`` (e.g. ``systemctl disable
    --now``; an OSError becomes a ``warning`` line), then delete ``path``. Returns what was done."""
    done: list[Written] = []
    if stop is not None and path.exists():
        try:
            ran = stop()
            if ran:
                done.append(ran)
        except OSError as exc:
            done.append(Written(str(exc), "warning"))
    if path.exists():
        path.unlink()
        done.append(Written(str(path), "removed"))
    return done


def agent_command(*args: str, gui: bool = False) -> list[str]:
    """Command line that starts ``clawfleet-agent ARGS`` from this installation.

    Prefers the ``clawfleet-agent`` script next to this interpreter (a venv, /opt/clawfleet-agent,
    a PyInstaller bundle; in install.sh's ``versions/<v>`` tree the ``current/`` path, which self-updates
    keep pointing at the running version), else ``python -m agent_tray.cli``. ``gui``: on Windows use
    ``pythonw.exe`` so no console window opens.
    """
    exe = Path(sys.executable)
    if getattr(sys, "frozen", False) and exe.parent.parent.name == "versions":
        current = exe.parent.parent.parent / "current" / exe.name  # install.sh's tree: the path updates keep
        if current.exists():
            exe = current
    if getattr(sys, "frozen", False):  # PyInstaller: the executable is the agent itself
        windowed = exe.with_name("clawfleet-agent-tray.exe")  # the same program without a console window
        return [str(windowed if gui and windowed.exists() else exe), *args]
    name = "clawfleet-agent.exe" if sys.platform == "win32" else "clawfleet-agent"
    script = exe.parent / name
    if not script.exists():
        found = shutil.which(name)
        script = Path(found) if found else script
    if script.exists():
        return [str(script), *args]
    if gui and sys.platform == "win32" and (exe.parent / "pythonw.exe").exists():
        exe = exe.parent / "pythonw.exe"
    return [str(exe), "-m", "agent_tray.cli", *args]


def system_config_path() -> Path:
    """The config of the machine-wide service (``enroll --system``): ``/etc/clawfleet-agent/agent.json``
    (Linux), ``/Library/Application Support/ClawFleet/agent.json`` (macOS),
    ``%ProgramData%\\ClawFleet\\agent.json`` (Windows)."""
    if sys.platform == "win32":
        from agent_tray.platform.windows_service import service_config_path

        return service_config_path()
    if sys.platform == "darwin":
        return Path("/Library/Application Support/ClawFleet/agent.json")
    return Path("/etc/clawfleet-agent/agent.json")


def current() -> ModuleType:
    """The module for this OS (``linux`` also serves the BSDs: systemd/XDG where present)."""
    if sys.platform == "win32":
        from agent_tray.platform import windows as mod
    elif sys.platform == "darwin":
        from agent_tray.platform import macos as mod
    else:
        from agent_tray.platform import linux as mod
    return mod
