"""Linux: a systemd unit for the headless agent (user or system) and an XDG autostart entry for the tray.

Paths: user unit ``$XDG_CONFIG_HOME/systemd/user/clawfleet-agent.service`` (default
``~/.config``), system unit ``/etc/systemd/system/clawfleet-agent.service`` (or ``unit_dir``),
autostart ``$XDG_CONFIG_HOME/autostart/clawfleet-agent.desktop`` (XDG Autostart spec).

The .deb/.rpm ship their own system unit (:func:`packaged_service_unit`, in ``/lib/systemd/system``
or ``/usr/lib/systemd/system``): the dedicated user ``clawfleet-agent``, config
``/etc/clawfleet-agent/agent.json``, data in ``/var/lib/clawfleet-agent``, logs in
``/var/log/clawfleet-agent``. ``install-service --system`` then only writes a drop-in
(``/etc/systemd/system/clawfleet-agent.service.d/10-run-as.conf``) when the agent is to run as the
user whose OpenClaw it watches, and enables the packaged unit.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

from agent_tray.platform import SERVICE_NAME, Written, stop_and_remove

SYSTEM_UNIT_DIR = Path("/etc/systemd/system")
PACKAGED_UNIT_DIRS = (Path("/lib/systemd/system"), Path("/usr/lib/systemd/system"))
"""Where the .deb (Debian's path) and the .rpm put the packaged unit."""
SERVICE_USER = "clawfleet-agent"
"""The packages' dedicated system user and group; the group may read the system config."""
SYSTEM_CONFIG = Path("/etc/clawfleet-agent/agent.json")
SYSTEM_DATA_DIR = Path("/var/lib/clawfleet-agent")
SYSTEM_LOG_DIR = Path("/var/log/clawfleet-agent")
UPDATE_REQUEST = SYSTEM_DATA_DIR / "update" / "request.json"
"""The packaged agent (not root) leaves a verified update here; ``clawfleet-agent-update.path`` then
runs ``clawfleet-agent apply-update --system`` as root."""


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
                 extra: tuple[str, ...] = (), restart: str = "always", unit_extra: tuple[str, ...] = ()) -> str:
    """Text of the systemd unit that runs ``command`` (``clawfleet-agent run --headless …``).

    A system unit runs as ``user`` (the machine's OpenClaw user, whose ``~/.openclaw`` the agent
    reads) when given; a user unit runs in that user's session manager. Restarted 5 s after it
    ends (``restart``: systemd's ``Restart=``; ``always`` also covers an agent a self-update
    rollback stopped), stops with SIGTERM (the agent publishes a retained ``shutdown`` status).
    ``extra``: more ``[Service]`` lines (the fleet server's state directory and hardening);
    ``unit_extra``: more ``[Unit]`` lines.
    """
    lines = [
        "[Unit]",
        f"Description={description}",
        "Wants=network-online.target",
        "After=network-online.target",
        *unit_extra,
        "",
        "[Service]",
        "Type=simple",
        f"ExecStart={shlex.join(command)}",
        f"Restart={restart}",
        "RestartSec=5",
        "KillSignal=SIGTERM",
        "TimeoutStopSec=15",
    ]
    if system and user:
        lines.append(f"User={user}")
    if system:
        overridden = {e.split("=", 1)[0] for e in extra}
        # no PrivateTmp: OpenClaw's default log dir is /tmp/openclaw, which the agent must read
        lines += [d for d in ("NoNewPrivileges=yes", "ProtectSystem=full") if d.split("=", 1)[0] not in overridden]
    lines += list(extra)
    lines += ["", "[Install]", f"WantedBy={'multi-user.target' if system else 'default.target'}", ""]
    return "\n".join(lines)


def packaged_service_unit(exe: str = "/usr/bin/clawfleet-agent") -> str:
    """The system unit the .deb and .rpm ship: the dedicated user and group, systemd-made data and log
    dirs (removed by a purge), and nothing happens until ``/etc/clawfleet-agent/agent.json`` exists
    (so the package may enable it at install, before enrollment)."""
    command = [exe, "run", "--headless", "--config", str(SYSTEM_CONFIG), "--log-dir", str(SYSTEM_LOG_DIR)]
    return service_unit(command, system=True, user=SERVICE_USER, extra=(
        f"Group={SERVICE_USER}", f"StateDirectory={SYSTEM_DATA_DIR.name}", "StateDirectoryMode=0750",
        f"LogsDirectory={SYSTEM_LOG_DIR.name}", "LogsDirectoryMode=0750",
        f"Environment=CLAWFLEET_AGENT_DATA_DIR={SYSTEM_DATA_DIR}"),
        unit_extra=(f"ConditionPathExists={SYSTEM_CONFIG}",))


