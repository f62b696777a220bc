"""The managed Mosquitto's persistence with the shipped settings (real broker): it no longer rewrites
its file for every message (durability is the agents' outbox and the server's receipts, see
tests/chaos and tests/integration/test_receipts.py), and a clean stop still keeps retained messages
and ingest's queued session."""

from __future__ import annotations

import queue

import paho.mqtt.client as mqtt
import psutil
from e2e_helpers import wait_for
from mqtt_helpers import connect_probe, make_device
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties

from broker.config import BrokerConfig
from broker.mosquitto import ManagedMosquitto

MESSAGES = 2000


def persistent_session(broker: ManagedMosquitto, client_id: str) -> tuple[mqtt.Client, queue.Queue, dict]:
    """A server-account client with a 1-day session (as ingest has), connected; returns it, its
    received messages and its CONNACK flags."""
    got: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
    flags: dict = {}
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    c.username_pw_set(broker.admin.username, broker.admin.password)
    c.on_message = lambda _c, _u, msg: got.put(msg)
    c.on_connect = lambda _c, _u, f, rc, _p: flags.update(session_present=f.session_present, rc=rc)
    props = Properties(mqtt.PacketTypes.CONNECT)
    props.SessionExpiryInterval = 86400
    c.connect("127.0.0.1", broker.cfg.port, keepalive=30, clean_start=False, properties=props)
    c.loop_start()
    wait_for(lambda: "rc" in flags, timeout=5, what="CONNACK")
    return c, got, flags


def _written(broker: ManagedMosquitto) -> int:
    assert broker.pid is not None
    return psutil.Process(broker.pid).io_counters().write_bytes


def test_shipped_settings_save_periodically_not_per_message(broker_factory, tmp_path):
    shipped = BrokerConfig(data_dir=tmp_path)  # the defaults
    assert (shipped.persistence, shipped.autosave_on_changes, shipped.autosave_interval_s) == (True, False, 300)
    broker = broker_factory()
    conf = broker.cfg.conf_path.read_text()
    assert "autosave_on_changes false\nautosave_interval 300\n" in conf
    with broker.admin_client() as dynsec:
        dynsec.ensure_server_role()
        key = make_device(dynsec, "disk-dev")
    sub, _, _ = persistent_session(broker, "disk-ingest")
    sub.subscribe("clawfleet/v1/+/+", qos=1)
    sub.disconnect()  # the server away: the broker queues everything for its session
    sub.loop_stop()
    before = _written(broker)
    probe, rc = connect_probe("127.0.0.1", broker.cfg.port, "disk-dev", key)
    assert rc.value == 0
    with probe:
        for i in range(MESSAGES):  # retained telemetry, as agents send it, and a growing queue
            topic = "clawfleet/v1/disk-dev/" + ("telemetry" if i % 2 else "logs")
            assert probe.publish(topic, b"x" * 600, qos=1, retain=bool(i % 2)).value == 0
    written = _written(broker) - before
    # per-change saving rewrote the whole file (all retained messages plus the queue) for each message:
    # 0.72 MB per message on average here (measured); now nothing is written until the next periodic save
    assert written < 64 * 1024, f"{written} bytes written for {MESSAGES} messages"


def test_a_clean_stop_keeps_retained_messages_and_the_queued_session(broker_factory):
    broker = broker_factory()
    with broker.admin_client() as dynsec:
        dynsec.ensure_server_role()
        key = make_device(dynsec, "stop-dev")
    sub, _, _ = persistent_session(broker, "stop-ingest")
    sub.subscribe("clawfleet/v1/+/logs", qos=1)
    sub.disconnect()
    sub.loop_stop()
    probe, rc = connect_probe("127.0.0.1", broker.cfg.port, "stop-dev", key)
    with probe:
        assert not probe.publish("clawfleet/v1/stop-dev/status", b"{}", qos=1, retain=True).is_failure
        for i in range(20):
            assert probe.publish("clawfleet/v1/stop-dev/logs", f"record {i}".encode(), qos=1).value == 0
    broker.stop()  # SIGTERM: Mosquitto saves before it exits
    broker.start()
    sub, got, flags = persistent_session(broker, "stop-ingest")
    try:
        assert flags["session_present"]
        wait_for(lambda: got.qsize() >= 20, 10, what="the queued messages after the restart")
        sub.subscribe("clawfleet/v1/+/status", qos=1)
        wait_for(lambda: any(m.retain and m.topic.endswith("/status") for m in list(got.queue)), 10,
                 what="the retained status after the restart")
    finally:
        sub.disconnect()
        sub.loop_stop()
