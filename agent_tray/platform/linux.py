"""Linux: a systemd unit for the headless agent (user or system) and an XDG autostart entry for the tray.

Paths: user unit ``$XDG_CONFIG_HOME/systemd/user/clawfleet-agent.service`` (default
``~/.config``), system unit ``/etc/systemd/system/clawfleet-agent.service`` (or ``unit_dir``),
autostart ``$XDG_CONFIG_HOME/autostart/clawfleet-agent.desktop`` (XDG Autostart spec).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

from agent_tray.platform import SERVICE_NAME, Written, stop_and_remove

SYSTEM_UNIT_DIR = Path("/etc/systemd/system")


def _config_home() -> Path:
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")


def unit_path(system: bool, unit_dir: Path | None = None) -> Path:
    """Where the unit file goes."""
    if unit_dir is not None:
        return unit_dir / f"{SERVICE_NAME}.service"
    return (SYSTEM_UNIT_DIR if system else _config_home() / "systemd" / "user") / f"{SERVICE_NAME}.service"


def autostart_path() -> Path:
    """Where the tray's autostart entry goes."""
    return _config_home() / "autostart" / f"{SERVICE_NAME}.desktop"


def service_unit(command: list[str], system: bool, user: str | None = None,
                 description: str = "ClawFleet agent (reports this machine to a fleet server)",
                 extra: tuple[str, ...] = ()) -> str:
    """Text of the systemd unit that runs ``command`` (``clawfleet-agent run --headless …``).

    A system unit runs as ``user`` (the machine's OpenClaw user, whose ``~/.openclaw`` the agent
    reads) when given; a user unit runs in that user's session manager. Restarts after a crash
    (5 s), stops with SIGTERM (the agent publishes a retained ``shutdown`` status). ``extra``:
    more ``[Service]`` lines (the fleet server's state directory and hardening).
    """
    lines = [
        "[Unit]",
        f"Description={description}",
        "Wants=network-online.target",
        "After=network-online.target",
        "",
        "[Service]",
        "Type=simple",
        f"ExecStart={shlex.join(command)}",
        "Restart=on-failure",
        "RestartSec=5",
        "KillSignal=SIGTERM",
        "TimeoutStopSec=15",
    ]
    if system and user:
        lines.append(f"User={user}")
    if system:
        overridden = {e.split("=", 1)[0] for e in extra}
        lines += [d for d in ("NoNewPrivileges=yes", "ProtectSystem=full", "PrivateTmp=yes")
                  if d.split("=", 1)[0] not in overridden]
    lines += list(extra)
    lines += ["", "[Install]", f"WantedBy={'multi-user.target' if system else 'default.target'}", ""]
    return "\n".join(lines)


def autostart_entry(command: list[str]) -> str:
    """Text of the XDG autostart ``.desktop`` entry that starts the tray at login."""
    return "\n".join([
        "[Desktop Entry]",
        "Type=Application",
        "Name=ClawFleet Agent",
        "Comment=Tray icon: this machine's state in the ClawFleet fleet",
        f"Exec={shlex.join(command)}",
        "Icon=network-transmit-receive",
        "Terminal=false",
        "Categories=System;Monitor;",
        "X-GNOME-Autostart-enabled=true",
        "",
    ])


def _systemctl(system: bool, *args: str) -> Written | None:
    if shutil.which("systemctl") is None:
        return None
    cmd = ["systemctl", *([] if system else ["--user"]), *args]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise OSError(f"{shlex.join(cmd)} failed: {res.stderr.strip() or res.returncode}")
    return Written(shlex.join(cmd), "ran")


def install_service(command: list[str], system: bool = False, user: str | None = None, enable: bool = True,
                    unit_dir: Path | None = None) -> list[Written]:
    """Write the unit; with ``enable``, ``systemctl daemon-reload`` and ``enable --now`` it.

    Raises:
        OSError: the file cannot be written (a system unit needs root) or systemctl failed.
    """
    path = unit_path(system, unit_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(service_unit(command, system, user), encoding="utf-8")
    done = [Written(str(path), f"systemd {'system' if system else 'user'} unit")]
    if enable:
        for args in (("daemon-reload",), ("enable", "--now", f"{SERVICE_NAME}.service")):
            ran = _systemctl(system, *args)
            if ran:
                done.append(ran)
    return done


def uninstall_service(system: bool = False, enable: bool = True, unit_dir: Path | None = None) -> list[Written]:
    """Stop and disable the unit (with ``enable``), then remove its file."""
    stop = (lambda: _systemctl(system, "disable", "--now", f"{SERVICE_NAME}.service")) if enable else None
    return stop_and_remove(unit_path(system, unit_dir), stop)


def set_autostart(on: bool, command: list[str]) -> list[Written]:
    """Write (``on``) or remove the XDG autostart entry for the tray."""
    path = autostart_path()
    if on:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(autostart_entry(command), encoding="utf-8")
        return [Written(str(path), "autostart entry")]
    if path.exists():
        path.unlink()
        return [Written(str(path), "removed")]
    return []


def open_folder(path: Path) -> None:
    """Open ``path`` in the desktop's file manager (``xdg-open``)."""
    subprocess.Popen(["xdg-open", str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def tray_backend() -> str:
    """The pystray backend to use: ``appindicator`` when GTK 3 and an AppIndicator typelib (Ayatana or
    the original) load, ``gtk`` with GTK 3 alone, else ``xorg`` (plain X11, no menu).

    pystray's own choice falls back only on ImportError, and crashes with ValueError when
    ``python3-gi`` is installed without the GTK typelib; this probe never raises.
    """
    try:
        import gi

        gi.require_version("Gtk", "3.0")
        from gi.repository import Gtk  # noqa: F401
    except (ImportError, ValueError):
        return "xorg"
    for name in ("AyatanaAppIndicator3", "AppIndicator3"):
        try:
            gi.require_version(name, "0.1")
            return "appindicator"
        except ValueError:
            continue
    return "gtk"
