"""TLS end to end: certificates made by ``clawfleet-server tls init``, the managed broker's TLS
listener (bound to 127.0.0.1 here; all interfaces in the product), an agent enrolled with a real
token, and the ways a handshake must fail. Real Mosquitto, real certificates, no mocks."""

from __future__ import annotations

import datetime as dt
import ssl
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID
from e2e_helpers import start_agent, stop_agent, wait_for
from mqtt_helpers import free_port
from tls_helpers import enroll_agent, read_log, tls_handshake, tls_probe
from typer.testing import CliRunner

from agent_tray.publisher import describe_connect_error
from broker.dynsec import DynSecClient, DynSecConnectionError
from broker.mosquitto import find_mosquitto, render_config
from fleet_server.cli.main import app
from fleet_server.cli.tls import dashboard_tls, startup_warnings
from fleet_server.devices.registry import add_device
from fleet_server.endpoints.broker_link import ServerSettings, managed_broker_config
from fleet_server.endpoints.tls import TlsFiles, init_tls, read_summary
from fleet_server.server import FleetServer, ServerOptions
from fleet_server.store.models import Sample
from shared.enrollment import decode_token

runner = CliRunner()
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - only ever refused or checked here, never bound


def _tls_init(data_dir: Path, *args: str) -> object:
    return runner.invoke(app, ["tls", "init", "--data-dir", str(data_dir), *args])


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


@pytest.fixture
def tls_fleet(tmp_path: Path) -> Iterator[FleetServer]:
    """A FleetServer whose data dir got certificates from the real ``tls init`` command; TLS
    listener on a free port of 127.0.0.1, no local agent."""
    data_dir = tmp_path / "server"
    result = _tls_init(data_dir, "--host", "127.0.0.1", "--host", "fleet.example.test")
    assert result.exit_code == 0, result.output
    server = FleetServer(ServerOptions(data_dir=data_dir, mqtt_port=free_port(), tls_port=free_port(),
                                       tls_host="127.0.0.1", local_agent=False))
    server.start()
    assert server.ingest is not None and server.ingest.connected.wait(5)
    yield server
    server.stop()


# --- tls init / show ------------------------------------------------------------------------------


