"""Which broker the server uses, and what it tells agents to connect to.

- Managed broker (default): the server talks to its own Mosquitto over plain MQTT on
  127.0.0.1. Agents get ``mqtts://<public host>:<tls port>`` plus the server's CA when
  ``<data_dir>/tls/server.pem`` exists, else ``mqtt://127.0.0.1:<port>`` (this machine or an SSH
  tunnel only).
- External broker (``run --broker-url``): the server logs in with a dynamic-security admin
  account; agents get the same URL and, for ``mqtts``, the ``--broker-ca-file`` (none: the
  system trust store).

``run`` saves its broker settings (never the password) into ``<data_dir>/server.json`` so the
``device`` commands reach the same broker and print the same URL in enrollment tokens.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
from dataclasses import asdict, dataclass, field
from pathlib import Path

from broker.config import DEFAULT_MQTT_PORT, DEFAULT_TLS_PORT, WSS_PATH, BrokerConfig, is_loopback_host
from fleet_server.endpoints.tls import TlsFiles, read_ca_pem, read_summary
from shared.enrollment import parse_broker_url
from shared.private_files import write_private

log = logging.getLogger("clawfleet.server")

SETTINGS_FILE = "server.json"
"""Name of the saved broker settings in the data dir."""
PASSWORD_ENV = "CLAWFLEET_BROKER_ADMIN_PASSWORD"  # noqa: S105 - the variable's name, not a secret
"""Environment variable with the external broker's admin password."""



def url_host(host: str) -> str:
    """``host`` as it goes into a URL (IPv6 addresses in brackets)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def read_admin_password(password_file: Path | None) -> str:
    """The external broker's admin password: the first line of ``password_file``, else
    ``$CLAWFLEET_BROKER_ADMIN_PASSWORD`` (never a command-line argument: it would show in ``ps``).

    Raises:
        ValueError: neither is set, the file is unreadable, or the password is empty.
    """
    if password_file is not None:
        try:
            text = Path(password_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"cannot read the broker admin password file {password_file}: {exc}") from None
        if os.name == "posix" and Path(password_file).stat().st_mode & 0o077:
            log.warning("%s is readable by other users; chmod 600 it", password_file)
        password = text.splitlines()[0] if text else ""
    else:
        password = os.environ.get(PASSWORD_ENV, "")
        if not password:
            raise ValueError(f"the external broker's admin password is missing: pass --broker-admin-password-file "
                             f"FILE or set {PASSWORD_ENV}")
    if not password:
        raise ValueError(f"the broker admin password file {password_file} is empty")
    return password


@dataclass(frozen=True)
class ExternalBroker:
    """A Mosquitto ≥ 2.0 with the dynamic-security plugin, not started by ClawFleet.

    ``url``: ``mqtts://host:port`` (or ``mqtt://`` for a broker on this machine only);
    ``username``/``password``: a dynsec admin account (``mosquitto_ctrl dynsec init``);
    ``ca_file``: PEM CA that signed the broker's certificate, pinned by the server and by agents
    (None: the system trust store, e.g. a Let's Encrypt certificate).

    Raises (on construction) ValueError: malformed URL, plain ``mqtt://`` to a host that is not
    loopback (passwords and API keys would cross the network in clear), or a CA file for ``mqtt://``.
    """

    url: str
    username: str
    password: str = field(repr=False)
    ca_file: Path | None = None

    def __post_init__(self) -> None:
        scheme, host, _port = parse_broker_url(self.url)
        if scheme == "mqtt" and not is_loopback_host(host):
            raise ValueError(f"{self.url}: plain mqtt:// is only allowed to a broker on this machine (127.0.0.1); "
                             "use mqtts:// with a TLS listener for a remote broker")
        if scheme == "mqtt" and self.ca_file is not None:
            raise ValueError("--broker-ca-file needs an mqtts:// broker URL")
        if not self.username:
            raise ValueError("--broker-admin-user is required with --broker-url")

    @property
    def host(self) -> str:
        """Host name or address from the URL."""
        return parse_broker_url(self.url)[1]

    @property
    def port(self) -> int:
        """TCP port from the URL (default 1883 for mqtt, 8883 for mqtts)."""
        return parse_broker_url(self.url)[2]

    @property
    def tls(self) -> bool:
        """True for ``mqtts://``."""
        return self.url.startswith("mqtts:")

    def ssl_context(self) -> ssl.SSLContext | None:
        """Verifying TLS context (CA file, else the system store) for ``mqtts``; None for ``mqtt``.

        Raises:
            ValueError: the CA file cannot be read as PEM certificates.
        """
        if not self.tls:
            return None
        try:
            return ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"cannot load the broker CA file {self.ca_file}: {exc}") from None

    def ca_pem(self) -> str | None:
        """The CA certificate text agents pin (None: no CA file, agents use the system store)."""
        if not self.tls or self.ca_file is None:
            return None
        return Path(self.ca_file).read_text(encoding="ascii")