def update_units(exe: str = "/usr/bin/clawfleet-agent") -> dict[str, str]:
    """``{file name: text}`` of the root-side self-update units the packages ship: a path unit that
    watches :data:`UPDATE_REQUEST` and the oneshot service it starts (``apply-update --system``)."""
    path_unit = "\n".join([
        "[Unit]", "Description=ClawFleet agent: watch for an update the agent downloaded and verified", "",
        "[Path]", f"PathExists={UPDATE_REQUEST}", "", "[Install]", "WantedBy=multi-user.target", ""])
    service = "\n".join([
        "[Unit]", "Description=ClawFleet agent updater (checks the signature again, installs, rolls back if the "
        "new version does not report)", "",
        "[Service]", "Type=oneshot", f"ExecStart={exe} apply-update --system", "TimeoutStartSec=2h", ""])
    return {f"{SERVICE_NAME}-update.path": path_unit, f"{SERVICE_NAME}-update.service": service}


def packaged_unit() -> Path | None:
    """The unit a .deb/.rpm installed, None when the agent was not installed from a package."""
    for d in PACKAGED_UNIT_DIRS:
        if (d / f"{SERVICE_NAME}.service").exists():
            return d / f"{SERVICE_NAME}.service"
    return None


def run_as_dropin_path() -> Path:
    """The drop-in that makes the packaged unit run as another user."""
    return SYSTEM_UNIT_DIR / f"{SERVICE_NAME}.service.d" / "10-run-as.conf"


def run_as_dropin(user: str) -> str:
    """Drop-in text: run as ``user`` (its home, hence its ``~/.openclaw``), with the group that may
    read the system config."""
    return f"[Service]\nUser={user}\nGroup={SERVICE_USER}\n"


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

    With the packaged unit present (``system``, no ``unit_dir``), ``command`` is not written anywhere:
    the packaged unit is enabled, run as ``user`` through a drop-in when given (else as
    ``clawfleet-agent``).

    Raises:
        OSError: the file cannot be written (a system unit needs root) or systemctl failed.
    """
    if system and unit_dir is None and packaged_unit() is not None:
        return _use_packaged_unit(user, enable)
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


def _use_packaged_unit(user: str | None, enable: bool) -> list[Written]:
    dropin = run_as_dropin_path()
    done: list[Written] = []
    if user and user != SERVICE_USER:
        dropin.parent.mkdir(parents=True, exist_ok=True)
        dropin.write_text(run_as_dropin(user), encoding="utf-8")
        done.append(Written(str(dropin), f"runs as {user}"))
    elif dropin.exists():
        dropin.unlink()
        done.append(Written(str(dropin), "removed (runs as clawfleet-agent)"))
    done.append(Written(str(packaged_unit()), "packaged systemd unit"))
    if enable:
        for args in (("daemon-reload",), ("enable", "--now", f"{SERVICE_NAME}.service")):
            ran = _systemctl(True, *args)
            if ran:
                done.append(ran)
    return done


def uninstall_service(system: bool = False, enable: bool = True, unit_dir: Path | None = None) -> list[Written]:
    """Stop and disable the unit (with ``enable``), then remove its file (the packaged unit stays: it is
    the package's; only the run-as drop-in goes)."""
    stop = (lambda: _systemctl(system, "disable", "--now", f"{SERVICE_NAME}.service")) if enable else None
    if system and unit_dir is None and packaged_unit() is not None:
        done = stop_and_remove(run_as_dropin_path(), None)
        if stop is not None:
            try:
                ran = stop()
                done += [ran] if ran else []
            except OSError as exc:
                done.append(Written(str(exc), "warning"))
        return done
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


def session_bus_available(env: dict[str, str] | None = None) -> bool:
    """True when a D-Bus session bus can be reached the way GLib looks for one: ``$DBUS_SESSION_BUS_ADDRESS``
    or the ``$XDG_RUNTIME_DIR/bus`` socket of a systemd user session (GLib's last resort, ``dbus-launch``,
    is usually not installed, and its failure is what left the GTK tray hanging)."""
    env = os.environ if env is None else env
    if env.get("DBUS_SESSION_BUS_ADDRESS"):
        return True
    runtime = env.get("XDG_RUNTIME_DIR")
    return bool(runtime) and Path(runtime, "bus").is_socket()


def tray_backend() -> str:
    """The pystray backend to use: ``appindicator`` when GTK 3 and an AppIndicator typelib (Ayatana or
    the original) load, ``gtk`` with GTK 3 alone, else ``xorg`` (plain X11, no menu). Both GTK backends
    need a D-Bus session bus (pystray's GTK code connects to it for notifications): without one, ``xorg``,
    said once in the log.

    pystray's own choice falls back only on ImportError, and crashes with ValueError when
    ``python3-gi`` is installed without the GTK typelib; this probe never raises.
    """
    if not session_bus_available():
        import logging

        logging.getLogger("clawfleet.agent.tray").warning(
            "no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is not set): showing the plain X11 tray icon, which has "
            "no menu; log in to a desktop session for the full menu")
        return "xorg"
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
