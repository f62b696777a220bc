"""The server against a Mosquitto it did not start: a hand-written config and a dynsec file made
by ``mosquitto_ctrl dynsec init``, as an administrator sets one up. Devices are added and deleted
through that broker, agents report through it, and no managed Mosquitto is started."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_helpers import server_cli, start_agent, stop_agent, wait_for
from mqtt_helpers import free_port
from tls_helpers import ExternalMosquitto, enroll_agent, read_log, start_external_mosquitto, tls_probe
from typer.testing import CliRunner

from broker.acl import SERVER_ROLE
from fleet_server.cli.main import app
from fleet_server.cli.tls import external_broker, save_settings
from fleet_server.devices.registry import add_device, delete_device
from fleet_server.endpoints.broker_link import ExternalBroker
from fleet_server.endpoints.tls import TlsFiles, init_tls
from fleet_server.server import FleetServer, ServerOptions
from fleet_server.store.models import Device, Sample
from shared.enrollment import decode_token

runner = CliRunner()



@pytest.fixture(scope="module")
def ext(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ExternalMosquitto, int, int, Path]]:
    """An external Mosquitto with a plain listener and a TLS listener (its own CA), both on
    127.0.0.1. Yields ``(broker, plain_port, tls_port, ca_file)``."""
    d = tmp_path_factory.mktemp("external")
    init_tls(d, ["127.0.0.1"])  # the administrator's own certificates for this broker
    files = TlsFiles.for_data_dir(d)
    plain, tls = free_port(), free_port()
    broker = start_external_mosquitto(d / "mosquitto", [
        f"listener {plain} 127.0.0.1", "",
        f"listener {tls} 127.0.0.1", f"certfile {files.server_pem}", f"keyfile {files.server_key}",
    ])
    yield broker, plain, tls, files.ca_pem
    broker.stop()


def _password_file(tmp: Path, password: str) -> Path:
    path = tmp / "admin.pw"
    path.write_text(password + "\n")
    path.chmod(0o600)
    return path


def _samples(device_id: str) -> int:
    return Sample.select().where(Sample.device == device_id).count()


def test_server_uses_external_mqtts_broker(ext, tmp_path: Path) -> None:
    broker, _plain, tls_port, ca_file = ext
    url = f"mqtts://127.0.0.1:{tls_port}"
    external = external_broker(url, broker.admin_user, _password_file(tmp_path, broker.admin_password), ca_file)
    assert external is not None and external.tls
    server = FleetServer(ServerOptions(data_dir=tmp_path / "server", mqtt_port=free_port(), local_agent=False,
                                       external_broker=external))
    server.start()
    try:
        assert server.broker is None and not (tmp_path / "server" / "mosquitto").exists()  # nothing managed
        assert server.ingest is not None and server.ingest.connected.wait(5)
        # the dynsec admin account from `mosquitto_ctrl dynsec init` now also holds the server role
        roles = {r["rolename"] for r in server.dynsec.get_client(broker.admin_user)["roles"]}
        assert roles == {"admin", SERVER_ROLE}

        new = add_device(server.dynsec, "far away", server.broker_url, ca_pem=server.ca_pem)
        enrollment = decode_token(new.token)
        assert enrollment.url == url and enrollment.ca_pem == ca_file.read_text()
        agent = start_agent(enroll_agent(tmp_path, new.token, "far"), tmp_path / "far.log")
        try:
            wait_for(lambda: _samples("far-away") >= 1, 15, what="a sample through the external broker")
            delete_device(server.dynsec, "far-away")  # revokes on the external broker: the live session is kicked
            wait_for(lambda: "Administrative action" in read_log(tmp_path / "far.log"), 5, what="the kick")
        finally:
            stop_agent(agent)
        assert Device.get_or_none(Device.id == "far-away") is None
        probe = tls_probe(tls_port, ca_file, "far-away", new.api_key)
        assert probe.connect().is_failure  # the deleted key is refused
        probe.close()
    finally:
        server.stop()
    assert broker.proc.poll() is None  # the server leaves a broker it did not start running


def test_device_commands_reach_external_broker_saved_by_run(ext, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    broker, plain_port, _tls, _ca = ext
    data_dir, url = tmp_path / "server", f"mqtt://127.0.0.1:{plain_port}"
    monkeypatch.setenv("CLAWFLEET_BROKER_ADMIN_PASSWORD", broker.admin_password)
    external = external_broker(url, broker.admin_user, None, None)
    server = FleetServer(ServerOptions(data_dir=data_dir, mqtt_port=free_port(), local_agent=False,
                                       external_broker=external))
    server.start()
    try:
        save_settings(data_dir, 18830, 8883, None, external, None)  # what `run` does after starting
        assert broker.admin_password not in (data_dir / "server.json").read_text()
        args = ["--data-dir", str(data_dir)]
        added = server_cli("device", "add", "cli-remote", *args)
        assert added.exit_code == 0, added.output
        token = next(w for w in added.stdout.split() if w.startswith("cfe1."))
        assert decode_token(token).url == url and "SSH tunnel" not in added.output
        agent = start_agent(enroll_agent(tmp_path, token, "cli"), tmp_path / "cli.log")
        try:
            wait_for(lambda: _samples("cli-remote") >= 1, 15, what="a sample from the CLI-enrolled device")
            deleted = server_cli("device", "delete", "cli-remote", *args)
            assert deleted.exit_code == 0, deleted.output
            wait_for(lambda: "Administrative action" in read_log(tmp_path / "cli.log"), 5, what="the kick")
        finally:
            stop_agent(agent)
        monkeypatch.delenv("CLAWFLEET_BROKER_ADMIN_PASSWORD")
        missing = server_cli("device", "add", "no-password", *args)
        assert missing.exit_code == 2 and "CLAWFLEET_BROKER_ADMIN_PASSWORD" in missing.output
    finally:
        server.stop()


def test_external_broker_flags_are_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLAWFLEET_BROKER_ADMIN_PASSWORD", raising=False)
    with pytest.raises(ValueError, match="password is missing"):
        external_broker("mqtts://broker.example.com:8883", "admin", None, None)
    with pytest.raises(ValueError, match="only allowed to a broker on this machine"):
        ExternalBroker("mqtt://broker.example.com:1883", "admin", "pw")
    with pytest.raises(ValueError, match="need --broker-url"):
        external_broker(None, "admin", None, None)
    with pytest.raises(ValueError, match="needs --broker-admin-user"):
        external_broker("mqtts://broker.example.com:8883", None, None, None)
    monkeypatch.setenv("CLAWFLEET_BROKER_ADMIN_PASSWORD", "x")
    refused = runner.invoke(app, ["run", "--data-dir", str(tmp_path), "--broker-url", "mqtt://10.0.0.5:1883",
                                  "--broker-admin-user", "admin"])
    assert refused.exit_code == 2 and "mqtts://" in refused.output
