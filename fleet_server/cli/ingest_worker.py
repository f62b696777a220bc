"""``clawfleet-server ingest --worker N``: one more ingest process on a shared subscription against
PostgreSQL (started by ``run --workers N`` on this host, or by hand / a service on another host).

It stores what the broker gives it, sends each batch's changes to the other processes through the
database, and runs the background jobs while it holds their lease. No dashboard, no broker of its
own: on the main process's host it reads the managed broker's admin account from the data dir;
elsewhere give ``--broker-url`` and the admin account like ``run``.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from fleet_server.cli.options import DataDirOpt, DbUrlOpt, MqttPortOpt, default_data_dir, fail, setup_logging


def ingest(
    worker: Annotated[int, typer.Option("--worker", min=1, help="this worker's number (1, 2, …; 0 is the "
                      "'run' process): its MQTT client id is clawfleet-ingest-<N>, unique per broker")],
    data_dir: DataDirOpt = None,
    mqtt_port: MqttPortOpt = 18830,
    database_url: DbUrlOpt = None,
    broker_url: Annotated[str | None, typer.Option(help="the broker, when it is not the managed one of this "
                          "host's 'run' (mqtts://host:8883)")] = None,
    broker_admin_user: Annotated[str | None, typer.Option(help="dynamic-security admin account on "
                                 "--broker-url")] = None,
    broker_admin_password_file: Annotated[Path | None, typer.Option(help="file whose first line is that account's "
                                          "password (or set $CLAWFLEET_BROKER_ADMIN_PASSWORD)")] = None,
    broker_ca_file: Annotated[Path | None, typer.Option(help="CA (PEM) of an mqtts --broker-url")] = None,
    retention: Annotated[list[str] | None, typer.Option("--retention", metavar="KIND=DURATION", help="as for "
                         "'run' (used while this worker runs the background jobs)")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="debug logging")] = False,
) -> None:
    """Run one more ingest worker against PostgreSQL (see 'run --workers'). SIGTERM or Ctrl-C stops it."""
    from broker.dynsec import DynSecConnectionError, DynSecError
    from fleet_server.cli.tls import external_broker
    from fleet_server.server import FleetServer, ServerOptions, ServerSetupError
    from fleet_server.store.history.retention import RetentionPolicy
    from fleet_server.store.migrations import SchemaTooNew

    setup_logging(verbose)
    if not database_url or not database_url.startswith("postgres"):
        fail("an ingest worker needs PostgreSQL: --database-url postgresql://user@host/db (or "
             "$CLAWFLEET_DATABASE_URL)")
    try:
        external = external_broker(broker_url, broker_admin_user, broker_admin_password_file, broker_ca_file)
        policy = RetentionPolicy.parse(retention or [])
    except ValueError as exc:
        fail(str(exc))
    server = FleetServer(ServerOptions(data_dir=data_dir or default_data_dir(), mqtt_port=mqtt_port,
                                       database_url=database_url, local_agent=False, external_broker=external,
                                       retention=policy, worker_index=worker))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        server.start()
    except (FileNotFoundError, DynSecConnectionError, DynSecError, SchemaTooNew, ServerSetupError) as exc:
        fail(str(exc))
    try:
        stop.wait()
    finally:
        server.stop()
