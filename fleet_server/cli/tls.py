"""``clawfleet-server tls init|show``, and the TLS / external-broker checks ``run`` makes.

``tls init`` makes the server's CA and the broker certificate (:mod:`fleet_server.endpoints.tls`); the
next ``run`` opens the managed broker's TLS listener and enrollment tokens switch to
``mqtts://<public host>:8883`` with the CA inside.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from broker.config import is_loopback_host
from fleet_server.cli.options import PLAIN_HELP, DataDirOpt, default_data_dir, fail
from fleet_server.endpoints.broker_link import ExternalBroker, ServerSettings, public_host_warning, read_admin_password
from fleet_server.endpoints.tls import DEFAULT_SERVER_DAYS, TlsError, TlsFiles, init_tls, read_summary

tls_app = typer.Typer(help="The server's CA and the broker's TLS certificate (for agents on other machines).",
                      no_args_is_help=True, **PLAIN_HELP)


log = logging.getLogger("clawfleet.server")


@tls_app.command("init")
def tls_init(
    host: Annotated[list[str], typer.Option("--host", help="DNS name or IP address agents use to reach this "
                    "server; repeat for several. The first one goes into enrollment tokens. localhost and "
                    "127.0.0.1 are always added")],
    data_dir: DataDirOpt = None,
    days: Annotated[int, typer.Option(help="validity of the server certificate, days")] = DEFAULT_SERVER_DAYS,
    keep_ca: Annotated[bool, typer.Option("--keep-ca", help="issue a new server certificate (new hosts, renewal) "
                       "under the existing CA: enrolled agents keep working")] = False,
    force: Annotated[bool, typer.Option("--force", help="replace everything with a NEW CA: every enrolled agent "
                     "pinned the old one and must be re-enrolled with a new token")] = False,
) -> None:
    """Create the server's CA and the broker's certificate in <data dir>/tls (keys mode 0600)."""
    data_dir = data_dir or default_data_dir()
    try:
        summary = init_tls(data_dir, host, days=days, force=force, keep_ca=keep_ca)
    except (TlsError, ValueError) as exc:
        fail(str(exc))
    files = TlsFiles.for_data_dir(data_dir)
    settings = ServerSettings.load(data_dir)
    port = settings.mqtt_tls_port
    if not keep_ca:
        typer.echo(f"wrote {files.ca_pem}   CA certificate (enrollment tokens carry it; agents pin it)")
        typer.echo(f"wrote {files.ca_key}   CA private key, mode 0600 (keep it secret; back it up)")
    typer.echo(f"wrote {files.server_pem}   broker certificate for {', '.join(summary.hosts)}, valid until "
               f"{summary.not_after:%Y-%m-%d}")
    typer.echo(f"wrote {files.server_key}   broker private key, mode 0600")
    typer.echo(f"\nCA fingerprint (SHA-256): {summary.ca_fingerprint}")
    if force:
        typer.echo("\nThis is a NEW CA. Agents enrolled before pinned the old one and now log 'broker certificate "
                   "not trusted': give each of them a new enrollment token.")
    typer.echo(f"\nnext steps:\n  1. (re)start the server: clawfleet-server run   — the broker then also listens "
               f"for TLS on port {port}, all interfaces\n  2. open TCP port {port} in the firewall "
               f"(e.g. sudo ufw allow {port}/tcp)\n  3. clawfleet-server device add NAME   — tokens now say "
               f"mqtts://{settings.public_host or summary.public_host}:{port} and carry this CA")


@tls_app.command("show")
def tls_show(data_dir: DataDirOpt = None) -> None:
    """Print the broker certificate's host names (SANs), expiry, and the CA fingerprint."""
    data_dir = data_dir or default_data_dir()
    try:
        s = read_summary(data_dir)
    except TlsError as exc:
        fail(str(exc), code=1)
    files = TlsFiles.for_data_dir(data_dir)
    typer.echo(f"server certificate: {files.server_pem}\n  hosts (SANs): {', '.join(s.hosts)}\n"
               f"  valid until:  {s.not_after:%Y-%m-%d %H:%M} UTC\nCA: {files.ca_pem}\n  subject:      {s.ca_subject}\n"
               f"  valid until:  {s.ca_not_after:%Y-%m-%d %H:%M} UTC\n  fingerprint (SHA-256): {s.ca_fingerprint}")
    for warning in s.expiry_warnings():
        typer.echo(f"warning: {warning}", err=True)


# --- used by `run` and the device commands -------------------------------------------------------


@dataclass
class DashboardTls:
    """How the dashboard is served: ``scheme`` (http/https), extra ``uvicorn`` keyword arguments
    (``ssl_certfile``/``ssl_keyfile``), whether the session cookie must be Secure, and warnings."""

    scheme: str = "http"
    uvicorn_kwargs: dict[str, Any] = field(default_factory=dict)
    secure_cookies: bool = False
    warnings: list[str] = field(default_factory=list)



