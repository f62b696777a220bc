"""The managed Mosquitto: find it, configure it, run and supervise it.

``ManagedMosquitto(BrokerConfig(data_dir=...)).start()`` writes ``<data_dir>/mosquitto/``
(config, dynsec file with the server's admin account), starts ``mosquitto``, waits until its
port accepts connections and restarts it if it dies. Its output goes to the logger
``clawfleet.broker``, one record per line.

Shutdown: :meth:`ManagedMosquitto.stop`, also registered with :mod:`atexit`. On POSIX the broker
runs in its own session, so Ctrl-C in a terminal reaches only the server, which stops its parts
in order (agents publish their final status while the broker is still up, then the broker
saves and exits). Should the broker die anyway, the supervisor waits a grace period for the
parent to stop before it restarts it. A broker orphaned by a parent killed with SIGKILL is found
through ``mosquitto.pid`` and stopped on the next start.
"""

from __future__ import annotations

import atexit
import collections
import json
import logging
import os
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import IO

import psutil

from broker.config import (
    DEFAULT_MQTT_PORT,
    DEFAULT_TLS_PORT,
    PORT_FLAG,
    TLS_PORT_FLAG,
    BrokerAdmin,
    BrokerConfig,
    prepare_dynsec_file,
    render_config,
)
from broker.dynsec import DynSecClient
from broker.fdlimit import raise_nofile_limit
from broker.install import BrokerSetupError, MosquittoInstall, find_mosquitto, install_command
from broker.overload import dropping_client
from shared.ports import bind_error, why_not
from shared.private_files import write_private

__all__ = [
    "DEFAULT_MQTT_PORT", "DEFAULT_TLS_PORT", "PORT_FLAG", "TLS_PORT_FLAG", "BrokerAdmin", "BrokerConfig",
    "BrokerSetupError", "ManagedMosquitto", "MosquittoInstall", "find_mosquitto", "install_command",
    "render_config",
]

log = logging.getLogger("clawfleet.broker")

FAST_CRASH_S = 10.0
"""A broker that dies within this many seconds of starting counts as a fast crash."""
_STOP_TIMEOUT_S = 5.0
_LISTEN_RE = re.compile(r"listen socket on port (\d+)")
_SIGNAL_EXITS = {0, -signal.SIGINT, -signal.SIGTERM}  # asked to stop: Ctrl-C on the terminal, `kill`


_CHATTER = ("New connection from", "New client connected", "Client ", "Socket error on client", "dynsec: ",
            "Saving in-memory database")
"""Per-connection and per-command lines: DEBUG, or a fleet of thousands would flood the server log."""


def _holds(path: Path, text: str) -> bool:
    """True when the file at ``path`` exists with exactly ``text`` and is private (0600)."""
    try:
        return path.stat().st_mode & 0o077 == 0 and path.read_text(encoding="utf-8") == text
    except (OSError, UnicodeDecodeError):
        return False


def _level(line: str) -> int:
    if line.startswith("Error"):
        return logging.ERROR
    if line.startswith("Warning") or dropping_client(line):
        return logging.WARNING
    if line.startswith(_CHATTER):
        return logging.DEBUG
    return logging.INFO


