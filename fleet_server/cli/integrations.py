"""``clawfleet-server integration …``: read-only MQTT accounts for Home Assistant, Node-RED, scripts.

``add`` prints the username and password once; ``revoke`` deletes the broker account (a live
session is closed at once). Topics and payloads: docs/mqtt.md.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated

import typer

from fleet_server.cli.options import PLAIN_HELP, DataDirOpt, DbUrlOpt, MqttPortOpt, default_data_dir, fail

integration_app = typer.Typer(help="Read-only MQTT accounts for other tools (see docs/mqtt.md).",
                              no_args_is_help=True, **PLAIN_HELP)


def _when(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


@integration_app.command("add")
def add(name: Annotated[str, typer.Argument(help="a-z, 0-9, '-': e.g. 'home-assistant'")],
        channels: Annotated[str, typer.Option(help="comma-separated device channels it may read: status, meta, "
                                              "telemetry, usage, logs")] = "status,meta,telemetry",
        data_dir: DataDirOpt = None, mqtt_port: MqttPortOpt = 18830, database_url: DbUrlOpt = None) -> None:
    """Create a read-only MQTT account and print its password ONCE."""
    from broker.dynsec import DynSecConnectionError, DynSecError
    from fleet_server.cli.devices import _dynsec, endpoint_for
    from fleet_server.integrations.accounts import IntegrationError, add_integration, parse_channels
    from fleet_server.store import audit
    from fleet_server.store.db import open_database

    data_dir = data_dir or default_data_dir()
    open_database(data_dir, database_url)
    try:
        chans = parse_channels(channels)
        with _dynsec(data_dir, mqtt_port) as ds:
            row, password = add_integration(ds, name, chans, audit.cli_actor())
    except IntegrationError as exc:
        fail(str(exc))
    except (DynSecError, DynSecConnectionError) as exc:
        fail(f"broker: {exc}")
    url = endpoint_for(data_dir, mqtt_port).url
    typer.echo(f"integration {row.name} created (shown once; keep the password secret)\n"
               f"  broker:   {url}\n  username: {row.username}\n  password: {password}\n"
               f"  may subscribe to: " + ", ".join(f"clawfleet/v1/+/{c}" for c in row.channels.split(",")))


@integration_app.command("list")
def list_cmd(data_dir: DataDirOpt = None, database_url: DbUrlOpt = None) -> None:
    """List integration accounts: name, username, channels, created."""
    from fleet_server.integrations.accounts import list_integrations
    from fleet_server.store.db import open_database

    open_database(data_dir or default_data_dir(), database_url)
    rows = list_integrations()
    if not rows:
        typer.echo("no integration accounts")
        return
    for r in rows:
        typer.echo(f"{r.name:<24} {r.username:<36} {r.channels:<32} {_when(r.created_ms)} by {r.created_by}")


@integration_app.command("revoke")
def revoke(name: Annotated[str, typer.Argument(help="the name shown by 'integration list'")],
           data_dir: DataDirOpt = None, mqtt_port: MqttPortOpt = 18830, database_url: DbUrlOpt = None) -> None:
    """Delete an integration account; its live session is closed at once."""
    from broker.dynsec import DynSecConnectionError, DynSecError
    from fleet_server.cli.devices import _dynsec
    from fleet_server.integrations.accounts import IntegrationError, revoke_integration
    from fleet_server.store import audit
    from fleet_server.store.db import open_database

    data_dir = data_dir or default_data_dir()
    open_database(data_dir, database_url)
    try:
        with _dynsec(data_dir, mqtt_port) as ds:
            revoke_integration(ds, name, audit.cli_actor())
    except IntegrationError as exc:
        fail(str(exc))
    except (DynSecError, DynSecConnectionError) as exc:
        fail(f"broker: {exc}")
    typer.echo(f"integration {name} revoked")
