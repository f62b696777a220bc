"""``clawfleet-server device rotate-key|revoke|rename``, and the plumbing ``device add`` and
``device delete`` share with them (:func:`device_actions`).

The CLI changes the database and the broker directly, audited with the actor
``cli:<os user>``. A server running in another process notices within
:data:`fleet_server.server.REGISTRY_SYNC_S` seconds (its registry sync). Keys and tokens are
printed once and never logged.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from fleet_server.cli.options import PLAIN_HELP, DataDirOpt, DbUrlOpt, default_data_dir, fail
from fleet_server.devices.actions import DeviceActions

if TYPE_CHECKING:
    from fleet_server.devices.registry import NewDevice
    from fleet_server.endpoints.broker_link import AgentEndpoint

device_app = typer.Typer(help="Enroll, rename, rotate keys of, revoke and delete devices.", no_args_is_help=True,
                         **PLAIN_HELP)

DeviceIdArg = Annotated[str, typer.Argument(help="device id (see 'clawfleet-server device list')")]
MqttPortOpt = Annotated[int | None, typer.Option("--mqtt-port", help="loopback port of the managed Mosquitto "
                        "(default: the one the last 'run' saved in <data dir>/server.json, else 18830)")]


def mqtt_port_for(data_dir: Path, given: int | None) -> int:
    """``given``, else the managed broker's port saved by ``run`` in ``<data_dir>/server.json``."""
    if given is not None:
        return given
    from fleet_server.endpoints.broker_link import ServerSettings

    return ServerSettings.load(data_dir).mqtt_port


def endpoint_for(data_dir: Path, mqtt_port: int | None) -> AgentEndpoint:
    """The broker URL and CA for tokens (:class:`~fleet_server.endpoints.broker_link.AgentEndpoint`), as saved
    by ``run``."""
    from fleet_server.endpoints.broker_link import ServerSettings

    settings = ServerSettings.load(data_dir)
    settings.mqtt_port = mqtt_port_for(data_dir, mqtt_port)
    return settings.endpoint(data_dir)


@contextlib.contextmanager
def _server_session(data_dir: Path, mqtt_port: int) -> Iterator[object]:
    """A short MQTT session as the server account (to clear retained topics), or None."""
    from broker.mosquitto import BrokerConfig, ManagedMosquitto
    from fleet_server.devices.actions import server_session
    from fleet_server.endpoints.broker_link import ServerSettings

    try:
        ext = ServerSettings.load(data_dir).external()
        if ext is not None:
            host, port, user, password, tls = ext.host, ext.port, ext.username, ext.password, ext.ssl_context()
        else:
            admin = ManagedMosquitto(BrokerConfig(data_dir=data_dir, port=mqtt_port)).admin
            host, port, user, password, tls = "127.0.0.1", mqtt_port, admin.username, admin.password, None
    except (OSError, ValueError) as exc:
        typer.echo(f"warning: no broker session to clear retained topics: {exc}", err=True)
        yield None
        return
    with server_session(host, port, user, password, tls) as client:
        yield client


@contextlib.contextmanager
def device_actions(data_dir: Path | None, mqtt_port: int | None, database_url: str | None,
                   publisher: bool = False) -> Iterator[DeviceActions]:
    """Open the database and an admin broker connection (the running broker, or a temporary one);
    yield :class:`DeviceActions` for them. ``publisher``: also open a server-account MQTT session
    (to clear retained topics). Exits with code 2 and the message on a device error."""
    from broker.dynsec import DynSecConnectionError, DynSecError
    from fleet_server.devices.registry import DeviceError
    from fleet_server.store.db import open_database

    data_dir = data_dir or default_data_dir()
    mqtt_port = mqtt_port_for(data_dir, mqtt_port)
    open_database(data_dir, database_url)
    with _dynsec(data_dir, mqtt_port) as ds, contextlib.ExitStack() as stack:
        client = stack.enter_context(_server_session(data_dir, mqtt_port)) if publisher else None
        try:
            yield DeviceActions(ds, lambda: endpoint_for(data_dir, mqtt_port), publisher=client)
        except DeviceError as exc:
            fail(str(exc))
        except (DynSecError, DynSecConnectionError) as exc:
            fail(f"broker: {exc}")


