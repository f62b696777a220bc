"""What saving Mosquitto's persistence on every change costs, in QoS 1 messages per second.

Run: ``.venv/bin/python benchmarks/bench_broker_persistence.py [--messages N] [--payload BYTES]``

For each persistence setting it starts a managed Mosquitto on 127.0.0.1 (a free port, a temp
dir), enrolls one device and measures two cases with a paho MQTT 5 publisher that keeps 50
messages in flight (as the agent does):

* **live** — a persistent-session subscriber (the server account, as ingest) is connected and
  consumes: messages/s from the first publish until the subscriber has them all;
* **backlog** — the subscriber's session exists but it is disconnected, so the broker queues
  every message for it (the state that grows the persistence file): PUBACKs/s.

It also reports how many acknowledged messages of the backlog a SIGKILL of the broker lost
(the subscriber reconnects to the restarted broker and counts what is left of its queue).
"""

from __future__ import annotations

import argparse
import os
import queue
import secrets
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.local import free_port
from broker.mosquitto import BrokerConfig, ManagedMosquitto

DEVICE = "bench-dev"
WINDOW = 50
SETTINGS = [
    ("every 60 s (before)", dict(autosave_on_changes=False, autosave_interval_s=60)),
    ("on changes, every 1 (default)", dict(autosave_on_changes=True, autosave_changes=1)),
    ("on changes, every 10", dict(autosave_on_changes=True, autosave_changes=10)),
    ("on changes, every 100", dict(autosave_on_changes=True, autosave_changes=100)),
]


def _client(client_id: str, user: str, password: str, port: int, persistent: bool = False,
            on_message=None) -> tuple[mqtt.Client, threading.Event]:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    c.username_pw_set(user, password)
    c.max_inflight_messages_set(WINDOW)
    up = threading.Event()
    c.on_connect = lambda *_a: up.set()
    if on_message:
        c.on_message = on_message
    props = Properties(mqtt.PacketTypes.CONNECT)
    props.SessionExpiryInterval = 86400 if persistent else 0
    c.connect("127.0.0.1", port, keepalive=30, clean_start=not persistent, properties=props)
    c.loop_start()
    if not up.wait(5):
        raise RuntimeError("no CONNACK within 5 s")
    return c, up


def _publish_all(pub: mqtt.Client, topic: str, n: int, payload: bytes) -> float:
    """Publish ``n`` QoS 1 messages with at most WINDOW in flight; seconds until the last PUBACK."""
    window = threading.Semaphore(WINDOW)
    done = threading.Semaphore(0)

    def on_publish(*_a: object) -> None:
        window.release()
        done.release()

    pub.on_publish = on_publish
    t0 = time.perf_counter()
    for _ in range(n):
        if not window.acquire(timeout=30):
            raise RuntimeError("no PUBACK within 30 s")
        pub.publish(topic, payload, qos=1)
    for _ in range(n):
        if not done.acquire(timeout=30):
            raise RuntimeError("no PUBACK within 30 s")
    return time.perf_counter() - t0


def _publish_from_all(pubs: list[tuple[str, mqtt.Client]], n: int, payload: bytes) -> float:
    """Every publisher sends its share of ``n`` messages at the same time; seconds until all PUBACKs."""
    share = n // len(pubs)
    threads = [threading.Thread(target=_publish_all, args=(c, f"clawfleet/v1/{d}/logs", share, payload))
               for d, c in pubs]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def run_setting(label: str, kw: dict, n: int, size: int, devices: int) -> tuple[str, float, float, int]:
    with tempfile.TemporaryDirectory(prefix="cf-bench-broker-") as tmp:
        broker = ManagedMosquitto(BrokerConfig(data_dir=Path(tmp), port=free_port(), **kw))
        broker.start()
        try:
            port, admin = broker.cfg.port, broker.admin
            keys = {f"{DEVICE}-{i}": "cfk_" + secrets.token_urlsafe(32) for i in range(devices)}
            with broker.admin_client() as dynsec:
                dynsec.ensure_server_role()
                for device, key in keys.items():
                    dynsec.create_device(device, key)
            n -= n % devices
            payload = os.urandom(size // 2).hex().encode()

            # live: subscriber connected and consuming
            got = queue.Queue()
            sub, _ = _client("bench-ingest", admin.username, admin.password, port, persistent=True,
                             on_message=lambda _c, _u, m: got.put(1))
            sub.subscribe("clawfleet/v1/+/logs", qos=1)
            time.sleep(0.2)
            pubs = [(d, _client(d, d, k, port)[0]) for d, k in keys.items()]
            t0 = time.perf_counter()
            _publish_from_all(pubs, n, payload)
            for _ in range(n):
                got.get(timeout=60)
            live = n / (time.perf_counter() - t0)

            # backlog: subscriber away, the broker queues for its session
            sub.disconnect()
            sub.loop_stop()
            time.sleep(0.2)
            backlog = n / _publish_from_all(pubs, n, payload)
            for _, pub in pubs:
                pub.disconnect()
                pub.loop_stop()
            time.sleep(0.2)  # the bound that remains: the last loop iteration's messages

            old = broker.pid
            os.kill(old, signal.SIGKILL)
            deadline = time.monotonic() + 15
            while broker.pid in (None, old) and time.monotonic() < deadline:
                time.sleep(0.05)
            broker.wait_ready(10)
            got = queue.Queue()
            sub, _ = _client("bench-ingest", admin.username, admin.password, port, persistent=True,
                             on_message=lambda _c, _u, m: got.put(1))
            kept = 0
            try:
                while kept < n:
                    got.get(timeout=3)
                    kept += 1
            except queue.Empty:
                pass
            sub.disconnect()
            sub.loop_stop()
            return label, live, backlog, n - kept, n
        finally:
            broker.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=1000, help="messages per case (default 1000)")
    ap.add_argument("--payload", type=int, default=512, help="payload size in bytes (default 512)")
    ap.add_argument("--devices", type=int, nargs="+", default=[1, 20],
                    help="publishing devices at once, one table row each (default: 1 20)")
    args = ap.parse_args()
    print(f"{args.messages} QoS 1 messages of {args.payload} B per case, {WINDOW} in flight per device, "
          "broker on loopback\n")
    print(f"{'persistence save':32} {'devices':>7} {'live msg/s':>11} {'backlog msg/s':>14} {'lost on SIGKILL':>16}")
    for label, kw in SETTINGS:
        for devices in args.devices:
            _, live, backlog, lost, n = run_setting(label, kw, args.messages, args.payload, devices)
            print(f"{label:32} {devices:7} {live:11.0f} {backlog:14.0f} {lost:>9} of {n}", flush=True)


if __name__ == "__main__":
    main()