def test_tls_init_writes_ca_and_server_cert_with_modes_and_sans(tmp_path: Path) -> None:
    result = _tls_init(tmp_path, "--host", "fleet.example.com", "--host", "203.0.113.9")
    assert result.exit_code == 0, result.output
    files = TlsFiles.for_data_dir(tmp_path)
    assert files.dir.stat().st_mode & 0o777 == 0o700
    assert files.ca_key.stat().st_mode & 0o777 == 0o600
    assert files.server_key.stat().st_mode & 0o777 == 0o600
    ca, cert = _cert(files.ca_pem), _cert(files.server_pem)
    fp = ca.fingerprint(hashes.SHA256()).hex(":").upper()
    assert fp in result.output and "next steps" in result.output and "8883" in result.output

    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    ku = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_cert_sign
    assert 3649 <= (ca.not_valid_after_utc - ca.not_valid_before_utc).days <= 3651

    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["fleet.example.com", "localhost"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["203.0.113.9", "127.0.0.1"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert 825 <= (cert.not_valid_after_utc - cert.not_valid_before_utc).days <= 826
    assert cert.issuer == ca.subject
    cert.verify_directly_issued_by(ca)

    show = runner.invoke(app, ["tls", "show", "--data-dir", str(tmp_path)])
    assert show.exit_code == 0, show.output
    assert "fleet.example.com, 203.0.113.9, localhost, 127.0.0.1" in show.output and fp in show.output


def test_tls_init_refuses_to_overwrite_and_rotates_only_on_request(tmp_path: Path) -> None:
    assert _tls_init(tmp_path, "--host", "a.example.com").exit_code == 0
    fp = read_summary(tmp_path).ca_fingerprint

    again = _tls_init(tmp_path, "--host", "b.example.com")
    assert again.exit_code == 2
    assert "--force" in again.output and "re-enrolled" in again.output
    assert read_summary(tmp_path).hosts[0] == "a.example.com"

    renewed = _tls_init(tmp_path, "--host", "b.example.com", "--keep-ca")  # same CA: agents keep working
    assert renewed.exit_code == 0, renewed.output
    assert read_summary(tmp_path).ca_fingerprint == fp and read_summary(tmp_path).hosts[0] == "b.example.com"

    rotated = _tls_init(tmp_path, "--host", "c.example.com", "--force")
    assert rotated.exit_code == 0, rotated.output
    assert read_summary(tmp_path).ca_fingerprint != fp and "NEW CA" in rotated.output

    bad = _tls_init(tmp_path / "other", "--host", ALL_INTERFACES)
    assert bad.exit_code == 2 and "bind address" in bad.output


def test_expiry_within_30_days_is_warned_at_start(tmp_path: Path) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    init_tls(tmp_path, ["fleet.example.com"], days=40, now=now - dt.timedelta(days=20))
    warnings = startup_warnings(tmp_path, None, None)
    assert len(warnings) == 1 and "server certificate expires on" in warnings[0] and "--keep-ca" in warnings[0]
    assert "not in the TLS certificate" in startup_warnings(tmp_path, "other.example.com", None)[-1]
    assert "no TLS certificate" in startup_warnings(tmp_path / "plain", None, None)[0]


# --- the broker's listeners -------------------------------------------------------------------------


def test_plain_listener_is_loopback_only_and_tls_binds_all_interfaces_by_default(tls_fleet: FleetServer,
                                                                                 tmp_path: Path) -> None:
    broker = tls_fleet.broker
    assert broker is not None and broker.pid is not None
    conf = broker.cfg.conf_path.read_text()
    assert f"listener {tls_fleet.opts.mqtt_port} 127.0.0.1\n" in conf
    assert f"listener {tls_fleet.opts.tls_port} 127.0.0.1\n" in conf  # tests bind loopback (tls_host)
    listening = {(c.laddr.ip, c.laddr.port) for c in psutil.Process(broker.pid).net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN}
    assert listening == {("127.0.0.1", tls_fleet.opts.mqtt_port), ("127.0.0.1", tls_fleet.opts.tls_port)}
    # the product default (no tls_host): the plain listener stays on loopback, TLS on all interfaces
    cfg = managed_broker_config(tls_fleet.opts.data_dir, mqtt_port=18830)
    text = render_config(cfg, find_mosquitto())
    assert "listener 18830 127.0.0.1\n" in text and "listener 8883\n" in text
    assert f"certfile {TlsFiles.for_data_dir(tls_fleet.opts.data_dir).server_pem}" in text


# --- agents over mqtts -------------------------------------------------------------------------------


def test_agent_enrolled_with_token_reports_over_mqtts(tls_fleet: FleetServer, tmp_path: Path) -> None:
    tls_port = tls_fleet.opts.tls_port
    assert tls_fleet.broker_url == f"mqtts://127.0.0.1:{tls_port}"
    ca_pem = TlsFiles.for_data_dir(tls_fleet.opts.data_dir).ca_pem.read_text()
    new = add_device(tls_fleet.dynsec, "Remote Box", tls_fleet.broker_url, ca_pem=tls_fleet.ca_pem)
    enrollment = decode_token(new.token)
    assert enrollment.url == f"mqtts://127.0.0.1:{tls_port}" and enrollment.ca_pem == ca_pem
    config = enroll_agent(tmp_path, new.token, "remote")
    agent = start_agent(config, tmp_path / "agent.log")
    try:
        wait_for(lambda: Sample.select().where(Sample.device == "remote-box").count() >= 1, 15,
                 what="a sample sent over TLS")
    finally:
        assert stop_agent(agent) == 0
    log = read_log(tmp_path / "agent.log")
    assert f"connected to mqtts://127.0.0.1:{tls_port}" in log and "not trusted" not in log


def test_agent_pinning_another_ca_logs_untrusted_certificate(tls_fleet: FleetServer, tmp_path: Path) -> None:
    init_tls(tmp_path / "other", ["127.0.0.1"])  # another server's CA
    other_ca = TlsFiles.for_data_dir(tmp_path / "other").ca_pem
    new = add_device(tls_fleet.dynsec, "misled", tls_fleet.broker_url, ca_pem=other_ca.read_text())
    # enroll itself refuses this token (certificate not trusted) and writes nothing; --offline writes it anyway
    with pytest.raises(AssertionError, match="broker certificate not trusted.*nothing was written"):
        enroll_agent(tmp_path, new.token, "misled")
    agent = start_agent(enroll_agent(tmp_path, new.token, "misled", offline=True), tmp_path / "misled.log")
    try:
        line = wait_for(lambda: next((ln for ln in read_log(tmp_path / "misled.log").splitlines()
                                      if "broker certificate not trusted" in ln), None), 15,
                        what="the agent's TLS error line")
    finally:
        stop_agent(agent)
    # the broker sends its CA along (cafile in its config): OpenSSL then reports the foreign root
    assert " ERROR " in line and "self-signed certificate in certificate chain" in line
    assert "re-enroll with a token from this server" in line
    assert Sample.select().where(Sample.device == "misled").count() == 0

    # the same CA mismatch seen by a bare handshake, paho, and the server's own dynsec client
    with pytest.raises(ssl.SSLCertVerificationError) as err:
        tls_handshake(tls_fleet.opts.tls_port, other_ca, "127.0.0.1")
    assert err.value.verify_message == "self-signed certificate in certificate chain"
    probe = tls_probe(tls_fleet.opts.tls_port, other_ca, "misled", new.api_key)
    with pytest.raises(ssl.SSLCertVerificationError):
        probe.connect()
    admin = tls_fleet.broker.admin
    with pytest.raises(DynSecConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        DynSecClient("127.0.0.1", tls_fleet.opts.tls_port, admin.username, admin.password,
                     tls=ssl.create_default_context(cafile=str(other_ca)))


def test_right_ca_but_wrong_hostname_fails(tls_fleet: FleetServer) -> None:
    ca = TlsFiles.for_data_dir(tls_fleet.opts.data_dir).ca_pem
    for name in ("127.0.0.1", "localhost", "fleet.example.test"):  # the SANs: accepted
        tls_handshake(tls_fleet.opts.tls_port, ca, name).close()
    with pytest.raises(ssl.SSLCertVerificationError) as err:
        tls_handshake(tls_fleet.opts.tls_port, ca, "evil.example.test")
    assert "Hostname mismatch" in err.value.verify_message
    level, message = describe_connect_error(err.value, "evil.example.test")
    assert message.startswith("broker certificate not trusted: Hostname mismatch")
    assert "tls init --keep-ca --host evil.example.test" in message


def test_device_add_cli_prints_mqtts_token_with_ca(tls_fleet: FleetServer, tmp_path: Path) -> None:
    data_dir = tls_fleet.opts.data_dir
    ServerSettings(mqtt_port=tls_fleet.opts.mqtt_port, mqtt_tls_port=tls_fleet.opts.tls_port,
                   public_host="fleet.example.test").save(data_dir)  # as `run --public-host` saves it
    result = runner.invoke(app, ["device", "add", "cli box", "--data-dir", str(data_dir), "--mqtt-port",
                                 str(tls_fleet.opts.mqtt_port)])
    assert result.exit_code == 0, result.output
    token = next(w for w in result.output.split() if w.startswith("cfe1."))
    enrollment = decode_token(token)
    assert enrollment.url == f"mqtts://fleet.example.test:{tls_fleet.opts.tls_port}"
    assert enrollment.ca_pem == TlsFiles.for_data_dir(data_dir).ca_pem.read_text()
    assert "SSH tunnel" not in result.output


def test_device_add_without_tls_warns_about_loopback(tmp_path: Path) -> None:
    port = free_port()
    result = runner.invoke(app, ["device", "add", "lonely", "--data-dir", str(tmp_path), "--mqtt-port", str(port)])
    assert result.exit_code == 0, result.output
    assert decode_token(next(w for w in result.output.split() if w.startswith("cfe1."))).url == \
        f"mqtt://127.0.0.1:{port}"
    assert "SSH tunnel" in result.output and "tls init" in result.output


# --- the dashboard bind check -------------------------------------------------------------------------


def test_dashboard_on_all_interfaces_needs_https_or_proxy(tmp_path: Path) -> None:
    refused = runner.invoke(app, ["run", "--host", ALL_INTERFACES, "--data-dir", str(tmp_path)])
    assert refused.exit_code == 2 and "--https-certfile" in refused.output and "--behind-proxy" in refused.output
    init_tls(tmp_path, ["127.0.0.1"])
    files = TlsFiles.for_data_dir(tmp_path)
    https = dashboard_tls(ALL_INTERFACES, 8443, files.server_pem, files.server_key, behind_proxy=False)
    assert https.scheme == "https" and https.secure_cookies
    assert https.uvicorn_kwargs == {"ssl_certfile": str(files.server_pem), "ssl_keyfile": str(files.server_key),
                                    "proxy_headers": False}
    proxied = dashboard_tls(ALL_INTERFACES, 8080, None, None, behind_proxy=True)
    assert proxied.secure_cookies and "reverse proxy" in proxied.warnings[0]
    assert proxied.uvicorn_kwargs == {"proxy_headers": True, "forwarded_allow_ips": "127.0.0.1"}
    assert dashboard_tls(ALL_INTERFACES, 8080, None, None, True, "10.0.0.5, 10.1.0.0/16").uvicorn_kwargs[
        "forwarded_allow_ips"] == "10.0.0.5,10.1.0.0/16"
    with pytest.raises(ValueError, match="--trusted-proxy 'proxy.lan'"):
        dashboard_tls(ALL_INTERFACES, 8080, None, None, True, "proxy.lan")
    with pytest.raises(ValueError, match="needs --behind-proxy"):
        dashboard_tls("127.0.0.1", 8080, None, None, False, "10.0.0.5")
    assert not dashboard_tls("127.0.0.1", 8080, None, None, behind_proxy=False).secure_cookies
    with pytest.raises(ValueError, match="go together"):
        dashboard_tls(ALL_INTERFACES, 8080, files.server_pem, None, behind_proxy=False)