@dataclass(frozen=True)
class AgentEndpoint:
    """What enrollment tokens carry: the broker ``url`` agents connect to and the ``ca_pem`` they pin;
    optionally the ``wss_url`` fallback (MQTT over secure WebSockets), the server's web address
    ``fleet_url`` (dashboard, agent packages) and the package-signing ``update_key``."""

    url: str
    ca_pem: str | None = None
    wss_url: str | None = None
    fleet_url: str | None = None
    update_key: str | None = None

    @property
    def tls(self) -> bool:
        """True for ``mqtts://``."""
        return self.url.startswith("mqtts:")

    def token_extra(self) -> dict[str, str]:
        """The optional token fields that are set (``wss_url``, ``fleet_url``, ``update_key``)."""
        return {k: v for k, v in (("wss_url", self.wss_url), ("fleet_url", self.fleet_url),
                                  ("update_key", self.update_key)) if v}


def agent_endpoint(data_dir: Path, *, mqtt_port: int = DEFAULT_MQTT_PORT, tls_port: int = DEFAULT_TLS_PORT,
                   public_host: str | None = None, external: ExternalBroker | None = None,
                   wss_port: int | None = None, fleet_url: str | None = None) -> AgentEndpoint:
    """The broker URL and CA for enrollment tokens (see the module docstring), with the WebSockets
    fallback when the managed broker has one (``wss_port``), the server's web address ``fleet_url`` and
    the package-signing key when the data dir has one.

    Raises:
        TlsError: ``<data_dir>/tls`` holds a server certificate but its CA cannot be read.
    """
    from fleet_server.releases.signing import public_key

    extra = {"fleet_url": fleet_url, "update_key": public_key(data_dir)}
    if external is not None:
        return AgentEndpoint(external.url, external.ca_pem(), **extra)
    if TlsFiles.for_data_dir(data_dir).enabled:
        host = url_host(public_host or read_summary(data_dir).public_host)
        wss = f"wss://{host}:{wss_port}{WSS_PATH}" if wss_port else None
        return AgentEndpoint(f"mqtts://{host}:{tls_port}", read_ca_pem(data_dir), wss_url=wss, **extra)
    return AgentEndpoint(f"mqtt://127.0.0.1:{mqtt_port}", **extra)


def managed_broker_config(data_dir: Path, mqtt_port: int = DEFAULT_MQTT_PORT, tls_port: int = DEFAULT_TLS_PORT,
                          tls_host: str | None = None, wss_port: int | None = None) -> BrokerConfig:
    """Config of the managed Mosquitto: plain listener on 127.0.0.1:``mqtt_port`` and, when
    ``<data_dir>/tls/server.pem`` exists, a TLS listener on ``tls_port`` (``tls_host``, None =
    all interfaces) and, with ``wss_port``, MQTT over secure WebSockets there.

    Raises:
        ValueError: ``wss_port`` without a certificate (the message says to run ``tls init``).
    """
    files = TlsFiles.for_data_dir(data_dir)
    if not files.enabled:
        return BrokerConfig(data_dir=data_dir, port=mqtt_port, wss_port=wss_port)
    return BrokerConfig(data_dir=data_dir, port=mqtt_port, tls_port=tls_port, tls_host=tls_host,
                        tls_certfile=files.server_pem, tls_keyfile=files.server_key, tls_cafile=files.ca_pem,
                        wss_port=wss_port)