def print_token(title: str, new: NewDevice, fleet_url: str | None = None) -> None:
    """Print a device's id, API key, token and the agent commands (shown once): the one-line installs
    from ``fleet_url`` when the server's address is known, else the commands for an installed agent."""
    typer.echo(f"{title}\ndevice:  {new.device.id}\napi key: {new.api_key}\n\nenrollment token (shown once; keep it "
               f"secret):\n{new.token}\n")
    if fleet_url:
        from fleet_server.releases.routes import one_liners

        lines = one_liners(fleet_url)
        typer.echo("install the agent on the device with one line (it asks for the token, so it stays out of 'ps' "
                   f"and the shell history; running it again upgrades):\n  Linux (service):  {lines['linux']}\n"
                   f"  Linux/macOS (this user only): {lines['macos']}\n  Windows (admin PowerShell): "
                   f"{lines['windows']}\n\nor, with the agent installed already:")
    else:
        typer.echo("on the device run (it asks for the token, so it stays out of 'ps' and the shell history; "
                   "one-line installs need the server's address: clawfleet-server run --public-url URL):")
    typer.echo("  clawfleet-agent enroll\n  clawfleet-agent run            # tray icon\n"
               "  clawfleet-agent run --headless # or as a service: clawfleet-agent install-service")


@device_app.command("rotate-key")
def device_rotate_key(device_id: DeviceIdArg, data_dir: DataDirOpt = None, mqtt_port: MqttPortOpt = None,
                      database_url: DbUrlOpt = None) -> None:
    """Give a device a new API key: the old key and its live session stop at once; prints the new
    enrollment token ONCE. Also re-enables a revoked device."""
    from fleet_server.store import audit

    with device_actions(data_dir, mqtt_port, database_url) as actions:
        new = actions.rotate_key(audit.cli_actor(), device_id)
    from fleet_server.endpoints.broker_link import ServerSettings

    print_token(f"key of {device_id} rotated; the agent needs the new token", new,
                ServerSettings.load(data_dir or default_data_dir()).public_url)


@device_app.command("revoke")
def device_revoke(device_id: DeviceIdArg, data_dir: DataDirOpt = None, mqtt_port: MqttPortOpt = None,
                  database_url: DbUrlOpt = None) -> None:
    """Revoke a device's key: its live session is closed at once and it cannot log in again
    (its data stays). Undo with rotate-key."""
    from fleet_server.store import audit

    with device_actions(data_dir, mqtt_port, database_url, publisher=True) as actions:
        res = actions.revoke(audit.cli_actor(), device_id)
    if not res.broker_confirmed:
        typer.echo(f"device {device_id} is revoked in the database, but the broker did not confirm "
                   f"({res.broker_error}); it applies the command once it answers, and the server disables the "
                   "device there at its next start", err=True)
    typer.echo(f"device {device_id} revoked; 'clawfleet-server device rotate-key {device_id}' lets it back in")


@device_app.command("rename")
def device_rename(
    device_id: DeviceIdArg,
    name: Annotated[str, typer.Argument(help="new display name")],
    tags: Annotated[str | None, typer.Option(help="new comma-separated tags (default: unchanged)")] = None,
    data_dir: DataDirOpt = None,
    database_url: DbUrlOpt = None,
) -> None:
    """Change a device's display name (and tags); its id, key and data stay."""
    from fleet_server.devices.registry import DeviceError
    from fleet_server.store import audit
    from fleet_server.store.db import open_database

    open_database(data_dir or default_data_dir(), database_url)
    try:
        # renaming touches only the database: no broker connection needed
        dev = DeviceActions(None, lambda: None).rename(audit.cli_actor(), device_id, name, tags)
    except DeviceError as exc:
        fail(str(exc))
    typer.echo(f"device {dev.id} is now {dev.name!r}" + (f" (tags {dev.tags})" if dev.tags else ""))


