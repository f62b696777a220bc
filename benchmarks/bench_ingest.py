"""Ingest throughput: devices publish telemetry samples and usage batches (QoS 1) to a real managed
Mosquitto; how fast does a FleetServer store them in SQLite?

    .venv/bin/python benchmarks/bench_ingest.py [--devices 10] [--samples 500] [--batches 100]

Prints one table row per kind: messages, records, seconds until all are stored, messages/s.
Needs ``mosquitto`` on PATH. Everything runs on 127.0.0.1 in a temporary directory.
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fleet_server.devices.registry import add_device  # noqa: E402
from fleet_server.server import FleetServer, ServerOptions  # noqa: E402
from fleet_server.store.models import Sample, UsageRecord  # noqa: E402
from shared import schemas  # noqa: E402
from shared.topics import Channel, device_topic  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def now_ms() -> int:
    return int(time.time() * 1000)


def sample(device_id: str, ts: int) -> bytes:
    return schemas.encode(schemas.Telemetry(
        device_id=device_id, ts=ts, cpu_pct=12.5, mem_used_bytes=1 << 30, mem_total_bytes=4 << 30, mem_pct=25,
        disk_used_bytes=10 << 30, disk_total_bytes=100 << 30, disk_pct=10, swap_pct=0, net_rx_bps=1e3,
        net_tx_bps=1e3, load_avg=(0.1, 0.2, 0.3), uptime_s=3600))


def usage(device_id: str, n: int) -> bytes:
    records = [schemas.UsageRecord(id=uuid.uuid4().hex, ts=now_ms(), input_tokens=1000, output_tokens=50,
                                   cache_read_tokens=10, cost_usd=0.01) for _ in range(n)]
    return schemas.encode(schemas.UsageBatch(device_id=device_id, ts=now_ms(), records=records))


def connect(server: FleetServer, device_id: str, key: str) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device_id, protocol=mqtt.MQTTv5)
    c.username_pw_set(device_id, key)
    c.max_inflight_messages_set(100)
    c.connect("127.0.0.1", server.opts.mqtt_port)
    c.loop_start()
    return c


def wait_until(predicate, timeout: float = 300) -> float:
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise TimeoutError("not everything was stored in time")
        time.sleep(0.02)
    return time.monotonic() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=10)
    ap.add_argument("--samples", type=int, default=500, help="telemetry samples per device")
    ap.add_argument("--batches", type=int, default=100, help="usage batches per device (10 records each)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = FleetServer(ServerOptions(data_dir=Path(tmp) / "server", mqtt_port=free_port(), local_agent=False))
        server.start()
        try:
            assert server.ingest is not None and server.ingest.connected.wait(10)
            clients = []
            for i in range(args.devices):
                new = add_device(server.dynsec, f"bench {i}", server.broker_url)
                clients.append((new.device.id, connect(server, new.device.id, new.api_key)))
            time.sleep(0.5)
            rows = []
            base = now_ms() - args.samples * 1000
            start = time.monotonic()
            for k in range(args.samples):
                for device_id, c in clients:
                    c.publish(device_topic(device_id, Channel.TELEMETRY), sample(device_id, base + k * 1000), qos=1)
            n = args.samples * args.devices
            took = (time.monotonic() - start) + wait_until(lambda: Sample.select().count() >= n)
            rows.append(("telemetry", n, n, took))
            start = time.monotonic()
            for _ in range(args.batches):
                for device_id, c in clients:
                    c.publish(device_topic(device_id, Channel.USAGE), usage(device_id, 10), qos=1)
            n = args.batches * args.devices
            took = (time.monotonic() - start) + wait_until(lambda: UsageRecord.select().count() >= n * 10)
            rows.append(("usage (10 records)", n, n * 10, took))
            for _, c in clients:
                c.loop_stop()
                c.disconnect()
        finally:
            server.stop()
    print(f"{'kind':20} {'messages':>9} {'records':>9} {'seconds':>8} {'msg/s':>8}")
    for kind, msgs, recs, took in rows:
        print(f"{kind:20} {msgs:9d} {recs:9d} {took:8.2f} {msgs / took:8.0f}")


if __name__ == "__main__":
    main()