def dashboard_tls(host: str, port: int, certfile: Path | None, keyfile: Path | None,
                  behind_proxy: bool) -> DashboardTls:
    """Check the dashboard's bind address against its TLS set-up.

    A non-loopback ``host`` needs HTTPS: a certificate and key for uvicorn, or ``behind_proxy``
    (a TLS-terminating reverse proxy in front). Either also makes the session cookie Secure.

    Raises:
        ValueError: only one of certfile/keyfile, a file that does not exist, or a non-loopback
            bind without HTTPS (the message names the flags).
    """
    if (certfile is None) != (keyfile is None):
        raise ValueError("--https-certfile and --https-keyfile go together")
    out = DashboardTls()
    if certfile is not None and keyfile is not None:
        for path in (certfile, keyfile):
            if not Path(path).is_file():
                raise ValueError(f"{path} does not exist")
        out.scheme, out.secure_cookies = "https", True
        out.uvicorn_kwargs = {"ssl_certfile": str(certfile), "ssl_keyfile": str(keyfile)}
    if behind_proxy:
        out.secure_cookies = True
        out.warnings.append(f"--behind-proxy: the dashboard serves {out.scheme} on {host}:{port} and marks its "
                            "session cookie Secure. Set up the reverse proxy to serve HTTPS and forward to it, and "
                            "let nothing but the proxy reach that port (bind 127.0.0.1 when the proxy runs here)")
    if not is_loopback_host(host) and certfile is None and not behind_proxy:
        raise ValueError(f"the dashboard on {host} would send passwords unencrypted: give --https-certfile and "
                         "--https-keyfile, or --behind-proxy when a TLS-terminating reverse proxy (Caddy, nginx) "
                         "is in front of it")
    return out


def external_broker(url: str | None, user: str | None, password_file: Path | None,
                    ca_file: Path | None) -> ExternalBroker | None:
    """The ``--broker-*`` flags of ``run`` as an :class:`ExternalBroker` (None without ``--broker-url``).

    Raises:
        ValueError: a ``--broker-*`` flag without ``--broker-url``, no password, a bad URL,
            or a CA file that does not exist.
    """
    if url is None:
        if user or password_file or ca_file:
            raise ValueError("--broker-admin-user, --broker-admin-password-file and --broker-ca-file need "
                             "--broker-url")
        return None
    if not user:
        raise ValueError("--broker-url needs --broker-admin-user (a dynamic-security admin account)")
    if ca_file is not None and not Path(ca_file).is_file():
        raise ValueError(f"--broker-ca-file {ca_file} does not exist")
    ext = ExternalBroker(url, user, read_admin_password(password_file),
                         Path(ca_file).resolve() if ca_file else None)
    ext.ssl_context()  # fail now on an unreadable CA file
    return ext


def startup_warnings(data_dir: Path, public_host: str | None, external: ExternalBroker | None) -> list[str]:
    """Warnings for the start of ``run``: certificates that expire within 30 days or expired,
    a ``--public-host`` the certificate does not name, or (managed broker, no certificate) that
    only local devices can connect."""
    if external is not None:
        return []
    if not TlsFiles.for_data_dir(data_dir).enabled:
        return ["no TLS certificate: the broker listens on 127.0.0.1 only, so devices on other machines cannot "
                "connect (except through an SSH tunnel). To enroll them: clawfleet-server tls init --host NAME"]
    try:
        summary = read_summary(data_dir)
    except TlsError as exc:
        return [str(exc)]
    warnings = summary.expiry_warnings()
    mismatch = public_host_warning(data_dir, public_host)
    return warnings + ([mismatch] if mismatch else [])


def server_public_url(given: str | None, scheme: str, host: str, port: int, public_host: str | None) -> str | None:
    """The server's web address for devices: ``given``, else the dashboard's own address when it binds
    loopback (this machine only) or when ``public_host`` names it; None when unknown (behind a proxy).

    Raises:
        ValueError: ``given`` is not a plain http(s) URL.
    """
    from fleet_server.endpoints.broker_link import url_host
    from fleet_server.releases.routes import safe_fleet_url

    if given:
        try:
            return safe_fleet_url(given)
        except ValueError:
            raise ValueError(f"--public-url {given!r}: give a plain URL such as https://fleet.example.com") from None
    if is_loopback_host(host):
        return f"{scheme}://{url_host(host)}:{port}"
    if public_host:
        return f"{scheme}://{url_host(public_host)}:{port}"
    return None


def check_wss(data_dir: Path, wss_port: int | None, external: ExternalBroker | None) -> None:
    """Refuse ``--mqtt-wss-port`` without the managed broker's TLS certificate (ValueError saying what to do)."""
    if wss_port is None:
        return
    if external is not None:
        raise ValueError("--mqtt-wss-port configures the managed broker; an external broker's WebSockets listener "
                         "is configured there")
    if not TlsFiles.for_data_dir(data_dir).enabled:
        raise ValueError("--mqtt-wss-port needs the broker's TLS certificate: run 'clawfleet-server tls init --host "
                         "NAME' first")
    if not 0 < wss_port < 65536:
        raise ValueError(f"--mqtt-wss-port {wss_port}: not a TCP port")


def save_settings(data_dir: Path, mqtt_port: int, tls_port: int, public_host: str | None,
                  external: ExternalBroker | None, password_file: Path | None, wss_port: int | None = None,
                  public_url: str | None = None, agent_packages: list[Path] | None = None) -> None:
    """Remember the broker settings of this ``run`` for the device commands (no password)."""
    ServerSettings(mqtt_port=mqtt_port, mqtt_tls_port=tls_port, public_host=public_host, mqtt_wss_port=wss_port,
                   public_url=public_url, agent_packages=[str(Path(p).resolve()) for p in agent_packages or []],
                   broker_url=external.url if external else None,
                   broker_admin_user=external.username if external else None,
                   broker_admin_password_file=str(Path(password_file).resolve()) if external and password_file
                   else None,
                   broker_ca_file=str(external.ca_file) if external and external.ca_file else None).save(data_dir)