@contextlib.contextmanager
def _dynsec(data_dir: Path, mqtt_port: int) -> Iterator[object]:
    """Admin connection to the broker: the external one saved by ``run`` (server.json), else the
    managed one: running, or started for this command."""
    from broker.dynsec import DynSecClient, DynSecConnectionError
    from broker.mosquitto import BrokerConfig, BrokerSetupError, ManagedMosquitto
    from fleet_server.endpoints.broker_link import ServerSettings

    settings = ServerSettings.load(data_dir)
    if settings.broker_url:
        try:
            ext = settings.external()
            assert ext is not None
            client = DynSecClient(ext.host, ext.port, ext.username, ext.password, tls=ext.ssl_context(),
                                  client_id="clawfleet-cli")
        except (ValueError, DynSecConnectionError) as exc:
            fail(f"external broker: {exc}")
        with client as ds:
            yield ds
        return

    broker = ManagedMosquitto(BrokerConfig(data_dir=data_dir, port=mqtt_port))
    running = _port_open("127.0.0.1", mqtt_port)
    try:
        if not running:
            broker.start()
        admin = broker.admin
        with DynSecClient("127.0.0.1", mqtt_port, admin.username, admin.password, client_id="clawfleet-cli") as ds:
            yield ds
    except BrokerSetupError as exc:
        fail(str(exc))
    finally:
        if not running:
            broker.stop()


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


@device_app.command("add")
def device_add(
    name: Annotated[str, typer.Argument(help="display name; the device id is derived from it")],
    device_id: Annotated[str | None, typer.Option("--id", help="device id ([a-z0-9][a-z0-9-]*)")] = None,
    tags: Annotated[str, typer.Option(help="comma-separated tags")] = "",
    data_dir: DataDirOpt = None,
    mqtt_port: MqttPortOpt = None,
    database_url: DbUrlOpt = None,
) -> None:
    """Enroll a device; prints its API key and enrollment token ONCE."""
    from fleet_server.endpoints.broker_link import ServerSettings
    from fleet_server.store import audit

    data_dir = data_dir or default_data_dir()
    settings = ServerSettings.load(data_dir)
    mqtt_port = mqtt_port_for(data_dir, mqtt_port)
    endpoint = endpoint_for(data_dir, mqtt_port)
    with device_actions(data_dir, mqtt_port, database_url) as actions:  # devices: audited as cli:<os user>
        new = actions.add(audit.cli_actor(), name, tags, device_id)
    if not endpoint.tls and not settings.broker_url:
        typer.echo(f"warning: no TLS certificate, so this token points at {endpoint.url}: the device must be this "
                   f"machine or reach it through an SSH tunnel (ssh -N -L {mqtt_port}:127.0.0.1:{mqtt_port} SERVER). "
                   "For devices elsewhere: clawfleet-server tls init --host NAME, restart the server, add the device "
                   "again.", err=True)
    print_token("device added", new, settings.public_url)


@device_app.command("list")
def device_list(data_dir: DataDirOpt = None, database_url: DbUrlOpt = None) -> None:
    """List devices with their status and key hint."""
    from fleet_server.dashboard.parts.format import ago_h
    from fleet_server.devices.registry import list_devices
    from fleet_server.store.db import open_database

    open_database(data_dir or default_data_dir(), database_url)
    devices = list_devices()
    if not devices:
        typer.echo("no devices; add one with: clawfleet-server device add NAME")
    for d in devices:
        status = "revoked" if d.revoked_ms else d.status
        typer.echo(f"{d.id:30} {status:9} key …{d.key_hint}  last seen {ago_h(d.last_seen_ms)}  {d.name}")


@device_app.command("delete")
def device_delete(
    device_id: Annotated[str, typer.Argument(help="device id")],
    keep_data: Annotated[bool, typer.Option(help="keep its samples, usage and logs")] = False,
    data_dir: DataDirOpt = None,
    mqtt_port: MqttPortOpt = None,
    database_url: DbUrlOpt = None,
) -> None:
    """Remove a device: revokes its key at once (kicking a live session), clears its retained state
    on the broker and purges its data (unless --keep-data)."""
    from fleet_server.store import audit

    with device_actions(data_dir, mqtt_port, database_url, publisher=True) as actions:
        res = actions.delete(audit.cli_actor(), device_id, keep_data=keep_data)
    typer.echo(f"device {device_id} deleted" + (" (data kept)" if keep_data else "")
               + ("" if res.retained_cleared else "; its retained topics could not be cleared"))


def _register_import() -> None:
    from fleet_server.cli.device_import import device_import

    # one line per paragraph: typer keeps the docstring's line breaks after the first paragraph
    paragraphs = (" ".join(p.split()) for p in (device_import.__doc__ or "").split("\n\n"))
    device_app.command("import", help="\n\n".join(paragraphs))(device_import)


_register_import()
