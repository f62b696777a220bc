"""Wiring of one server process: database, broker, ingest, local agent. The dashboard is added
by the CLI (``ui.run`` owns the main thread).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from peewee import Database, PostgresqlDatabase, SqliteDatabase

from broker.config import DEFAULT_TLS_PORT, BrokerAdmin
from broker.dynsec import DynSecClient
from broker.fdlimit import raise_nofile_limit
from broker.mosquitto import ManagedMosquitto
from fleet_server.devices.actions import DeviceActions
from fleet_server.devices.local_agent import LocalAgentProcess, ensure_local_device
from fleet_server.devices.reconcile import ReconcileSummary, reconcile, reconcile_roles
from fleet_server.endpoints.broker_link import AgentEndpoint, ExternalBroker, agent_endpoint, managed_broker_config
from fleet_server.ingest import BrokerAccount, Ingest
from fleet_server.ingest.change_feed import ChangeListener, ChangePublisher
from fleet_server.ingest.processes import WorkerProcesses, WorkerSpec
from fleet_server.jobs.alerts import AlertJobs
from fleet_server.jobs.leader import Leadership
from fleet_server.jobs.periodic import PeriodicJob
from fleet_server.jobs.runner import ServerJobs
from fleet_server.jobs.verdicts import verdict_job
from fleet_server.releases.catalog import Catalog
from fleet_server.releases.updates import Candidate, run_auto_updates
from fleet_server.state import FleetState
from fleet_server.state.registry import sync_registry
from fleet_server.store.db import open_database
from fleet_server.store.history.retention import DEFAULTS as RETENTION_DEFAULTS
from fleet_server.store.history.retention import RetentionPolicy

log = logging.getLogger("clawfleet.server")

AUTO_UPDATE_S = 60.0
"""How often the automatic agent updater looks for devices to update, seconds."""
SHARED_GROUP = "ingest"
"""Several ingest processes subscribe as ``$share/ingest/…``: the broker gives each message to one of them."""
REGISTRY_SYNC_S = 5.0
"""How often the server re-reads the devices table (device commands run by the CLI), seconds."""


@dataclass
class ServerOptions:
    """What ``clawfleet-server run`` was asked for. Ports are TCP ports, intervals seconds."""

    data_dir: Path
    mqtt_port: int = 18830
    database_url: str | None = None
    local_agent: bool = True
    local_agent_interval_s: float = 10.0
    local_agent_bridge_port: int = 17890
    """127.0.0.1 port of the local agent's bridge (for the OpenClaw plugin); 0 = off."""
    tls_port: int = DEFAULT_TLS_PORT
    """Managed broker's TLS listener port (opened when ``<data_dir>/tls/server.pem`` exists)."""
    tls_host: str | None = None
    """Bind address of the TLS listener; None = all interfaces (tests use 127.0.0.1)."""
    public_host: str | None = None
    """Host name put into enrollment tokens; default the certificate's first SAN."""
    external_broker: ExternalBroker | None = None
    """Use this broker instead of starting a managed Mosquitto."""
    retention: RetentionPolicy = RETENTION_DEFAULTS
    """How long each kind of history is kept (``--retention``)."""
    wss_port: int | None = None
    """Managed broker's MQTT-over-secure-WebSockets port (``--mqtt-wss-port``); None = off."""
    public_url: str | None = None
    """The server's web address as devices reach it (tokens, install one-liners, package downloads)."""
    agent_packages: tuple[Path, ...] = ()
    """Release folders with agent packages, besides ``<data_dir>/agent-packages``."""
    workers: int = 1
    """Ingest processes of this ``run`` (``--workers``): this one and ``workers - 1`` children on a
    shared subscription; 0 runs no ingest here (a dashboard and jobs process). Anything but 1 needs
    PostgreSQL."""
    worker_index: int | None = None
    """Set in a process started as ingest worker N (``clawfleet-server ingest --worker N``): ingest
    (and the jobs when it holds their lease) only; the broker is the one the main process runs."""

    alert_settle_s: float = 30.0
    """Seconds after the jobs start here before alert rules are evaluated (device states settle first)."""

    @property
    def several_processes(self) -> bool:
        """True when this process is one of several on one database (shared subscription, lease, change feed)."""
        return self.workers != 1 or self.worker_index is not None


