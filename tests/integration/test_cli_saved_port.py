"""``clawfleet-server device …`` finds the managed broker on the port the last ``run`` saved in
``<data dir>/server.json`` (a server on a non-default --mqtt-port), without --mqtt-port."""

from __future__ import annotations

from e2e_helpers import server_cli
from mqtt_helpers import connect_probe

from fleet_server.cli.tls import save_settings
from fleet_server.server import FleetServer
from shared.enrollment import decode_token


def test_device_add_uses_the_saved_mqtt_port(fleet: FleetServer) -> None:
    data_dir, port = fleet.opts.data_dir, fleet.opts.mqtt_port
    assert port != 18830
    save_settings(data_dir, port, 8883, None, None, None)  # what 'run' does after start
    res = server_cli("device", "add", "Saved Port Box", "--data-dir", str(data_dir))
    assert res.exit_code == 0, res.output
    token = res.output.split("keep it secret):\n")[1].split()[0]
    enr = decode_token(token)
    assert enr.url == f"mqtt://127.0.0.1:{port}"
    probe, rc = connect_probe("127.0.0.1", port, enr.device_id, enr.api_key)
    probe.close()
    assert rc.value == 0
    assert "clawfleet-agent enroll\n" in res.output  # the advice keeps the token off the command line


def test_integration_commands_use_the_saved_mqtt_port(fleet: FleetServer) -> None:
    """``integration add/revoke`` used to connect to 18830 whatever ``run`` saved (a listener there got
    the broker admin's password); they now talk to the server's own broker."""
    data_dir, port = fleet.opts.data_dir, fleet.opts.mqtt_port
    save_settings(data_dir, port, 8883, None, None, None)
    res = server_cli("integration", "add", "grafana", "--data-dir", str(data_dir))
    assert res.exit_code == 0, res.output
    assert f"mqtt://127.0.0.1:{port}" in res.output
    username = res.output.split("username:")[1].split()[0]
    password = res.output.split("password:")[1].split()[0]
    probe, rc = connect_probe("127.0.0.1", port, username, password)
    probe.close()
    assert rc.value == 0, "the account exists on the server's broker"
    res = server_cli("integration", "revoke", "grafana", "--data-dir", str(data_dir))
    assert res.exit_code == 0, res.output
    probe, rc = connect_probe("127.0.0.1", port, username, password)
    probe.close()
    assert rc.is_failure
