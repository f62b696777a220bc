"""Managed-broker configuration: ``mosquitto.conf`` rendering, the admin account, the dynsec file.

Files under ``<data_dir>/mosquitto/`` (directory mode 0700, files 0600):
``mosquitto.conf`` (regenerated on every start), ``dynamic-security.json`` (the plugin's
state: clients, roles, PBKDF2 hashes), ``admin.json`` (the server account's password),
``mosquitto.db`` (persistence: retained messages and sessions, saved every 5 minutes and on a clean
stop) and ``mosquitto.pid``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from broker.acl import (
    DEFAULT_ACL_ACCESS,
    DEVICE_SHARED_ROLE,
    SERVER_ROLE,
    SERVER_USERNAME,
    same_acls,
    server_role_acls,
)
from broker.dynsec_file import ensure_shared_role, migrate_device_layout
from broker.fdlimit import broker_max_connections
from broker.install import BrokerSetupError, MosquittoInstall
from shared.private_files import make_private, write_private

log = logging.getLogger("clawfleet.broker")

DEFAULT_MQTT_PORT = 18830
"""Loopback port of the managed broker (not 1883, which a distribution's own service may hold)."""
DEFAULT_TLS_PORT = 8883
"""Port of the TLS listener when certificates are configured."""
WSS_PORT_FLAG = "--mqtt-wss-port"
"""Command-line flag that turns on the MQTT-over-secure-WebSockets listener (:attr:`BrokerConfig.wss_port`)."""
WSS_PATH = "/mqtt"
"""HTTP path agents ask for on the WebSockets listener (Mosquitto answers on any path; clients send this one)."""
PORT_FLAG = "--mqtt-port"
"""Command-line flag that changes :attr:`BrokerConfig.port` (named in error messages)."""
TLS_PORT_FLAG = "--mqtt-tls-port"
"""Command-line flag that changes :attr:`BrokerConfig.tls_port` (named in error messages)."""

PBKDF2_ITERATIONS = 101
"""What Mosquitto 2.0's dynsec uses itself. Passwords here are 256-bit random secrets, so more
iterations would add nothing but CPU time on every connect."""


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class BrokerConfig:
    """Settings of the managed Mosquitto. Ports are TCP ports; sizes bytes; intervals seconds.

    Raises (on construction) ValueError for a non-loopback ``host`` (the plain listener carries
    API keys in clear text), a cert without a key or vice versa, or a ``tls_port`` without certs.
    """

    data_dir: Path
    host: str = "127.0.0.1"
    """Bind address of the plain listener; must be loopback."""
    port: int = DEFAULT_MQTT_PORT
    tls_port: int | None = None
    """TLS listener port; defaults to 8883 when ``tls_certfile`` is set."""
    tls_certfile: Path | None = None
    tls_keyfile: Path | None = None
    tls_cafile: Path | None = None
    tls_host: str | None = None
    """Bind address of the TLS listener; None = all interfaces."""
    wss_port: int | None = None
    """MQTT over secure WebSockets (same certificate, same accounts and ACLs) on this port, bound like the
    TLS listener; None = off. For agents behind firewalls that let only HTTPS out: 443."""
    max_queued_messages: int = 100_000
    """Per-client queue of QoS 1 messages beyond its in-flight window (Mosquitto's default 1000
    dropped messages to a slow subscriber). When ingest's queue is full the broker drops what it
    acknowledged (:mod:`broker.overload`); agents send it again when no receipt confirms it."""
    max_inflight_messages: int = 100
    max_packet_size: int = 1024 * 1024
    """Largest MQTT packet accepted from a client (1 MiB)."""
    persistence: bool = True
    """Keep retained messages (status, meta, telemetry, receipts of every device) and ingest's session
    in ``mosquitto.db`` across broker restarts."""
    autosave_on_changes: bool = False
    """Save after every ``autosave_changes`` changes instead of every ``autosave_interval_s`` seconds.
    Off: every save rewrites the whole file (every device's retained state plus the queues), which
    after every change cost 263-319 KB of disk writes per message. Durability does not depend on
    the broker's file: agents keep each message until the server's receipt confirms it."""
    autosave_changes: int = 1
    """Changes between two saves when ``autosave_on_changes``."""
    autosave_interval_s: int = 300
    """Seconds between saves (Mosquitto's own default is 1800); a clean stop saves too. A crash loses
    what changed since the last save: agents resend what the server did not confirm, and announce
    their status and meta again when they reconnect."""
    max_connections: int | None = None
    """Connections each listener accepts (Mosquitto ``max_connections``); None = derived from the
    open-file limit the broker starts with (:func:`broker.fdlimit.broker_max_connections`), so it
    refuses a connection it has no descriptor for instead of failing ``accept``; -1 = no limit."""
    max_keepalive_s: int = 600
    """Largest keepalive a client may use, seconds (the agent's own maximum). An MQTT 5 client asking
    for more, or for 0 (never time out, so its last will would never fire), is told this value."""

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        for name in ("tls_certfile", "tls_keyfile", "tls_cafile"):
            if getattr(self, name) is not None:
                setattr(self, name, Path(getattr(self, name)))
        if not is_loopback_host(self.host):
            raise ValueError(f"the plain MQTT listener must bind a loopback address, not {self.host!r}; "
                             "remote devices use the TLS listener")
        if (self.tls_certfile is None) != (self.tls_keyfile is None):
            raise ValueError("tls_certfile and tls_keyfile go together")
        if self.tls_certfile is None and self.tls_port is not None:
            raise ValueError("tls_port needs tls_certfile and tls_keyfile")
        if self.tls_certfile is None and self.wss_port is not None:
            raise ValueError(f"{WSS_PORT_FLAG} needs a TLS certificate: run 'clawfleet-server tls init' first")
        if self.tls_certfile is not None and self.tls_port is None:
            self.tls_port = DEFAULT_TLS_PORT

    @property
    def tls_enabled(self) -> bool:
        """True when a TLS listener is configured."""
        return self.tls_certfile is not None

    @property
    def broker_dir(self) -> Path:
        """``<data_dir>/mosquitto``: everything the broker owns."""
        return self.data_dir / "mosquitto"

    @property
    def conf_path(self) -> Path:
        """The generated ``mosquitto.conf``."""
        return self.broker_dir / "mosquitto.conf"

    @property
    def dynsec_path(self) -> Path:
        """The dynamic-security plugin's JSON state file."""
        return self.broker_dir / "dynamic-security.json"

    @property
    def admin_path(self) -> Path:
        """``admin.json``: the server account's credentials (mode 0600)."""
        return self.broker_dir / "admin.json"

    @property
    def pid_path(self) -> Path:
        """``mosquitto.pid``: pid of the running broker and of the process that started it."""
        return self.broker_dir / "mosquitto.pid"


def render_config(cfg: BrokerConfig, install: MosquittoInstall, nofile_soft: int | None = None) -> str:
    """The ``mosquitto.conf`` text for ``cfg``: global options, the loopback listener and, when
    certificates are configured, a TLS listener (all interfaces unless ``tls_host``) and, with
    ``wss_port``, an MQTT-over-secure-WebSockets listener with the same certificate.

    ``nofile_soft``: the soft ``RLIMIT_NOFILE`` the broker will run with; each listener's
    ``max_connections`` is derived from it unless :attr:`BrokerConfig.max_connections` is set.

    Raises:
        ValueError: a path contains a line break (it would inject config lines).
    """
    paths = [cfg.data_dir, install.dynsec_plugin, cfg.tls_certfile, cfg.tls_keyfile, cfg.tls_cafile]
    if any(p is not None and ("\n" in str(p) or "\r" in str(p)) for p in paths):
        raise ValueError("broker paths must not contain line breaks")
    max_connections = cfg.max_connections if cfg.max_connections is not None else broker_max_connections(nofile_soft)
    lines = [
        "# Generated by ClawFleet on every start of the managed broker; edits are overwritten.",
        "per_listener_settings false",
        "allow_anonymous false",
    ]
    if hasattr(os, "geteuid"):
        import pwd

        # Started as root, mosquitto would switch to the user "mosquitto", which cannot read
        # our 0600 files; run as whoever runs the server instead.
        lines.append(f"user {pwd.getpwuid(os.geteuid()).pw_name}")
    lines += [
        f"persistence {'true' if cfg.persistence else 'false'}",
        f"persistence_location {cfg.broker_dir}",  # 2.0 joins it with a separator itself
        "persistence_file mosquitto.db",
        "autosave_on_changes " + ("true" if cfg.autosave_on_changes else "false"),
        f"autosave_interval {cfg.autosave_changes if cfg.autosave_on_changes else cfg.autosave_interval_s}",
        f"max_queued_messages {cfg.max_queued_messages}",
        f"max_inflight_messages {cfg.max_inflight_messages}",
        f"max_packet_size {cfg.max_packet_size}",
        f"max_keepalive {cfg.max_keepalive_s}",
        "log_dest stderr",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "log_type information",
        "log_timestamp false",
        "connection_messages true",
        "set_tcp_nodelay true",  # else Nagle + delayed ACK add ~40 ms to every request/reply
        f"plugin {install.dynsec_plugin}",
        f"plugin_opt_config_file {cfg.dynsec_path}",
        "",
        f"listener {cfg.port} {cfg.host}",
        f"max_connections {max_connections}",
    ]
    if cfg.tls_enabled:
        lines += ["", f"listener {cfg.tls_port}" + (f" {cfg.tls_host}" if cfg.tls_host else ""),
                  f"max_connections {max_connections}", *_tls_lines(cfg)]
    if cfg.tls_enabled and cfg.wss_port is not None:
        # libwebsockets serves this one; Mosquitto 2.0.11 refuses to start when it is the only listener,
        # which never happens here (the loopback listener is always there)
        lines += ["", f"listener {cfg.wss_port}" + (f" {cfg.tls_host}" if cfg.tls_host else ""),
                  "protocol websockets", f"max_connections {max_connections}", *_tls_lines(cfg)]
    return "\n".join(lines) + "\n"


def _tls_lines(cfg: BrokerConfig) -> list[str]:
    lines = [f"cafile {cfg.tls_cafile}"] if cfg.tls_cafile is not None else []
    return lines + [f"certfile {cfg.tls_certfile}", f"keyfile {cfg.tls_keyfile}", "require_certificate false",
                    "tls_version tlsv1.2"]


@dataclass(frozen=True)
class BrokerAdmin:
    """The server's broker account (``clawfleet-server``): dynsec admin plus the fleet ACLs."""

    username: str
    password: str = field(repr=False)

    @classmethod
    def load(cls, path: Path) -> BrokerAdmin:
        """Read ``admin.json``.

        Raises:
            BrokerSetupError: missing or unreadable.
        """
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            return cls(username=str(data["username"]), password=str(data["password"]))
        except FileNotFoundError:
            raise BrokerSetupError(f"no broker admin credentials at {path}: start the managed broker once "
                                   "(clawfleet-server run) to create them") from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise BrokerSetupError(f"cannot read the broker admin credentials {path}: {exc}") from exc

    @classmethod
    def load_or_create(cls, path: Path) -> BrokerAdmin:
        """Read ``admin.json``, or create it (username ``clawfleet-server``, 43-character
        URL-safe password = 256 random bits) with mode 0600."""
        if Path(path).exists():
            return cls.load(path)
        admin = cls(username=SERVER_USERNAME, password=secrets.token_urlsafe(32))
        write_private(Path(path), json.dumps({"username": admin.username, "password": admin.password}) + "\n")
        return admin


def pbkdf2_fields(password: str, iterations: int = PBKDF2_ITERATIONS) -> dict[str, Any]:
    """The ``password``/``salt``/``iterations`` fields of a dynsec client: base64 of
    PBKDF2-HMAC-SHA512(password, 12 random salt bytes), as the plugin stores them."""
    salt = secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return {"password": base64.b64encode(digest).decode(), "salt": base64.b64encode(salt).decode(),
            "iterations": iterations}


def _password_matches(client: dict[str, Any], password: str) -> bool:
    try:
        salt = base64.b64decode(client["salt"])
        expected = base64.b64decode(client["password"])
        digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, int(client["iterations"]))
    except (KeyError, ValueError, TypeError):
        return False
    return hmac.compare_digest(digest, expected)


