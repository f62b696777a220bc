"""``clawfleet-server``: run the fleet server and manage devices."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import platformdirs
import typer

app = typer.Typer(help="ClawFleet server: managed Mosquitto broker, ingest, storage and the dashboard.",
                  no_args_is_help=True, add_completion=False)
device_app = typer.Typer(help="Enroll, rename, rotate keys of, revoke and delete devices.", no_args_is_help=True)
app.add_typer(device_app, name="device")

log = logging.getLogger("clawfleet.server")


def default_data_dir() -> Path:
    """``$CLAWFLEET_DATA_DIR`` or the per-user data dir (e.g. ``~/.local/share/clawfleet/server``)."""
    env = os.environ.get("CLAWFLEET_DATA_DIR")
    return Path(env) if env else Path(platformdirs.user_data_dir("clawfleet", appauthor=False)) / "server"


DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="server data dir: database, broker config "
                       "and state (default: $CLAWFLEET_DATA_DIR or the per-user data dir)")]
MqttPortOpt = Annotated[int, typer.Option("--mqtt-port", help="loopback port of the managed Mosquitto "
                        "(not 1883, so it never collides with a distribution's own mosquitto service)")]
DbUrlOpt = Annotated[str | None, typer.Option("--database-url", envvar="CLAWFLEET_DATABASE_URL",
                     help="postgresql://user:pass@host/db for PostgreSQL; default SQLite in the data dir")]


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _fail(msg: str, code: int = 2) -> None:
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(code)


@app.command()
def run(
    data_dir: DataDirOpt = None,
    host: Annotated[str, typer.Option(help="dashboard bind address; anything but loopback (e.g. 0.0.0.0) needs "
                    "--https-certfile/--https-keyfile or --behind-proxy")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="dashboard HTTP port")] = 8080,
    mqtt_port: MqttPortOpt = 18830,
    database_url: DbUrlOpt = None,
    local_agent: Annotated[bool, typer.Option(help="also run an agent that reports this machine")] = True,
    local_agent_interval: Annotated[float, typer.Option(help="local agent sample interval, seconds")] = 10.0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="debug logging")] = False,
    secure_cookies: Annotated[bool, typer.Option(help="mark the session cookie Secure (sent over HTTPS only); "
                              "turn on when the dashboard is reached over HTTPS, directly or via a TLS proxy")] = False,
    https_certfile: Annotated[Path | None, typer.Option(help="serve the dashboard over HTTPS with this certificate "
                              "(PEM, full chain); turns on secure cookies")] = None,
    https_keyfile: Annotated[Path | None, typer.Option(help="private key (PEM) of --https-certfile")] = None,
    behind_proxy: Annotated[bool, typer.Option("--behind-proxy", help="a TLS-terminating reverse proxy (Caddy, "
                            "nginx) serves the dashboard over HTTPS; turns on secure cookies")] = False,
    mqtt_tls_port: Annotated[int, typer.Option("--mqtt-tls-port", help="TLS port of the managed Mosquitto on all "
                             "interfaces, opened when 'clawfleet-server tls init' has made a certificate")] = 8883,
    mqtt_tls_bind: Annotated[str | None, typer.Option("--mqtt-tls-bind", help="bind the TLS listener to this "
                             "address only (e.g. a VPN interface's); default all interfaces")] = None,
    public_host: Annotated[str | None, typer.Option(help="host name agents connect to, put into enrollment tokens "
                           "(default: the certificate's first --host)")] = None,
    broker_url: Annotated[str | None, typer.Option(help="use this external Mosquitto >= 2.0 with the "
                          "dynamic-security plugin (mqtts://host:8883) instead of starting one")] = None,
    broker_admin_user: Annotated[str | None, typer.Option(help="dynamic-security admin account on "
                                 "--broker-url")] = None,
    broker_admin_password_file: Annotated[Path | None, typer.Option(help="file whose first line is that account's "
                                          "password (or set $CLAWFLEET_BROKER_ADMIN_PASSWORD)")] = None,
    broker_ca_file: Annotated[Path | None, typer.Option(help="CA (PEM) of an mqtts --broker-url; the server and "
                              "agents pin it (default: the system trust store)")] = None,
) -> None:
    """Run the server: managed Mosquitto, ingest, dashboard (and a local agent). Ctrl-C stops all.

    TLS: after 'tls init' the broker also listens on --mqtt-tls-port and tokens use mqtts://<public host>.

    Dashboard: 127.0.0.1 by default; --host 0.0.0.0 needs --https-certfile/--https-keyfile or --behind-proxy.

    Broker settings (never the password) are saved in <data dir>/server.json for the device commands.
    """
    from nicegui import app as ng_app
    from nicegui import ui

    from broker.mosquitto import BrokerSetupError
    from fleet_server.auth import configure_session_storage, session_cookie_options, session_secret
    from fleet_server.cli_admin import first_run_admin
    from fleet_server.dashboard import register_pages
    from fleet_server.server import FleetServer, ServerOptions

    _setup_logging(verbose)
    from broker.dynsec import DynSecConnectionError, DynSecError
    from fleet_server.cli_tls import dashboard_tls, external_broker, save_settings, startup_warnings
    from fleet_server.tls import TlsError

    try:
        web = dashboard_tls(host, port, https_certfile, https_keyfile, behind_proxy)
        external = external_broker(broker_url, broker_admin_user, broker_admin_password_file, broker_ca_file)
    except ValueError as exc:
        _fail(str(exc))
    secure_cookies = secure_cookies or web.secure_cookies
    opts = ServerOptions(data_dir=data_dir or default_data_dir(), mqtt_port=mqtt_port, database_url=database_url,
                         local_agent=local_agent, local_agent_interval_s=local_agent_interval, tls_port=mqtt_tls_port,
                         tls_host=mqtt_tls_bind, public_host=public_host, external_broker=external)
    for warning in web.warnings + startup_warnings(opts.data_dir, public_host, external):
        log.warning("%s", warning)
    server = FleetServer(opts)
    try:
        server.start()
    except (BrokerSetupError, DynSecConnectionError, DynSecError, TlsError) as exc:
        _fail(str(exc))
    save_settings(opts.data_dir, mqtt_port, mqtt_tls_port, public_host, external, broker_admin_password_file)
    first_run_admin()  # auth: no user yet -> create 'admin', print its password once
    configure_session_storage(opts.data_dir)  # auth: session files in <data dir>/sessions
    register_pages(server.state, devices=server.devices)  # devices: actions on /devices
    ng_app.on_shutdown(server.stop)
    typer.echo(f"\n  ClawFleet dashboard: {web.scheme}://{host}:{port}\n  MQTT broker for agents: {server.broker_url}\n"
               f"  data dir: {opts.data_dir}\n  Ctrl-C stops everything.\n")
    try:
        ui.run(host=host, port=port, title="ClawFleet", reload=False, show=False, show_welcome_message=False,
               uvicorn_logging_level="warning", favicon="🛰️",
               storage_secret=session_secret(opts.data_dir),  # auth: signs the session cookie
               session_middleware_kwargs=session_cookie_options(https_only=secure_cookies), **web.uvicorn_kwargs)
    finally:
        server.stop()  # also when the web server fails to start (e.g. its port is taken); idempotent


@contextlib.contextmanager
def _dynsec(data_dir: Path, mqtt_port: int) -> Iterator[object]:
    """Admin connection to the broker: the external one saved by ``run`` (server.json), else the
    managed one: running, or started for this command."""
    from broker.dynsec import DynSecClient, DynSecConnectionError
    from broker.mosquitto import BrokerConfig, BrokerSetupError, ManagedMosquitto
    from fleet_server.broker_link import ServerSettings

    settings = ServerSettings.load(data_dir)
    if settings.broker_url:
        try:
            ext = settings.external()
            assert ext is not None
            client = DynSecClient(ext.host, ext.port, ext.username, ext.password, tls=ext.ssl_context(),
                                  client_id="clawfleet-cli")
        except (ValueError, DynSecConnectionError) as exc:
            _fail(f"external broker: {exc}")
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
        _fail(str(exc))
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
    mqtt_port: MqttPortOpt = 18830,
    database_url: DbUrlOpt = None,
) -> None:
    """Enroll a device; prints its API key and enrollment token ONCE."""
    from fleet_server import audit
    from fleet_server.broker_link import ServerSettings
    from fleet_server.cli_devices import device_actions, endpoint_for

    data_dir = data_dir or default_data_dir()
    settings = ServerSettings.load(data_dir)
    endpoint = endpoint_for(data_dir, mqtt_port)
    with device_actions(data_dir, mqtt_port, database_url) as actions:  # devices: audited as cli:<os user>
        new = actions.add(audit.cli_actor(), name, tags, device_id)
    if not endpoint.tls and not settings.broker_url:
        typer.echo(f"warning: no TLS certificate, so this token points at {endpoint.url}: the device must be this "
                   f"machine or reach it through an SSH tunnel (ssh -N -L {mqtt_port}:127.0.0.1:{mqtt_port} SERVER). "
                   "For devices elsewhere: clawfleet-server tls init --host NAME, restart the server, add the device "
                   "again.", err=True)
    typer.echo(f"device:  {new.device.id}\napi key: {new.api_key}\n\nenrollment token (shown once; keep it "
               f"secret):\n{new.token}\n\non the device run:\n  clawfleet-agent enroll {new.token}\n"
               "  clawfleet-agent run --headless")


@device_app.command("list")
def device_list(data_dir: DataDirOpt = None, database_url: DbUrlOpt = None) -> None:
    """List devices with their status and key hint."""
    from fleet_server.dashboard.format import ago_h
    from fleet_server.devices import list_devices
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
    mqtt_port: MqttPortOpt = 18830,
    database_url: DbUrlOpt = None,
) -> None:
    """Remove a device: revokes its key at once (kicking a live session), clears its retained state
    on the broker and purges its data (unless --keep-data)."""
    from fleet_server import audit
    from fleet_server.cli_devices import device_actions

    with device_actions(data_dir, mqtt_port, database_url, publisher=True) as actions:
        res = actions.delete(audit.cli_actor(), device_id, keep_data=keep_data)
    typer.echo(f"device {device_id} deleted" + (" (data kept)" if keep_data else "")
               + ("" if res.retained_cleared else "; its retained topics could not be cleared"))


# auth: the `admin` sub-app (imported last: cli_admin uses the option types defined above)
from fleet_server.cli_admin import admin_app  # noqa: E402

app.add_typer(admin_app, name="admin")
import fleet_server.cli_devices  # noqa: E402, F401  (devices: rotate-key, revoke, rename on device_app)
from fleet_server.cli_tls import tls_app  # noqa: E402

app.add_typer(tls_app, name="tls")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
