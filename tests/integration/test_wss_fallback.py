"""MQTT over secure WebSockets: the managed Mosquitto's WSS listener (same certificate, accounts and ACLs)
and the agent's fallback to it when the broker's MQTT/TLS port is blocked. Real Mosquitto 2.0.11 (its
libwebsockets listener), real certificates from ``tls init``, a real agent; the "firewall" is a port
that resets every connection (:class:`net_helpers.PortGate`)."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from e2e_helpers import RunningAgent, wait_for
from fixtures_openclaw import make_latest_state
from mqtt_helpers import free_port
from net_helpers import PortGate
from paho.mqtt.enums import CallbackAPIVersion
from tls_helpers import enroll_agent
from typer.testing import CliRunner

from agent_tray.config import load_config
from broker.mosquitto import find_mosquitto, render_config
from fleet_server.cli.main import app
from fleet_server.devices.registry import add_device
from fleet_server.endpoints.broker_link import managed_broker_config
from fleet_server.endpoints.tls import TlsFiles
from fleet_server.server import FleetServer, ServerOptions
from fleet_server.store.models import Sample, UsageRecord
from shared.enrollment import decode_token


@pytest.fixture
def wss_fleet(tmp_path: Path) -> Iterator[FleetServer]:
    """A FleetServer with certificates from the real ``tls init``: TLS and WSS listeners on free ports
    of 127.0.0.1, no local agent."""
    data_dir = tmp_path / "server"
    res = CliRunner().invoke(app, ["tls", "init", "--data-dir", str(data_dir), "--host", "127.0.0.1"])
    assert res.exit_code == 0, res.output
    server = FleetServer(ServerOptions(data_dir=data_dir, mqtt_port=free_port(), tls_port=free_port(),
                                       tls_host="127.0.0.1", wss_port=free_port(), local_agent=False))
    server.start()
    assert server.ingest is not None and server.ingest.connected.wait(5)
    yield server
    server.stop()


def _token(fleet: FleetServer, name: str, tls_port: int | None = None) -> str:
    """An enrollment token from the server's endpoint; ``tls_port`` replaces the direct port (a blocked one)."""
    ep = fleet.endpoint
    url = ep.url if tls_port is None else f"mqtts://127.0.0.1:{tls_port}"
    return add_device(fleet.dynsec, name, url, ca_pem=ep.ca_pem, token_extra=ep.token_extra()).token


def _ws_client(fleet: FleetServer, device: str, key: str) -> tuple[mqtt.Client, list]:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device, protocol=mqtt.MQTTv5, transport="websockets")
    client.username_pw_set(device, key)
    client.tls_set_context(ssl.create_default_context(cafile=str(TlsFiles.for_data_dir(fleet.opts.data_dir).ca_pem)))
    client.ws_set_options(path="/mqtt")
    answers: list = []
    client.on_connect = lambda _c, _u, _f, reason, _p: answers.append(reason)
    return client, answers


def test_config_has_a_wss_listener_with_the_tls_certificate(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["tls", "init", "--data-dir", str(tmp_path), "--host", "fleet.example.test"])
    assert res.exit_code == 0, res.output
    text = render_config(managed_broker_config(tmp_path, 18830, 8883, None, 443), find_mosquitto())
    wss = text.split("listener 443\n", 1)[1]
    files = TlsFiles.for_data_dir(tmp_path)
    assert wss.startswith("protocol websockets\n")
    assert f"certfile {files.server_pem}" in wss and f"keyfile {files.server_key}" in wss
    with pytest.raises(ValueError, match="tls init"):
        managed_broker_config(tmp_path / "no-tls", 18830, 8883, None, 443)


def test_wss_listener_takes_the_same_accounts(wss_fleet: FleetServer) -> None:
    token = decode_token(_token(wss_fleet, "ws-box"))
    assert token.wss_url == f"wss://127.0.0.1:{wss_fleet.opts.wss_port}/mqtt"
    assert token.update_key and token.url.startswith("mqtts://")
    for key, refused in ((token.api_key, False), ("wrong-key-" + "x" * 30, True)):
        client, answers = _ws_client(wss_fleet, "ws-box", key)
        client.connect("127.0.0.1", wss_fleet.opts.wss_port, keepalive=10)
        client.loop_start()
        try:
            wait_for(lambda answers=answers: answers, 10, what="CONNACK over WebSockets")
        finally:
            client.disconnect()
            client.loop_stop()
        assert answers[0].is_failure == refused, answers[0]


def test_agent_falls_back_to_wss_with_the_direct_port_blocked_and_delivers_telemetry_and_usage(
        wss_fleet: FleetServer, tmp_path: Path) -> None:
    gate = PortGate(target=wss_fleet.opts.tls_port, blocked=True)
    try:
        token = _token(wss_fleet, "walled", tls_port=gate.port)
        path = enroll_agent(tmp_path, token, "walled")  # the real enroll: its key check falls back too
        cfg = load_config(path).model_copy(update={"openclaw_state_dir": str(make_latest_state(tmp_path))})
        agent = RunningAgent(cfg)
        try:
            service = agent.service
            wait_for(lambda: service.publisher.connected.is_set(), 30, what="a connection over WebSockets")
            route = service.publisher.routes.connected_route
            assert route is not None and route.kind == "wss" and route.port == wss_fleet.opts.wss_port
            status = service.status()
            assert status.summary.startswith("connected via WebSockets")
            assert f"port {gate.port} is blocked" in status.route
            wait_for(lambda: Sample.select().where(Sample.device == "walled").count() >= 2, 30,
                     what="telemetry over WebSockets")
            wait_for(lambda: UsageRecord.select().where(UsageRecord.device == "walled").count() > 0, 30,
                     what="usage records over WebSockets")
            assert wss_fleet.state.get("walled").status == "online"

            # the firewall opens: the agent checks the direct port and moves back to it
            service.publisher.routes.retry_direct_s = 1.0
            gate.blocked = False
            wait_for(lambda: (r := service.publisher.routes.connected_route) is not None and r.kind == "direct", 60,
                     what="the agent back on the direct port")
            samples = Sample.select().where(Sample.device == "walled").count()
            wait_for(lambda: Sample.select().where(Sample.device == "walled").count() > samples + 1, 20,
                     what="telemetry over the direct port")
            status = service.status()
            assert status.route is None and status.connected and "WebSockets" not in status.summary
        finally:
            agent.stop()
    finally:
        gate.close()
