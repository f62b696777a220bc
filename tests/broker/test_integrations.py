"""Read-only MQTT integration accounts on a real Mosquitto: receive telemetry; cannot publish anything,
nor read $CONTROL, commands or other roots (reason codes); revoked at once; CLI add/list/revoke."""

from __future__ import annotations

import pytest
from mqtt_helpers import connect_probe, free_port, make_device, unique_device_id
from typer.testing import CliRunner

from broker.mosquitto import BrokerConfig, ManagedMosquitto
from fleet_server.cli.main import app as cli_app
from fleet_server.integrations.accounts import (
    IntegrationError,
    add_integration,
    list_integrations,
    parse_channels,
    revoke_integration,
)
from fleet_server.store.db import open_database
from fleet_server.store.models import AuditEvent
from shared.topics import SERVER_STATUS_TOPIC, Channel, device_topic

NOT_AUTHORIZED = 0x87
ADMINISTRATIVE_ACTION = 0x98
GRANTED_QOS_1 = 0x01


@pytest.fixture
def db(tmp_path):
    return open_database(tmp_path / "server")


def test_integration_reads_telemetry_and_nothing_else(db, dynsec, managed_broker):
    port = managed_broker.cfg.port
    row, password = add_integration(dynsec, "home-assistant", parse_channels(None), "test")
    assert row.username == "integration.home-assistant" and password not in (row.channels + row.username)
    dev = unique_device_id()
    device, rc = connect_probe("127.0.0.1", port, dev, make_device(dynsec, dev))
    ha, rc2 = connect_probe("127.0.0.1", port, row.username, password)
    try:
        assert rc.value == 0 and rc2.value == 0
        for allowed in ("clawfleet/v1/+/telemetry", "clawfleet/v1/+/status", f"clawfleet/v1/{dev}/meta"):
            assert ha.subscribe(allowed).value == GRANTED_QOS_1, allowed
        for denied in ("$CONTROL/dynamic-security/#", "$CONTROL/dynamic-security/v1/response", "#",
                       "clawfleet/v1/#", "clawfleet/v1/+/cmd", "clawfleet/v1/+/usage", "other/root/#", "$SYS/#"):
            assert ha.subscribe(denied).value == NOT_AUTHORIZED, denied
        telemetry = device_topic(dev, Channel.TELEMETRY)
        assert device.publish(telemetry, b'{"v":1}').value == 0
        msg = ha.next_message()
        assert msg.topic == telemetry and msg.payload == b'{"v":1}'
        for topic in (telemetry, device_topic(dev, Channel.CMD), SERVER_STATUS_TOPIC,
                      "$CONTROL/dynamic-security/v1", "other/root"):
            assert ha.publish(topic, b"x").value == NOT_AUTHORIZED, topic
        revoke_integration(dynsec, "home-assistant", "test")
        assert ha.wait_disconnect(timeout=2).reason.value == ADMINISTRATIVE_ACTION
        again, rc3 = connect_probe("127.0.0.1", port, row.username, password)
        again.close()
        assert rc3.value == NOT_AUTHORIZED
    finally:
        device.close()
        ha.close()
    assert list_integrations() == []
    assert [e.action for e in AuditEvent.select().order_by(AuditEvent.id)] == ["integration.add",
                                                                              "integration.revoke"]


def test_usage_and_logs_only_when_asked(db, dynsec, managed_broker):
    row, password = add_integration(dynsec, "node-red", parse_channels("telemetry,usage,logs"), "test")
    probe, rc = connect_probe("127.0.0.1", managed_broker.cfg.port, row.username, password)
    try:
        assert probe.subscribe("clawfleet/v1/+/usage").value == GRANTED_QOS_1
        assert probe.subscribe("clawfleet/v1/+/status").value == NOT_AUTHORIZED
    finally:
        probe.close()
        revoke_integration(dynsec, "node-red", "test")
    with pytest.raises(IntegrationError, match="channel 'cmd'"):
        parse_channels("telemetry,cmd")
    with pytest.raises(IntegrationError, match="integration names"):
        add_integration(dynsec, "Bad Name", parse_channels(None), "test")


def test_cli_add_list_revoke(tmp_path):
    data, port = tmp_path / "data", free_port()
    broker = ManagedMosquitto(BrokerConfig(data_dir=data, port=port))
    broker.start()
    try:
        runner = CliRunner()
        opts = ["--data-dir", str(data), "--mqtt-port", str(port)]
        r = runner.invoke(cli_app, ["integration", "add", "grafana-mqtt", *opts])
        assert r.exit_code == 0, r.output
        password = r.output.split("password: ")[1].split()[0]
        assert "username: integration.grafana-mqtt" in r.output
        listing = runner.invoke(cli_app, ["integration", "list", "--data-dir", str(data)]).output
        assert "grafana-mqtt" in listing and password not in listing
        probe, rc = connect_probe("127.0.0.1", port, "integration.grafana-mqtt", password)
        probe.close()
        assert rc.value == 0
        assert runner.invoke(cli_app, ["integration", "add", "grafana-mqtt", *opts]).exit_code == 2
        assert runner.invoke(cli_app, ["integration", "revoke", "grafana-mqtt", *opts]).exit_code == 0
        probe, rc = connect_probe("127.0.0.1", port, "integration.grafana-mqtt", password)
        probe.close()
        assert rc.value == NOT_AUTHORIZED
    finally:
        broker.stop()