@dataclass(frozen=True)
class ServerHealth:
    """What ``GET /healthz`` answers: ``ok``, a one-line ``reason`` when not, and ingest's liveness
    (:class:`fleet_server.ingest.IngestHealth` detail: connected, threads alive, queued messages,
    seconds since the last commit). Nothing about devices or accounts."""

    ok: bool
    reason: str = ""
    ingest: dict = field(default_factory=dict)

    def as_json(self) -> dict:
        """The JSON body: ``{"ok": bool, "reason"?: str, "ingest"?: {...}}`` (no ``ingest`` without one)."""
        body: dict = {"ok": self.ok}
        if self.ingest:
            body["ingest"] = self.ingest
        if self.reason:
            body["reason"] = self.reason
        return body


class ServerSetupError(RuntimeError):
    """Options that cannot work together; the message names the option and the fix."""


class FleetServer:
    """Starts and stops the server's parts in order: DB → broker → dynsec → ingest → local agent.

    Several processes on one PostgreSQL (``ServerOptions.workers`` / ``worker_index``): ingest
    subscribes as ``$share/ingest/…`` with client id ``clawfleet-ingest-<n>``, each batch's cache
    change goes to the other processes through the database (:mod:`fleet_server.ingest.change_feed`),
    and the background jobs run in whichever process holds their lease (:mod:`fleet_server.jobs.leader`).
    """

    def __init__(self, opts: ServerOptions) -> None:
        self.opts = opts
        self.state = FleetState()
        self.database: Database | None = None
        self.broker: ManagedMosquitto | None = None
        self.dynsec: DynSecClient | None = None
        self.ingest: Ingest | None = None
        self.agent: LocalAgentProcess | None = None
        self._endpoint: AgentEndpoint | None = None
        self.devices: DeviceActions | None = None  # device actions for the dashboard (after start)
        self.reconciled: ReconcileSummary | None = None  # what the start-up reconciliation did
        self._sync_stop = threading.Event()
        self._sync_thread: threading.Thread | None = None
        self.jobs: ServerJobs | None = None  # rollups, retention, stale devices
        self.catalog = Catalog(opts.data_dir, opts.agent_packages)  # agent packages served under /agent/
        self.auto_updates: PeriodicJob | None = None  # releases: automatic agent updates
        self.alerts: AlertJobs | None = None  # alert rules, incidents, notifications (with the jobs' lease)
        self.verdicts: PeriodicJob | None = None  # retained …/availability per device (with the jobs' lease)
        self.leadership: Leadership | None = None  # who runs the jobs (a database lease with several processes)
        self.listener: ChangeListener | None = None  # other processes' changes (several processes)
        self.workers: WorkerProcesses | None = None  # this run's extra ingest processes

    @property
    def endpoint(self) -> AgentEndpoint:
        """What enrollment tokens carry (see :func:`fleet_server.endpoints.broker_link.agent_endpoint`)."""
        if self._endpoint is None:
            o = self.opts
            self._endpoint = agent_endpoint(o.data_dir, mqtt_port=o.mqtt_port, tls_port=o.tls_port,
                                            public_host=o.public_host, external=o.external_broker,
                                            wss_port=o.wss_port, fleet_url=o.public_url)
        return self._endpoint

    @property
    def broker_url(self) -> str:
        """URL agents use to reach the broker: ``mqtts://<public host>:<tls port>`` when the
        server has a TLS certificate, the external broker's URL, else the loopback listener."""
        return self.endpoint.url

    @property
    def ca_pem(self) -> str | None:
        """CA certificate agents pin (None: plain loopback, or the system trust store)."""
        return self.endpoint.ca_pem

    def start(self) -> None:
        """Start everything; on failure, stop what was started and re-raise."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        opts = self.opts
        raise_nofile_limit()  # soft -> hard, for the dashboard's sockets and, inherited, the managed broker
        self.database = open_database(opts.data_dir, opts.database_url)
        several = opts.several_processes
        if several and isinstance(self.database, SqliteDatabase):
            raise ServerSetupError("several ingest processes (--workers other than 1, or 'clawfleet-server ingest') "
                                   "need PostgreSQL: add --database-url postgresql://user@host/db")
        self.catalog.key  # noqa: B018 - the package-signing key exists before any token is made
        ext = opts.external_broker
        worker = opts.worker_index
        if ext is not None:
            account = BrokerAccount(ext.host, ext.port, ext.username, ext.password, ext.ssl_context())
            log.info("using the external broker %s as %s", ext.url, ext.username)
        elif worker is not None:  # the main process's managed broker, on this host
            admin = BrokerAdmin.load(managed_broker_config(opts.data_dir, opts.mqtt_port).admin_path)
            account = BrokerAccount("127.0.0.1", opts.mqtt_port, admin.username, admin.password)
        else:  # managed: the server's own connections stay on loopback plain MQTT
            self.broker = ManagedMosquitto(managed_broker_config(opts.data_dir, opts.mqtt_port, opts.tls_port,
                                                                 opts.tls_host, opts.wss_port))
            self.broker.start()
            admin = self.broker.admin
            account = BrokerAccount("127.0.0.1", opts.mqtt_port, admin.username, admin.password)
            log.info("managed Mosquitto listening on %s%s%s", self.broker.url, f", TLS on port {opts.tls_port} "
                     f"({opts.tls_host or 'all interfaces'})" if self.broker.cfg.tls_enabled else "",
                     f", MQTT over secure WebSockets on port {opts.wss_port}" if self.broker.cfg.wss_port else "")
        if worker is None:
            self.dynsec = DynSecClient(account.host, account.port, account.username, account.password,
                                       tls=account.tls, client_id="clawfleet-dynsec")
            self.dynsec.ensure_server_role()
            self.reconciled = reconcile(self.dynsec)  # broker clients follow the devices table
            threading.Thread(target=self._reconcile_roles, name="clawfleet-reconcile-roles", daemon=True).start()
        self.state.load_from_db()
        self.jobs = ServerJobs(self.database, self.state, opts.retention, broker_connected=self._broker_connected)
        self.auto_updates = PeriodicJob("agent-updates", AUTO_UPDATE_S, lambda: run_auto_updates(
            self.update_candidates, lambda: self.catalog.manifest().offered_version, self.publish_command),
            self.database)  # releases: runs with the other jobs, in the process that holds their lease
        self.alerts = AlertJobs(self.database, self.state, opts.data_dir, self._ingest_health, opts.alert_settle_s)
        self.verdicts = verdict_job(self.state, self._verdict_client, self.database)
        self.leadership = Leadership(self.database, self._gain_jobs, self._lose_jobs)
        publish = None
        if several:
            assert isinstance(self.database, PostgresqlDatabase)
            self.listener = ChangeListener(self.database, self.state, self.leadership.holder)
            self.listener.start()
            publish = ChangePublisher(self.database, self.leadership.holder).publish
        self.leadership.start()  # the leader's first stale check runs before ingest: silent devices are offline
        if worker is not None or opts.workers >= 1:
            index = worker or 0
            self.ingest = Ingest(self.database, account, self.state,
                                 client_id=f"clawfleet-ingest-{index}" if several else "clawfleet-ingest",
                                 shared_group=SHARED_GROUP if several else None, publish=publish)
            self.ingest.start()
        self._sync_stop.clear()  # devices added, revoked or deleted by another process or the CLI
        self._sync_thread = threading.Thread(target=self._sync_loop, name="clawfleet-registry-sync", daemon=True)
        self._sync_thread.start()
        if worker is not None:
            return
        if opts.workers > 1:
            assert opts.database_url is not None
            self.workers = WorkerProcesses(WorkerSpec(opts.data_dir, opts.mqtt_port, opts.database_url, ext),
                                           opts.workers - 1)
            self.workers.start()
        assert self.dynsec is not None
        self.devices = DeviceActions(self.dynsec, lambda: self.endpoint, self.state, self.ingest,
                                     self.ingest.client if self.ingest is not None else None)
        if opts.local_agent:
            local = self.endpoint if ext is not None else AgentEndpoint(f"mqtt://127.0.0.1:{opts.mqtt_port}")
            cfg_path = ensure_local_device(self.dynsec, opts.data_dir, local.url, opts.local_agent_interval_s,
                                           ca_pem=local.ca_pem, bridge_port=opts.local_agent_bridge_port)
            self.sync_registry()  # the local device, if it was just added (never a reload under running ingest)
            self.agent = LocalAgentProcess(cfg_path)
            self.agent.start()

    def publish_command(self, topic: str, payload: bytes) -> bool:
        """Publish a command (QoS 1) through ingest's broker session; False when it could not be queued."""
        if self.ingest is None:
            return False
        info = self.ingest.client.publish(topic, payload, qos=1)
        return info.rc == 0

    def update_candidates(self) -> list[Candidate]:
        """Every device as the automatic updater sees it (online?, agent version from its meta)."""
        return [Candidate(v.device_id, v.tags, v.status == "online" and not v.revoked_ms,
                          v.meta.agent_version if v.meta else None) for v in self.state.snapshot()]

    def _gain_jobs(self) -> None:
        assert self.jobs is not None
        self.jobs.check_stale_now()
        self.jobs.start()
        if self.auto_updates is not None:
            self.auto_updates.start()
        if self.alerts is not None:  # one process evaluates alerts and sends notifications: the lease holder
            self.alerts.start()
        if self.verdicts is not None:
            self.verdicts.start()

    def _lose_jobs(self) -> None:
        if self.alerts is not None:
            self.alerts.stop()
        if self.verdicts is not None:
            self.verdicts.stop()
        if self.jobs is not None:
            self.jobs.stop()
        if self.auto_updates is not None:
            self.auto_updates.stop()

    def _reconcile_roles(self) -> None:
        """Bring older device and integration roles to this version's ACLs (in the background: on an
        external broker each change is one save of its dynsec file)."""
        try:
            if self.dynsec is not None and self.database is not None:
                with self.database.connection_context():
                    reconcile_roles(self.dynsec)
        except Exception as exc:  # the server works without it; the next start tries again
            log.warning("could not check the broker roles' ACLs: %s", exc)

    def _verdict_client(self) -> tuple[object | None, bool]:
        """Ingest's MQTT client for the verdicts (None in a process without ingest)."""
        ingest = self.ingest
        return (ingest.client, ingest.connected.is_set()) if ingest is not None else (None, False)

    def _ingest_health(self) -> tuple[bool, float | None, bool, str] | None:
        """``(connected to the broker, disconnected since (monotonic s) or None, healthy, reason)`` of
        this process's ingest, for the server alert rules; None when this process runs no ingest."""
        if self.ingest is None:
            return None
        h = self.ingest.health()
        return self.ingest.connected.is_set(), self.ingest.subscriber.disconnected_since, h.ok, h.reason

    def _broker_connected(self) -> bool:
        """For the stale check: ingest's broker connection; a process without ingest (``--workers 0``)
        hears devices through the other processes, so it never holds the check back."""
        if self.ingest is None:
            return self.opts.workers == 0 and self.opts.worker_index is None
        return self.ingest.connected.is_set()

    def health(self) -> ServerHealth:
        """Liveness for ``/healthz``: not ok when ingest is not running, has lost its network thread
        or writer, has been without a broker connection for a while, or is stuck on a batch."""
        if self.ingest is None:
            if self.opts.workers == 0 and self.database is not None:  # a dashboard and jobs process
                return ServerHealth(True, "", {"in_this_process": False})
            return ServerHealth(False, "ingest is not running")
        h = self.ingest.health()
        return ServerHealth(h.ok, h.reason, h.detail)

    def sync_registry(self) -> list[str]:
        """Apply device changes made outside this process (the CLI) to the cache and ingest: one
        SELECT of the devices table (:func:`fleet_server.state.registry.sync_registry`). Returns the changed ids."""
        changed = sync_registry(self.state)
        if self.ingest is not None:
            for device_id in changed:
                self.ingest.forget_device(device_id)
        if changed:
            log.info("device registry changed outside the dashboard: %s", ", ".join(changed[:20]))
        return changed

    def _sync_loop(self) -> None:
        assert self.database is not None
        with self.database.connection_context():
            while not self._sync_stop.wait(REGISTRY_SYNC_S):
                try:
                    self.sync_registry()
                except Exception:  # the database may be briefly unavailable; try again next round
                    log.exception("device registry sync failed")

    def stop(self) -> None:
        """Stop in reverse order; safe to call twice and after a partial start."""
        self._sync_stop.set()
        if self.auto_updates is not None:
            self.auto_updates.stop()
            self.auto_updates = None
        if self.workers is not None:
            self.workers.stop()
            self.workers = None
        if self.leadership is not None:
            self.leadership.stop()  # stops the jobs when this process ran them, and gives the lease up
            self.leadership = None
        if self.alerts is not None:
            self.alerts.stop()
            self.alerts = None
        if self.verdicts is not None:
            self.verdicts.stop()
            self.verdicts = None
        if self.jobs is not None:
            self.jobs.stop()
            self.jobs = None
        if self.listener is not None:
            self.listener.stop()
            self.listener = None
        if self._sync_thread is not None:
            self._sync_thread.join(timeout=5)
            self._sync_thread = None
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
