"""``clawfleet-server``: run the fleet server and manage devices."""

from __future__ import annotations

import errno
import logging
from pathlib import Path
from typing import Annotated

import typer

from fleet_server.cli.admin import admin_app
from fleet_server.cli.alerts import alerts_app
from fleet_server.cli.api_tokens import api_token_app
from fleet_server.cli.devices import device_app
from fleet_server.cli.ingest_worker import ingest
from fleet_server.cli.integrations import integration_app
from fleet_server.cli.options import (
    PLAIN_HELP,
    DataDirOpt,
    DbUrlOpt,
    MqttPortOpt,
    default_data_dir,
    fail,
    setup_logging,
)
from fleet_server.cli.releases import device_update, release_app
from fleet_server.cli.service import install_service, uninstall_service
from fleet_server.cli.tls import tls_app
from shared.ports import bind_error, why_not

app = typer.Typer(help="ClawFleet server: managed Mosquitto broker, ingest, storage and the dashboard.",
                  no_args_is_help=True, add_completion=False, **PLAIN_HELP)
app.add_typer(device_app, name="device")
app.add_typer(admin_app, name="admin")
app.add_typer(tls_app, name="tls")
app.command("install-service")(install_service)
app.command("uninstall-service")(uninstall_service)
app.add_typer(api_token_app, name="api-token")
app.add_typer(integration_app, name="integration")
app.add_typer(release_app, name="release")
device_app.command("update")(device_update)
app.command("ingest")(ingest)
app.add_typer(alerts_app, name="alerts")

