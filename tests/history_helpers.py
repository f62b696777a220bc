"""Seeding helpers for store tests and the history benchmark: devices and raw samples."""

from __future__ import annotations

import math
import random
import time

from fleet_server.store.models import Device, Sample


def add_device(device_id: str, created_ms: int = 0, status: str = "online") -> None:
    """A devices-table row (no key: the tests never connect)."""
    Device.create(id=device_id, name=device_id, key_hash="0" * 64, key_hint="test", created_ms=created_ms,
                  status=status)


def sample_row(device_id: str, ts: int, rng: random.Random, load: bool = True, received_ms: int | None = None,
               on_time: bool = False) -> dict:
    """A plausible raw sample at ``ts`` (epoch ms) with random but bounded values, received by the
    server at ``received_ms`` (default: now; ``on_time``: at ``ts``)."""
    if received_ms is None:
        received_ms = ts if on_time else int(time.time() * 1000)
    cpu = 50 + 40 * math.sin(ts / 3.6e6) + rng.uniform(-5, 5)
    load1 = rng.uniform(0, 4) if load else None
    return {"device": device_id, "ts": ts, "cpu_pct": max(0.0, min(100.0, cpu)), "mem_used_bytes": 4 * 2**30,
            "mem_total_bytes": 8 * 2**30, "mem_pct": rng.uniform(40, 60), "disk_used_bytes": 50 * 2**30,
            "disk_total_bytes": 100 * 2**30, "disk_pct": 50 + ts / 1e12, "swap_pct": rng.uniform(0, 5),
            "net_rx_bps": rng.uniform(0, 1e6), "net_tx_bps": rng.uniform(0, 1e5),
            "load1": load1, "load5": load1 and load1 * 0.9, "load15": load1 and load1 * 0.8, "uptime_s": ts / 1000,
            "openclaw_up": True, "received_ms": received_ms}


def add_samples(device_id: str, start_ms: int, end_ms: int, step_ms: int = 30_000, seed: int = 1,
                load: bool = True, received_ms: int | None = None, on_time: bool = False) -> list[dict]:
    """Insert samples every ``step_ms`` in ``[start_ms, end_ms)``, received by the server at
    ``received_ms`` (default: now; ``on_time``: each at its own ``ts``); returns the rows."""
    rng = random.Random(seed)
    rows = [sample_row(device_id, ts, rng, load, received_ms, on_time) for ts in range(start_ms, end_ms, step_ms)]
    for i in range(0, len(rows), 500):
        Sample.insert_many(rows[i:i + 500]).execute()
    return rows