def prepare_dynsec_file(path: Path, admin: BrokerAdmin) -> bool:
    """Create or repair the plugin's JSON file (broker stopped) so that ``admin`` can log in and
    holds the ``clawfleet-server`` role with its current ACLs, and the shared device role exists.
    Devices are kept; those enrolled in the first layout are migrated to the current one
    (:func:`broker.dynsec_file.migrate_device_layout`, logged once).
    Written without ``mosquitto_ctrl dynsec init``, which takes the password on its command
    line (visible to every local user in the process list).

    Returns True when the file was written. Raises BrokerSetupError when it is not valid JSON.
    """
    path = Path(path)
    if path.exists():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise BrokerSetupError(f"{path} is not readable JSON ({exc}); fix it or move it away "
                                   "(all devices would then need re-enrolling)") from exc
        changed = False
    else:
        data = {"defaultACLAccess": dict(DEFAULT_ACL_ACCESS), "clients": [], "groups": [], "roles": []}
        changed = True
    clients, roles = data.setdefault("clients", []), data.setdefault("roles", [])
    client = next((c for c in clients if c.get("username") == admin.username), None)
    if client is None:
        client = {"username": admin.username, "textname": "ClawFleet server", "roles": []}
        clients.append(client)
    if not _password_matches(client, admin.password):
        client.update(pbkdf2_fields(admin.password))
        changed = True
    if client.pop("disabled", False):
        changed = True
    client_roles = client.setdefault("roles", [])
    if not any(r.get("rolename") == SERVER_ROLE for r in client_roles):
        client_roles.append({"rolename": SERVER_ROLE})
        changed = True
    role = next((r for r in roles if r.get("rolename") == SERVER_ROLE), None)
    if role is None:
        role = {"rolename": SERVER_ROLE, "textname": "ClawFleet server", "acls": []}
        roles.append(role)
    if not same_acls(role.get("acls", []), server_role_acls()):
        role["acls"] = server_role_acls()
        changed = True
    changed |= ensure_shared_role(data)
    migrated = migrate_device_layout(data)
    if migrated:
        log.info("moved %d device accounts to the current layout in %s (the shared device role %s, and each "
                 "device may read its own delivery receipts); done once", migrated, path, DEVICE_SHARED_ROLE)
        changed = True
    if changed:
        write_private(path, json.dumps(data) + "\n")  # compact: Python's C encoder (indent is 10x slower)
    else:
        make_private(path)
    return changed
