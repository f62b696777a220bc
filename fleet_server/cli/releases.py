"""``clawfleet-server release list|add|policy|policies`` and ``clawfleet-server device update``: the agent
packages the server offers, and which devices get them when (:mod:`fleet_server.releases`)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated

import typer

from fleet_server.cli.options import PLAIN_HELP, DataDirOpt, DbUrlOpt, default_data_dir, fail

release_app = typer.Typer(help="Agent packages this server offers (install one-liners, self-updates) and update "
                          "policies.", no_args_is_help=True, **PLAIN_HELP)


def _catalog(data_dir: Path):
    from fleet_server.endpoints.broker_link import ServerSettings
    from fleet_server.releases.catalog import Catalog

    return Catalog(data_dir, tuple(Path(p) for p in ServerSettings.load(data_dir).agent_packages))


@release_app.command("list")
def release_list(data_dir: DataDirOpt = None) -> None:
    """List the agent packages with size and SHA-256, and the version offered (the newest)."""
    data_dir = data_dir or default_data_dir()
    try:
        manifest = _catalog(data_dir).manifest()
    except ValueError as exc:
        fail(str(exc))
    if not manifest.packages:
        typer.echo(f"no agent packages yet: clawfleet-server release add FILE… (into {data_dir / 'agent-packages'})")
        return
    typer.echo(f"offered version: {manifest.offered_version}   signing key: {manifest.update_key}")
    for p in manifest.packages:
        typer.echo(f"{p.version:12} {p.os}/{p.arch:10} {p.size / 2**20:7.1f} MiB  sha256 {p.sha256}  {p.name}")


@release_app.command("add")
def release_add(
    files: Annotated[list[Path], typer.Argument(help="package files (.deb, .rpm, .tar.gz, .pkg, setup .exe) as the "
                                                "project's build scripts name them")],
    data_dir: DataDirOpt = None,
) -> None:
    """Copy agent packages into <data dir>/agent-packages; the server offers the newest version at once."""
    from shared.packages import parse_package_name

    data_dir = data_dir or default_data_dir()
    dest = data_dir / "agent-packages"
    for f in files:
        if parse_package_name(f.name) is None:
            fail(f"{f.name}: not an agent package name (e.g. clawfleet-agent_0.2.0_amd64.deb, "
                 "clawfleet-agent-0.2.0-linux-x86_64.tar.gz)")
        if not f.is_file():
            fail(f"{f}: no such file")
    dest.mkdir(parents=True, exist_ok=True)
    for f in files:
        shutil.copyfile(f, dest / f.name)
        typer.echo(f"added {dest / f.name}")
    release_list(data_dir)


@release_app.command("policy")
def release_policy(
    scope: Annotated[str, typer.Argument(help="fleet, tag:<tag> or device:<id>")],
    mode: Annotated[str, typer.Argument(help="manual (an admin asks), auto (the server updates in the window), or "
                                        "remove", metavar="manual|auto|remove")],
    window: Annotated[str | None, typer.Option(help="auto: only between these times, HH:MM-HH:MM")] = None,
    tz: Annotated[str, typer.Option(help="time zone of --window (IANA name)")] = "UTC",
    rollback_after: Annotated[int, typer.Option(help="seconds a new version has to report before the agent goes "
                                                "back to the old one")] = 600,
    data_dir: DataDirOpt = None,
    database_url: DbUrlOpt = None,
) -> None:
    """Choose how devices get new agent versions: per fleet, tag or device (the most specific one applies)."""
    from fleet_server.releases import updates
    from fleet_server.store import audit
    from fleet_server.store.db import open_database

    open_database(data_dir or default_data_dir(), database_url)
    try:
        if mode == "remove":
            done = updates.delete_policy(audit.cli_actor(), scope)
            typer.echo(f"policy of {scope} removed" if done else f"{scope} had no policy")
            return
        p = updates.set_policy(audit.cli_actor(), scope, mode, window, tz, rollback_after)
    except updates.UpdateError as exc:
        fail(str(exc))
    typer.echo(f"{p.scope}: {p.mode}" + (f", window {p.window} ({p.tz})" if p.window else "")
               + f", rollback after {p.rollback_after_s} s")


@release_app.command("policies")
def release_policies(data_dir: DataDirOpt = None, database_url: DbUrlOpt = None) -> None:
    """List the update policies (without any, every device is manual)."""
    from fleet_server.releases import updates
    from fleet_server.store.db import open_database

    open_database(data_dir or default_data_dir(), database_url)
    rows = updates.policies()
    if not rows:
        typer.echo("no update policies: every device is updated by hand (clawfleet-server device update ID)")
    for p in rows:
        typer.echo(f"{p.scope:30} {p.mode:7} {p.window or 'any time':12} {p.tz:16} rollback {p.rollback_after_s} s")


def device_update(
    device_id: Annotated[str, typer.Argument(help="device id (see 'clawfleet-server device list')")],
    version: Annotated[str | None, typer.Option(help="agent version to install (default: the offered one)")] = None,
    rollback_after: Annotated[int | None, typer.Option(help="seconds the new version has to report (default: the "
                                                       "device's update policy, else 600)")] = None,
    data_dir: DataDirOpt = None,
    mqtt_port: Annotated[int | None, typer.Option("--mqtt-port", help="loopback port of the managed Mosquitto "
                                                  "(default: saved by the last 'run')")] = None,
    database_url: DbUrlOpt = None,
) -> None:
    """Ask a device's agent to update itself now (it downloads the signed package from this server, installs
    it and rolls back when the new version does not report in time; its progress shows on the device page)."""
    from fleet_server.cli.devices import _server_session, mqtt_port_for
    from fleet_server.devices.registry import DeviceError, get_device
    from fleet_server.releases import updates
    from fleet_server.store import audit
    from fleet_server.store.db import open_database

    data_dir = data_dir or default_data_dir()
    open_database(data_dir, database_url)
    try:
        dev = get_device(device_id)
    except DeviceError as exc:
        fail(str(exc))
    manifest = _catalog(data_dir).manifest()
    version = version or manifest.offered_version
    if not version:
        fail("this server offers no agent packages yet: clawfleet-server release add FILE…")
    if not any(p.version == version for p in manifest.packages):
        fail(f"this server has no packages of {version}; see clawfleet-server release list")
    rollback = rollback_after or updates.effective_policy(dev.id, dev.tags).rollback_after_s
    with _server_session(data_dir, mqtt_port_for(data_dir, mqtt_port)) as client:
        if client is None:
            fail("the broker is not reachable: start the server first (clawfleet-server run)")

        def publish(topic: str, payload: bytes) -> bool:
            info = client.publish(topic, payload, qos=1)
            info.wait_for_publish(10)
            return info.is_published()

        try:
            updates.request_update(publish, device_id, version, audit.cli_actor(), rollback)
        except updates.UpdateError as exc:
            fail(str(exc))
    typer.echo(f"asked {device_id} to update to {version} (rollback after {rollback} s); it reports its progress "
               "in its meta (dashboard: the device page)")
