"""A fleet of many devices seeded straight into a data dir (for browser tests and bench_dashboard):
registry rows with meta, tags and one sample each, some with real broker credentials."""

from __future__ import annotations

import random
from pathlib import Path

from shared import schemas
from shared.clock import now_ms

TAGS = ("prod", "staging", "edge", "gpu", "eu", "us")


def telemetry(device_id: str, cpu: float, ts: int | None = None) -> schemas.Telemetry:
    """A plausible telemetry sample (OpenClaw gateway up) of ``device_id``."""
    return schemas.Telemetry(
        device_id=device_id, ts=ts or now_ms(), cpu_pct=cpu, mem_used_bytes=3 << 30, mem_total_bytes=8 << 30,
        mem_pct=37.5, disk_used_bytes=40 << 30, disk_total_bytes=100 << 30, disk_pct=40, swap_pct=1,
        net_rx_bps=2e4, net_tx_bps=5e3, load_avg=(0.3, 0.2, 0.1), uptime_s=86_400,
        openclaw=schemas.OpenClawState(installed=True, up=True, port=18789, version="2026.9.6"))


def seed(data_dir: Path, devices: int, live: int, mqtt_port: int, quiet: bool = False) -> dict[str, str]:
    """Seed ``devices`` devices into ``data_dir`` (server not running); the first ``live`` ("live 00000",
    id ``live-00000``, …) are enrolled on the managed broker (started on ``mqtt_port`` for this) as
    ``device add`` does, the others (``seed-00000``, …) exist only in the store (the server's start-up
    reconciliation then marks them "needs a new key"). Every device gets meta (host ``host-NNNNN``),
    two of :data:`TAGS` and one sample. Returns ``{device id: API key}`` of the enrolled devices."""
    from broker.config import BrokerConfig
    from broker.mosquitto import ManagedMosquitto
    from fleet_server.devices.registry import add_device
    from fleet_server.store.db import open_database
    from fleet_server.store.models import Device, Sample
    from fleet_server.store.rows import meta_json, telemetry_row

    database = open_database(data_dir)
    keys: dict[str, str] = {}
    if live:
        broker = ManagedMosquitto(BrokerConfig(data_dir=data_dir, port=mqtt_port))
        broker.start()
        try:
            with broker.admin_client(client_id="bench-seed") as ds:
                for i in range(live):
                    new = add_device(ds, f"live {i:05d}", f"mqtt://127.0.0.1:{mqtt_port}")
                    keys[new.device.id] = new.api_key
                    if (i + 1) % 100 == 0 and not quiet:
                        print(f"\r  credentials for {i + 1}/{live} devices", end="", flush=True)
        finally:
            broker.stop()
        if not quiet:
            print()
    rng, ts = random.Random(1), now_ms()
    ids = list(keys)
    rows = [{"id": f"seed-{i:05d}", "name": f"seed {i:05d}", "key_hash": "0" * 64, "key_hint": "seed",
             "created_ms": ts} for i in range(devices - live)]
    with database.atomic():
        for i in range(0, len(rows), 500):
            Device.insert_many(rows[i:i + 500]).execute()
    ids += [r["id"] for r in rows]
    samples = []
    with database.atomic():
        for i, device_id in enumerate(ids):
            meta = schemas.Meta(device_id=device_id, ts=ts, hostname=f"host-{i:05d}", os="Linux", os_version="6.1",
                                arch="x86_64", agent_version="0.1.0", cpu_count=4, mem_total_bytes=8 << 30,
                                disk_total_bytes=100 << 30, boot_time_ms=ts - 86_400_000, openclaw_version="2026.9.6")
            Device.update(meta_json=meta_json(meta), tags=",".join(rng.sample(TAGS, 2)), status="online",
                          status_ms=ts, last_seen_ms=ts).where(Device.id == device_id).execute()
            samples.append(telemetry_row(telemetry(device_id, rng.uniform(1, 90), ts)))
        for i in range(0, len(samples), 500):
            Sample.insert_many(samples[i:i + 500]).execute()
    database.close()
    if not quiet:
        print(f"  seeded {len(ids):,} devices ({len(keys):,} with broker credentials)")
    return keys
