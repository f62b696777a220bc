"""Wiring of one server process: database, broker, ingest, local agent. The dashboard is added
by the CLI (``ui.run`` owns the main thread).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from peewee import Database

from broker.dynsec import DynSecClient
from broker.mosquitto import BrokerConfig, ManagedMosquitto
from fleet_server.ingest import BrokerAccount, Ingest
from fleet_server.local_agent import LocalAgentProcess, ensure_local_device
from fleet_server.state import FleetState
from fleet_server.store.db import open_database

log = logging.getLogger("clawfleet.server")


@dataclass
class ServerOptions:
    """What ``clawfleet-server run`` was asked for. Ports are TCP ports, intervals seconds."""

    data_dir: Path
    mqtt_port: int = 18830
    database_url: str | None = None
    local_agent: bool = True
    local_agent_interval_s: float = 10.0


class FleetServer:
    """Starts and stops the server's parts in order: DB → broker → dynsec → ingest → local agent."""

    def __init__(self, opts: ServerOptions) -> None:
        self.opts = opts
        self.state = FleetState()
        self.database: Database | None = None
        self.broker: ManagedMosquitto | None = None
        self.dynsec: DynSecClient | None = None
        self.ingest: Ingest | None = None
        self.agent: LocalAgentProcess | None = None

    @property
    def broker_url(self) -> str:
        """URL agents use to reach the broker (loopback for the managed broker)."""
        return f"mqtt://127.0.0.1:{self.opts.mqtt_port}"

    def start(self) -> None:
        """Start everything; on failure, stop what was started and re-raise."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        opts = self.opts
        self.database = open_database(opts.data_dir, opts.database_url)
        self.broker = ManagedMosquitto(BrokerConfig(data_dir=opts.data_dir, port=opts.mqtt_port))
        self.broker.start()
        admin = self.broker.admin
        log.info("managed Mosquitto listening on %s", self.broker.url)
        self.dynsec = DynSecClient("127.0.0.1", opts.mqtt_port, admin.username, admin.password,
                                   client_id="clawfleet-dynsec")
        self.dynsec.ensure_server_role()
        self.state.load_from_db()
        self.ingest = Ingest(self.database, BrokerAccount("127.0.0.1", opts.mqtt_port, admin.username,
                                                          admin.password), self.state)
        self.ingest.start()
        if opts.local_agent:
            cfg_path = ensure_local_device(self.dynsec, opts.data_dir, self.broker_url, opts.local_agent_interval_s)
            self.state.load_from_db()
            self.agent = LocalAgentProcess(cfg_path)
            self.agent.start()

    def stop(self) -> None:
        """Stop in reverse order; safe to call twice and after a partial start."""
        if self.agent:
            self.agent.stop()
            self.agent = None
        if self.ingest:
            self.ingest.stop()
            self.ingest = None
        if self.dynsec:
            self.dynsec.close()
            self.dynsec = None
        if self.broker:
            self.broker.stop()
            self.broker = None
        if self.database and not self.database.is_closed():
            self.database.close()
        log.info("server stopped")