class ManagedMosquitto:
    """A supervised ``mosquitto`` child process for ``cfg``.

    Args:
        cfg: where and how to run it.
        install: the Mosquitto to use; found with :func:`find_mosquitto` at start when None.
        max_fast_crashes: consecutive fast crashes (see :data:`FAST_CRASH_S`) after which the
            supervisor gives up (logged at CRITICAL; :attr:`failed` becomes True).
        restart_backoff_s: first restart delay in seconds, doubled per fast crash (max 30 s).
        signal_grace_s: how long the supervisor waits for :meth:`stop` before restarting a broker
            that exited cleanly on a signal nobody here sent (e.g. Ctrl-C on the terminal).
    """

    def __init__(self, cfg: BrokerConfig, install: MosquittoInstall | None = None, *, max_fast_crashes: int = 5,
                 restart_backoff_s: float = 0.5, signal_grace_s: float = 3.0) -> None:
        self.cfg = cfg
        self.install = install
        self.max_fast_crashes = max_fast_crashes
        self.restart_backoff_s = restart_backoff_s
        self.signal_grace_s = signal_grace_s
        self._admin: BrokerAdmin | None = None
        self._lock = threading.RLock()  # start/stop/launch
        self._stop_event = threading.Event()
        self._ready = threading.Event()
        self._running = threading.Event()  # set when mosquitto logs "... running" (all listeners open)
        self._proc: subprocess.Popen[str] | None = None
        self._started_at = 0.0
        self._readers: list[threading.Thread] = []
        self._tail: collections.deque[str] = collections.deque(maxlen=20)
        self._supervisor: threading.Thread | None = None
        self._failed = False
        self._restarts = 0

    # properties
    @property
    def url(self) -> str:
        """``mqtt://<host>:<port>`` of the loopback listener."""
        return f"mqtt://{self.cfg.host}:{self.cfg.port}"

    @property
    def admin(self) -> BrokerAdmin:
        """The server's admin account; read from ``admin.json`` when this instance did not start
        the broker. Raises BrokerSetupError when it was never created."""
        if self._admin is None:
            self._admin = BrokerAdmin.load(self.cfg.admin_path)
        return self._admin

    @property
    def pid(self) -> int | None:
        """Pid of the current broker process, None when none is running."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    @property
    def failed(self) -> bool:
        """True when the supervisor gave up restarting the broker."""
        return self._failed

    @property
    def restart_count(self) -> int:
        """How many times the supervisor restarted the broker."""
        return self._restarts

    def wait_ready(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s until a broker process is up and accepting connections."""
        return self._ready.wait(timeout) and not self._failed

    def admin_client(self, timeout: float = 5.0, client_id: str | None = None) -> DynSecClient:
        """A :class:`DynSecClient` connected to this broker as the admin account."""
        admin = self.admin
        return DynSecClient(self.cfg.host, self.cfg.port, admin.username, admin.password, client_id=client_id,
                            connect_timeout=timeout)

    # lifecycle
    def start(self, timeout: float = 10.0) -> None:
        """Write the config, start the broker, wait (``timeout`` s) until it accepts TCP
        connections, then supervise it. Returns at once when already running.

        Raises:
            BrokerSetupError: Mosquitto missing or too old (names the install command), the port
                is taken (names the port and :data:`PORT_FLAG`), or it exited / did not open its
                port in time (with its last output lines).
        """
        with self._lock:
            if self.pid is not None:
                return
            if self._supervisor is not None and self._supervisor.is_alive() and not self._stop_event.is_set():
                if not self.wait_ready(timeout):  # between a crash and its restart
                    raise BrokerSetupError(f"mosquitto is being restarted and not ready within {timeout} s")
                return
            self._stop_event.clear()
            self._failed = False
            install = self.install = self.install or find_mosquitto()
            self.cfg.broker_dir.mkdir(parents=True, exist_ok=True)
            if os.name == "posix":
                os.chmod(self.cfg.broker_dir, 0o700)
            self._admin = BrokerAdmin.load_or_create(self.cfg.admin_path)
            if prepare_dynsec_file(self.cfg.dynsec_path, self._admin):
                log.info("dynamic-security file %s prepared for %s", self.cfg.dynsec_path, self._admin.username)
            nofile = raise_nofile_limit()  # the broker inherits it: one descriptor per connection
            conf = render_config(self.cfg, install, nofile.soft)
            if not _holds(self.cfg.conf_path, conf):  # unchanged: no write (a full disk does not stop a restart)
                write_private(self.cfg.conf_path, conf)
            self._reclaim_orphan()
            self._launch(timeout)
            atexit.register(self.stop)
            self._supervisor = threading.Thread(target=self._supervise, name="clawfleet-broker-supervisor",
                                                daemon=True)
            self._supervisor.start()
        log.info("mosquitto %s listening on %s (pid %s)", install.version, self.url, self.pid)

    def stop(self, timeout: float = _STOP_TIMEOUT_S) -> None:
        """SIGTERM the broker (it saves its persistence file), SIGKILL it after ``timeout`` s,
        and join the helper threads. Idempotent; safe before :meth:`start`."""
        self._stop_event.set()
        with self._lock:
            proc = self._proc
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    log.warning("mosquitto (pid %d) did not stop within %.0f s; killing it", proc.pid, timeout)
                    proc.kill()
                    proc.wait()
                log.info("mosquitto (pid %d) stopped", proc.pid)
            self._ready.clear()
            self._remove_pid_file(proc)
        for t in [self._supervisor, *self._readers]:
            if t is not None and t is not threading.current_thread():
                t.join(timeout)
        atexit.unregister(self.stop)

    def __enter__(self) -> ManagedMosquitto:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # internals
    def _check_port(self, host: str, port: int, flag: str) -> None:
        exc = bind_error(host, port)
        if exc is not None:
            raise BrokerSetupError(self._port_message(host, port, flag, exc))

    def _port_message(self, host: str, port: int, flag: str, exc: OSError | None = None) -> str:
        why = why_not(exc) if exc is not None else "is already in use"
        return (f"port {port} on {host or 'all interfaces'} {why}, so the managed Mosquitto cannot listen there "
                f"(a distribution's own mosquitto service usually holds 1883; ClawFleet's default is "
                f"{DEFAULT_MQTT_PORT}). Choose another port with {flag} or stop what is using it.")

    def _launch(self, timeout: float) -> None:
        """Start one broker process and wait until it accepts connections (lock held)."""
        cfg = self.cfg
        self._check_port(cfg.host, cfg.port, PORT_FLAG)
        if cfg.tls_enabled and cfg.tls_port is not None:
            self._check_port(cfg.tls_host or "0.0.0.0", cfg.tls_port, TLS_PORT_FLAG)  # noqa: S104
        assert self.install is not None
        self._tail.clear()
        self._running.clear()
        kwargs: dict = {"umask": 0o077, "start_new_session": True} if os.name == "posix" else {}
        proc = subprocess.Popen([str(self.install.binary), "-c", str(cfg.conf_path)], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace",
                                bufsize=1, **kwargs)
        self._proc, self._started_at = proc, time.monotonic()
        self._readers = [t for t in self._readers if t.is_alive()]
        for stream in (proc.stdout, proc.stderr):
            t = threading.Thread(target=self._pump, args=(stream,), name=f"clawfleet-broker-log-{proc.pid}",
                                 daemon=True)
            t.start()
            self._readers.append(t)
        try:
            write_private(cfg.pid_path, json.dumps({"pid": proc.pid, "parent_pid": os.getpid(),
                                                    "conf": str(cfg.conf_path)}) + "\n")
        except OSError as exc:  # e.g. a full disk: the broker runs; only an orphan could not be found later
            log.warning("could not write %s (%s): a broker left behind by a killed server will not be found "
                        "at the next start", cfg.pid_path, exc)
        try:
            self._wait_listening(proc, timeout)
        except BrokerSetupError:
            self._remove_pid_file(proc)
            raise
        self._ready.set()

    def _wait_listening(self, proc: subprocess.Popen[str], timeout: float) -> None:
        """Wait until every listener accepts connections: mosquitto opens them one by one and may
        still exit on a later one (e.g. a TLS listener with a bad certificate)."""
        deadline = time.monotonic() + timeout
        listeners = [(self.cfg.host, self.cfg.port)]
        if self.cfg.tls_enabled and self.cfg.tls_port is not None:
            tls_host = self.cfg.tls_host if self.cfg.tls_host not in (None, "", "0.0.0.0", "::") else "127.0.0.1"  # noqa: S104
            listeners.append((tls_host, self.cfg.tls_port))
        while True:
            if proc.poll() is not None:
                self._join_readers(proc)
                raise BrokerSetupError(self._exit_message(proc.returncode))
            if self._stop_event.is_set() or time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise BrokerSetupError(f"mosquitto did not open port {self.cfg.port} within {timeout} s; last "
                                       "output: " + " | ".join(self._tail))
            if not self._running.wait(0.02):
                continue
            try:
                for address in listeners:
                    with socket.create_connection(address, timeout=0.5):
                        pass
                return
            except OSError:
                time.sleep(0.02)

    def _exit_message(self, rc: int) -> str:
        tail = list(self._tail)
        if any("Address already in use" in line for line in tail):
            ports = [int(m.group(1)) for line in tail if (m := _LISTEN_RE.search(line))]
            port = ports[-1] if ports else self.cfg.port
            tls = port == self.cfg.tls_port and port != self.cfg.port
            host = (self.cfg.tls_host or "") if tls else self.cfg.host
            return self._port_message(host, port, TLS_PORT_FLAG if tls else PORT_FLAG)
        return (f"mosquitto exited with code {rc} while starting (config {self.cfg.conf_path}); its last output:\n  "
                + "\n  ".join(tail[-10:] or ["(none)"]))

    def _pump(self, stream: IO[str]) -> None:
        for raw in stream:
            line = raw.rstrip()
            if line:
                self._tail.append(line)
                if line.endswith(" running") and "mosquitto version" in line:
                    self._running.set()  # printed once every listener is open
                client = dropping_client(line)
                if client is not None:  # once per connection of that client, however many follow
                    line += (f" Its queue of {self.cfg.max_queued_messages:,} messages is full: the broker drops "
                             f"what it acknowledged for {client} (ClawFleet agents send again what the server "
                             "did not confirm); see clawfleet_broker_dropped_messages_total")
                log.log(_level(line), "%s", line)
        stream.close()

    def _join_readers(self, proc: subprocess.Popen[str]) -> None:
        for t in self._readers:
            if t.name.endswith(f"-{proc.pid}"):
                t.join(2.0)

    def _supervise(self) -> None:
        fast = 0
        while True:
            proc = self._proc
            assert proc is not None
            rc = proc.wait()
            self._ready.clear()
            if self._stop_event.is_set():
                return
            uptime = time.monotonic() - self._started_at
            self._join_readers(proc)
            clean = rc in _SIGNAL_EXITS
            if clean:
                delay = self.signal_grace_s
                log.warning("mosquitto (pid %d) was stopped by a signal not sent by ClawFleet (exit code %s; e.g. "
                            "Ctrl-C on the terminal); restarting it in %.1f s unless the server is stopping",
                            proc.pid, rc, delay)
            else:
                fast = fast + 1 if uptime < FAST_CRASH_S else 1
                delay = min(self.restart_backoff_s * 2 ** (fast - 1), 30.0)
                log.error("mosquitto (pid %d) died with code %s after %.1f s; last output: %s", proc.pid, rc, uptime,
                          " | ".join(list(self._tail)[-5:]) or "(none)")
            while True:
                if fast >= self.max_fast_crashes:
                    self._failed = True
                    log.critical("mosquitto crashed %d times in a row within %.0f s of starting; giving up. "
                                 "The broker is DOWN: devices cannot report until the server is restarted. "
                                 "See the errors above.", fast, FAST_CRASH_S)
                    return
                if not clean:
                    log.warning("restarting mosquitto in %.1f s (fast crash %d of %d)", delay, fast,
                                self.max_fast_crashes)
                if self._stop_event.wait(delay):
                    return
                try:
                    with self._lock:
                        if self._stop_event.is_set():
                            return
                        self._launch(10.0)
                except BrokerSetupError as exc:
                    if self._stop_event.is_set():
                        return
                    fast, clean = fast + 1, False
                    delay = min(self.restart_backoff_s * 2 ** (fast - 1), 30.0)
                    log.error("restarting mosquitto failed: %s", exc)
                    continue
                self._restarts += 1
                log.info("mosquitto restarted (pid %s)", self.pid)
                break

    def _remove_pid_file(self, proc: subprocess.Popen[str] | None) -> None:
        try:
            if proc is not None and json.loads(self.cfg.pid_path.read_text()).get("pid") == proc.pid:
                self.cfg.pid_path.unlink()
        except (OSError, ValueError):
            pass

    def _reclaim_orphan(self) -> None:
        """Stop a broker left running for this data dir by a parent that died without cleanup."""
        path = self.cfg.pid_path
        try:
            info = json.loads(path.read_text())
            pid, parent = int(info["pid"]), int(info["parent_pid"])
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError):
            path.unlink(missing_ok=True)
            return
        try:
            proc = psutil.Process(pid)
            ours = str(self.cfg.conf_path) in proc.cmdline()
            owner_alive = proc.ppid() == parent and psutil.pid_exists(parent)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            ours = False
        if not ours:  # gone, or the pid now belongs to something else
            path.unlink(missing_ok=True)
            return
        if owner_alive:
            raise BrokerSetupError(f"a managed Mosquitto for {self.cfg.data_dir} is already running (pid {pid}, "
                                   f"started by pid {parent}); stop that server first or use another data dir")
        log.warning("stopping mosquitto pid %d, orphaned by a previous run (its parent pid %d is gone)", pid, parent)
        for sig in (proc.terminate, proc.kill):
            sig()
            deadline = time.monotonic() + _STOP_TIMEOUT_S
            while not _gone(proc) and time.monotonic() < deadline:
                time.sleep(0.02)
            if _gone(proc):
                break
        else:
            raise BrokerSetupError(f"could not stop the orphaned mosquitto pid {pid}; kill it and start again")
        path.unlink(missing_ok=True)


def _gone(proc: psutil.Process) -> bool:
    """Exited (a zombie counts: not ours to reap, and it holds no port)."""
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
