"""``clawfleet-server install-service`` / ``uninstall-service``: the fleet server as a systemd service.

The unit runs ``clawfleet-server run`` as its own system account (``clawfleet`` by default) with its
data in ``/var/lib/clawfleet`` (systemd ``StateDirectory``), restarts it after a crash, and stops it
with SIGTERM (the server stops ingest, its local agent and the managed Mosquitto in order). Its
open-file limit is ``LimitNOFILE=65536``: the managed Mosquitto needs one descriptor per device.
"""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from broker.fdlimit import RECOMMENDED_NOFILE
from fleet_server.cli.options import fail

UNIT_NAME = "clawfleet-server.service"
DATA_DIR = Path("/var/lib/clawfleet")
SYSTEM_UNIT_DIR = Path("/etc/systemd/system")


def server_command(extra_args: list[str]) -> list[str]:
    """``clawfleet-server run --data-dir /var/lib/clawfleet …`` from this installation."""
    script = Path(sys.executable).parent / "clawfleet-server"
    base = [str(script)] if script.exists() else [sys.executable, "-m", "fleet_server.cli"]
    return [*base, "run", "--data-dir", str(DATA_DIR), *extra_args]


def server_unit(command: list[str], user: str) -> str:
    """The unit text: ``user`` owns ``/var/lib/clawfleet`` (mode 0700); the rest of the system is read-only."""
    from agent_tray.platform.linux import service_unit

    return service_unit(command, system=True, user=user,
                        description="ClawFleet fleet server (dashboard, ingest, managed Mosquitto)",
                        extra=("Group=" + user, f"StateDirectory={DATA_DIR.name}", "StateDirectoryMode=0700",
                               f"Environment=CLAWFLEET_DATA_DIR={DATA_DIR}", "ProtectHome=read-only",
                               "ProtectSystem=strict",
                               # one descriptor per device connection in the managed Mosquitto, which
                               # inherits the server's limit ('run' raises its soft limit to this)
                               f"LimitNOFILE={RECOMMENDED_NOFILE}"))


def _run(cmd: list[str]) -> None:
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        fail(f"{shlex.join(cmd)} failed: {res.stderr.strip() or res.returncode}")
    typer.echo(f"ran: {shlex.join(cmd)}")


def install_service(
    user: Annotated[str, typer.Option(help="system account the server runs as (created when missing)")] = "clawfleet",
    output_dir: Annotated[Path | None, typer.Option(help="only write the unit into this directory (nothing is "
                                                         "created, enabled or started)")] = None,
    no_enable: Annotated[bool, typer.Option("--no-enable", help="write the unit and the account; no start")] = False,
    run_args: Annotated[str, typer.Option(help="more 'clawfleet-server run' options, e.g. \"--host 0.0.0.0 "
                                               "--behind-proxy --public-host fleet.example.com\"")] = "",
) -> None:
    """Install the server as a systemd service (own account, data in /var/lib/clawfleet); prints what it wrote.

    Then: sudo systemctl status clawfleet-server; the first admin password is in its journal
    (journalctl -u clawfleet-server). Certificates: sudo -u clawfleet clawfleet-server tls init --data-dir
    /var/lib/clawfleet --host NAME, then restart.
    """
    command = server_command(shlex.split(run_args))
    text = server_unit(command, user)
    if command[0].startswith(("/root/", "/home/")):
        typer.echo(f"note: the unit runs {command[0]}; the '{user}' account must be able to read it. A system-wide "
                   "install is safer: python3 -m venv /opt/clawfleet && /opt/clawfleet/bin/pip install "
                   "'clawfleet-0.1.0-py3-none-any.whl[server]'", err=True)
    if output_dir is not None:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / UNIT_NAME).write_text(text, encoding="utf-8")
        typer.echo(f"systemd unit: {output_dir / UNIT_NAME}")
        return
    if os.geteuid() != 0:
        fail("installing a system service needs root: sudo clawfleet-server install-service (or --output-dir DIR)")
    try:
        pwd.getpwnam(user)
    except KeyError:
        _run(["useradd", "--system", "--home-dir", str(DATA_DIR), "--no-create-home", "--shell",
              "/usr/sbin/nologin", user])
    path = SYSTEM_UNIT_DIR / UNIT_NAME
    path.write_text(text, encoding="utf-8")
    typer.echo(f"systemd unit: {path}")
    if no_enable or shutil.which("systemctl") is None:
        typer.echo("not started: sudo systemctl daemon-reload && sudo systemctl enable --now clawfleet-server")
        return
    _run(["systemctl", "daemon-reload"])
    _run(["systemctl", "enable", "--now", UNIT_NAME])
    typer.echo("first admin password: journalctl -u clawfleet-server | grep -i password")


def uninstall_service() -> None:
    """Stop and remove the server's systemd unit (the data in /var/lib/clawfleet and the account stay)."""
    path = SYSTEM_UNIT_DIR / UNIT_NAME
    if not path.exists():
        typer.echo("nothing to remove")
        return
    if shutil.which("systemctl"):
        subprocess.run(["systemctl", "disable", "--now", UNIT_NAME], check=False)
    path.unlink()
    typer.echo(f"removed: {path} (data in {DATA_DIR} kept)")
