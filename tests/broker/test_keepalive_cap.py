"""A client asking for keepalive 0 (never time out, so its last will would never fire) is told
the broker's maximum instead (MQTT 5 server keepalive, Mosquitto's ``max_keepalive``)."""

from __future__ import annotations

import threading

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


def test_keepalive_0_is_capped_to_max_keepalive(broker_factory):
    broker = broker_factory(max_keepalive_s=120)
    got: dict = {}
    done = threading.Event()

    def on_connect(_c, _u, _f, reason, props):
        got["reason"], got["server_keepalive"] = reason, getattr(props, "ServerKeepAlive", None)
        done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="keepalive-zero", protocol=mqtt.MQTTv5)
    client.username_pw_set(broker.admin.username, broker.admin.password)
    client.on_connect = on_connect
    client.connect("127.0.0.1", broker.cfg.port, keepalive=0)
    client.loop_start()
    try:
        assert done.wait(5)
        assert not got["reason"].is_failure
        assert got["server_keepalive"] == 120
    finally:
        client.disconnect()
        client.loop_stop()