log = logging.getLogger("clawfleet.server")


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
    local_agent_bridge_port: Annotated[int, typer.Option(help="local agent's bridge port on 127.0.0.1 (for the "
                                       "OpenClaw plugin); 0 = off")] = 17890,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="debug logging")] = False,
    secure_cookies: Annotated[bool, typer.Option(help="mark the session cookie Secure (sent over HTTPS only); "
                              "turn on when the dashboard is reached over HTTPS, directly or via a TLS proxy")] = False,
    https_certfile: Annotated[Path | None, typer.Option(help="serve the dashboard over HTTPS with this certificate "
                              "(PEM, full chain); turns on secure cookies")] = None,
    https_keyfile: Annotated[Path | None, typer.Option(help="private key (PEM) of --https-certfile")] = None,
    behind_proxy: Annotated[bool, typer.Option("--behind-proxy", help="a TLS-terminating reverse proxy (Caddy, "
                            "nginx) serves the dashboard over HTTPS; turns on secure cookies")] = False,
    trusted_proxy: Annotated[str | None, typer.Option("--trusted-proxy", help="with --behind-proxy: the proxy's "
                             "address(es), comma-separated IPs or networks; only their X-Forwarded-For/-Proto "
                             "headers are believed (default 127.0.0.1)")] = None,
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
    metrics: Annotated[bool, typer.Option("--metrics", help="serve Prometheus metrics at /metrics (needs an API "
                       "token as bearer: 'clawfleet-server api-token create prometheus')")] = False,
    broker_ca_file: Annotated[Path | None, typer.Option(help="CA (PEM) of an mqtts --broker-url; the server and "
                              "agents pin it (default: the system trust store)")] = None,
    retention: Annotated[list[str] | None, typer.Option("--retention", metavar="KIND=DURATION", help="keep a kind "
                         "of history this long (repeatable; e.g. raw=72h, 5m=30d, 1h=2y, status=1y, logs=30d, "
                         "usage=1y, runs=90d, usage_hourly=forever). Defaults: raw 48h, 5m 14d, 1h 400d, status "
                         "400d, logs 90d, usage records 400d, turns and tool calls (runs) 400d, hourly usage sums "
                         "forever")] = None,
    admin_password_file: Annotated[Path | None, typer.Option(help="on the first run, write the new 'admin' "
                                   "password to this file (mode 0600) instead of printing it")] = None,
    mqtt_wss_port: Annotated[int | None, typer.Option("--mqtt-wss-port", help="also serve MQTT over secure "
                             "WebSockets on this port (443 for agents behind firewalls that let only HTTPS out; "
                             "same certificate and accounts; needs 'tls init')")] = None,
    public_url: Annotated[str | None, typer.Option(help="this server's web address as devices reach it "
                          "(https://fleet.example.com): install one-liners, agent downloads and self-updates "
                          "use it (default: the dashboard's address when it is loopback or --public-host)")] = None,
    agent_packages: Annotated[list[Path] | None, typer.Option("--agent-packages", help="also offer the agent "
                              "packages in this folder (repeatable; besides <data dir>/agent-packages)")] = None,
    workers: Annotated[int, typer.Option("--workers", min=0, help="ingest processes: this one and N-1 more on a "
                       "shared subscription (needs --database-url a PostgreSQL URL); 0: no ingest here (dashboard "
                       "and jobs only)")] = 1,
    device_rate_limit: Annotated[list[str] | None, typer.Option("--device-rate-limit", metavar="CHANNEL=RATE/s[:BURST]",
                                 help="what each device may send per channel (repeatable): messages, e.g. "
                                 "telemetry=20/s:2000, or bytes for usage/logs, e.g. usage=2MiB/s:32MiB; 'off' turns "
                                 "the budgets off. Defaults: status and meta 1/s (burst 60), telemetry 10/s (1000), "
                                 "usage and logs 20/s (1000) and 512KiB/s (2 MiB). Over budget: rejected as "
                                 "rate_limited, sent again by the agent later")] = None,
) -> None:
    """Run the server: managed Mosquitto, ingest, dashboard (and a local agent). Ctrl-C stops all.

    TLS: after 'tls init' the broker also listens on --mqtt-tls-port and tokens use mqtts://<public host>.

    Dashboard: 127.0.0.1 by default; --host 0.0.0.0 needs --https-certfile/--https-keyfile or --behind-proxy.

    Broker settings (never the password) are saved in <data dir>/server.json for the device commands.
    """
    from nicegui import app as ng_app
    from nicegui import ui

    from broker.mosquitto import BrokerSetupError
    from fleet_server.auth.accounts import configure_session_storage, session_cookie_options, session_secret
    from fleet_server.cli.admin import first_run_admin
    from fleet_server.dashboard import register_pages
    from fleet_server.server import FleetServer, ServerOptions, ServerSetupError

    setup_logging(verbose)
    from broker.dynsec import DynSecConnectionError, DynSecError
    from fleet_server.cli.tls import (
        check_wss,
        dashboard_tls,
        external_broker,
        save_settings,
        server_public_url,
        startup_warnings,
    )
    from fleet_server.endpoints.tls import TlsError
    from fleet_server.ingest.limits import parse_budgets
    from fleet_server.store.history.retention import RetentionPolicy
    from fleet_server.store.migrations import SchemaTooNew

    busy = bind_error(host, port)  # before anything is written: no admin account, no password, no database
    if busy is not None:
        fail(f"the dashboard's port {port} on {host} {why_not(busy)} (another clawfleet-server or web server?): "
             "choose another with --port (e.g. --port 8081; ./scripts/run.sh passes options through), or stop "
             "what is using it")
    try:
        web = dashboard_tls(host, port, https_certfile, https_keyfile, behind_proxy, trusted_proxy)
        external = external_broker(broker_url, broker_admin_user, broker_admin_password_file, broker_ca_file)
        policy = RetentionPolicy.parse(retention or [])
        budgets = parse_budgets(device_rate_limit or [])
    except ValueError as exc:
        fail(str(exc))
    secure_cookies = secure_cookies or web.secure_cookies
    data = data_dir or default_data_dir()
    try:
        # behind a proxy the address devices use is the proxy's: only --public-url knows it
        public_url = (server_public_url(public_url, web.scheme, host, port, public_host)
                      if public_url or not behind_proxy else None)
        check_wss(data, mqtt_wss_port, external)
    except ValueError as exc:
        fail(str(exc))
    opts = ServerOptions(data_dir=data_dir or default_data_dir(), mqtt_port=mqtt_port, database_url=database_url,
                         local_agent=local_agent, local_agent_interval_s=local_agent_interval,
                         local_agent_bridge_port=local_agent_bridge_port, tls_port=mqtt_tls_port,
                         tls_host=mqtt_tls_bind, public_host=public_host, external_broker=external,
                         retention=policy, wss_port=mqtt_wss_port, public_url=public_url,
                         agent_packages=tuple(agent_packages or ()), workers=workers, device_budgets=budgets)
    for warning in web.warnings + startup_warnings(opts.data_dir, public_host, external):
        log.warning("%s", warning)
    server = FleetServer(opts)
    try:
        server.start()
    except (BrokerSetupError, DynSecConnectionError, DynSecError, TlsError, SchemaTooNew, ServerSetupError) as exc:
        fail(str(exc))
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        fail(f"no space left on the disk of {opts.data_dir} ({exc}): free some space and start again")
    try:
        save_settings(opts.data_dir, mqtt_port, mqtt_tls_port, public_host, external, broker_admin_password_file,
                      wss_port=mqtt_wss_port, public_url=public_url, agent_packages=agent_packages)
    except OSError as exc:  # e.g. a full disk: the device commands then use the settings saved before
        log.warning("could not save the broker settings for the device commands: %s", exc)
    try:
        first_run_admin(admin_password_file)  # auth: no user yet -> create 'admin', show its password once
    except typer.Exit:
        server.stop()
        raise
    configure_session_storage(opts.data_dir)  # auth: session files in <data dir>/sessions
    from fleet_server.releases.actions import ReleaseActions

    register_pages(server.state, devices=server.devices, health=server.health,  # devices: actions on /devices
                   dynsec=lambda: server.dynsec, broker_url=lambda: server.broker_url,  # integrations page
                   releases=ReleaseActions(server.catalog, server.publish_command),  # releases: "Update agent"
                   alerts=lambda: server.alerts, behind_proxy=behind_proxy)  # alerts page
    from fleet_server.releases.routes import install_release_routes

    install_release_routes(ng_app, server.catalog, lambda: public_url)  # releases: /install.sh, /agent/…
    if metrics:
        from fleet_server.api.metrics import install_metrics

        install_metrics(ng_app, server.state, lambda: server.ingest)  # api: /metrics behind an API token
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



def main() -> None:
    """Console-script entry point."""
    app()



if __name__ == "__main__":
    main()
