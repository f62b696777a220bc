"""``clawfleet-server device rotate-key|revoke|rename``, and the plumbing ``device add`` and
``device delete`` share with them (:func:`device_actions`).

The CLI changes the database and the broker directly, audited with the actor
``cli:<os user>``. A server running in another process notices within
:data:`fleet_server.server.REGISTRY_SYNC_S` seconds (its registry sync). Keys and tokens are
printed once and never logged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from fleet_server.cli import DataDirOpt, DbUrlOpt, MqttPortOpt, _dynsec, _fail, default_data_dir, device_app
from fleet_server.device_actions import DeviceActions

if TYPE_CHECKING:
    from fleet_server.broker_link import AgentEndpoint
    from fleet_server.devices import NewDevice

DeviceIdArg = Annotated[str, typer.Argument(help="device id (see 'clawfleet-server device list')")]


def endpoint_for(data_dir: Path, mqtt_port: int) -> AgentEndpoint:
    """The broker URL and CA for tokens (:class:`fleet_server.broker_link.AgentEndpoint`), as ``run`` saved them."""
    from fleet_server.broker_link import ServerSettings

    settings = ServerSettings.load(data_dir)
    settings.mqtt_port = mqtt_port
    return settings.endpoint(data_dir)


@contextlib.contextmanager
def _server_session(data_dir: Path, mqtt_port: int) -> Iterator[object]:
    """A short MQTT session as the server account (to clear retained topics), or None."""
    from broker.mosquitto import BrokerConfig, ManagedMosquitto
    from fleet_server.broker_link import ServerSettings
    from fleet_server.device_actions import server_session

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
def device_actions(data_dir: Path | None, mqtt_port: int, database_url: str | None,
                   publisher: bool = False) -> Iterator[DeviceActions]:
    """Open the database and an admin broker connection (the running broker, or a temporary one);
    yield :class:`DeviceActions` for them. ``publisher``: also open a server-account MQTT session
    (to clear retained topics). Exits with code 2 and the message on a device error."""
    from broker.dynsec import DynSecConnectionError, DynSecError
    from fleet_server.devices import DeviceError
    from fleet_server.store.db import open_database

    data_dir = data_dir or default_data_dir()
    open_database(data_dir, database_url)
    with _dynsec(data_dir, mqtt_port) as ds, contextlib.ExitStack() as stack:
        client = stack.enter_context(_server_session(data_dir, mqtt_port)) if publisher else None
        try:
            yield DeviceActions(ds, lambda: endpoint_for(data_dir, mqtt_port), publisher=client)
        except DeviceError as exc:
            _fail(str(exc))
        except (DynSecError, DynSecConnectionError) as exc:
            _fail(f"broker: {exc}")


def print_token(title: str, new: NewDevice) -> None:
    """Print a device's id, API key, token and the agent commands (shown once)."""
    typer.echo(f"{title}\ndevice:  {new.device.id}\napi key: {new.api_key}\n\nenrollment token (shown once; keep it "
               f"secret):\n{new.token}\n\non the device run:\n  clawfleet-agent enroll {new.token}\n"
               "  clawfleet-agent run --headless")


@device_app.command("rotate-key")
def device_rotate_key(device_id: DeviceIdArg, data_dir: DataDirOpt = None, mqtt_port: MqttPortOpt = 18830,
                      database_url: DbUrlOpt = None) -> None:
    """Give a device a new API key: the old key and its live session stop at once; prints the new
    enrollment token ONCE. Also re-enables a revoked device."""
    from fleet_server import audit

    with device_actions(data_dir, mqtt_port, database_url) as actions:
        new = actions.rotate_key(audit.cli_actor(), device_id)
    print_token(f"key of {device_id} rotated; the agent needs the new token", new)


@device_app.command("revoke")
def device_revoke(device_id: DeviceIdArg, data_dir: DataDirOpt = None, mqtt_port: MqttPortOpt = 18830,
                  database_url: DbUrlOpt = None) -> None:
    """Revoke a device's key: its live session is closed at once and it cannot log in again
    (its data stays). Undo with rotate-key."""
    from fleet_server import audit

    with device_actions(data_dir, mqtt_port, database_url, publisher=True) as actions:
        actions.revoke(audit.cli_actor(), device_id)
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
    from fleet_server import audit
    from fleet_server.devices import DeviceError
    from fleet_server.store.db import open_database

    open_database(data_dir or default_data_dir(), database_url)
    try:
        # renaming touches only the database: no broker connection needed
        dev = DeviceActions(None, lambda: None).rename(audit.cli_actor(), device_id, name, tags)
    except DeviceError as exc:
        _fail(str(exc))
    typer.echo(f"device {dev.id} is now {dev.name!r}" + (f" (tags {dev.tags})" if dev.tags else ""))