def public_host_warning(data_dir: Path, public_host: str | None) -> str | None:
    """A warning when ``public_host`` is not among the server certificate's SANs (agents would
    then fail hostname verification); None when fine or when there is no certificate."""
    if public_host is None or not TlsFiles.for_data_dir(data_dir).enabled:
        return None
    hosts = read_summary(data_dir).hosts
    if public_host.strip("[]").lower() in (h.lower() for h in hosts):
        return None
    return (f"--public-host {public_host} is not in the TLS certificate (it names {', '.join(hosts)}): agents will "
            f"refuse the broker. Add it with 'clawfleet-server tls init --keep-ca --host {public_host} --host …'")


@dataclass
class ServerSettings:
    """Broker settings of the last ``run``, saved in ``<data_dir>/server.json`` (mode 0600, no
    password) and read by the ``device`` commands. Ports are TCP ports."""

    mqtt_port: int = DEFAULT_MQTT_PORT
    mqtt_tls_port: int = DEFAULT_TLS_PORT
    public_host: str | None = None
    broker_url: str | None = None
    broker_admin_user: str | None = None
    broker_admin_password_file: str | None = None
    broker_ca_file: str | None = None
    mqtt_wss_port: int | None = None
    public_url: str | None = None
    """The server's web address as devices reach it (install one-liners, agent packages, the tray's
    'Open dashboard'); None: not known (no one-liners)."""
    agent_packages: list[str] = field(default_factory=list)
    """Release folders ``run --agent-packages`` named (the ``release`` commands read them too)."""

    @classmethod
    def load(cls, data_dir: Path) -> ServerSettings:
        """Read ``server.json``; defaults when it is missing or unreadable (logged)."""
        path = Path(data_dir) / SETTINGS_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError, TypeError) as exc:
            log.warning("ignoring unreadable %s: %s", path, exc)
            return cls()

    def save(self, data_dir: Path) -> None:
        """Write ``server.json`` atomically (mode 0600)."""
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        write_private(Path(data_dir) / SETTINGS_FILE, json.dumps(asdict(self), indent=1) + "\n")

    def external(self) -> ExternalBroker | None:
        """The saved external broker with its password (the saved password file, else
        ``$CLAWFLEET_BROKER_ADMIN_PASSWORD``); None for a managed broker.

        Raises:
            ValueError: as :func:`read_admin_password` and :class:`ExternalBroker`.
        """
        if not self.broker_url:
            return None
        pw_file = Path(self.broker_admin_password_file) if self.broker_admin_password_file else None
        return ExternalBroker(self.broker_url, self.broker_admin_user or "", read_admin_password(pw_file),
                              Path(self.broker_ca_file) if self.broker_ca_file else None)

    def endpoint(self, data_dir: Path) -> AgentEndpoint:
        """:func:`agent_endpoint` for these settings (external broker without reading its password)."""
        if self.broker_url:
            from fleet_server.releases.signing import public_key

            ca = Path(self.broker_ca_file).read_text(encoding="ascii") if self.broker_ca_file else None
            return AgentEndpoint(self.broker_url, ca if self.broker_url.startswith("mqtts:") else None,
                                 fleet_url=self.public_url, update_key=public_key(data_dir))
        return agent_endpoint(data_dir, mqtt_port=self.mqtt_port, tls_port=self.mqtt_tls_port,
                              public_host=self.public_host, wss_port=self.mqtt_wss_port, fleet_url=self.public_url)
