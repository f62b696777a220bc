"""CPU cost of ingest's own work per message, without a broker: validation (``classify``, as paho's
network thread runs it) and the batch writer (SQLite file, batches of up to 1,000 messages, the
cache updated after each commit), measured in CPU time so a busy machine changes it little.

    python benchmarks/ingest_pipeline.py --repo CHECKOUT [--messages 20000] [--devices 100]

Imports the server code of ``--repo`` (entry points that exist in older checkouts too:
``classify``, ``BatchWriter``, ``FleetState``, ``open_database``) and prints one JSON object:
``{"telemetry": {"validate_us": …, "write_us": …}, "usage": {…}}`` — CPU microseconds per
message (usage: batches of 20 records). ``bench_ingest.py`` runs it for each checkout it compares.
"""

from __future__ import annotations

import argparse
import json
import queue
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1])
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--devices", type=int, default=100)
    args = ap.parse_args()
    sys.path.insert(0, str(args.repo.resolve()))
    sys.path.insert(1, str(Path(__file__).resolve().parents[1]))
    import paho.mqtt.client as mqtt

    from benchmarks.loadgen import telemetry_payload, usage_payload
    from fleet_server.ingest.subscriber import classify
    from fleet_server.ingest.writer import BatchWriter
    from fleet_server.state import FleetState
    from fleet_server.store.db import open_database
    from fleet_server.store.models import Device

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        database = open_database(Path(tmp))
        ids = [f"pipe-{i:05d}" for i in range(args.devices)]
        with database.atomic():
            for i in range(0, len(ids), 500):
                Device.insert_many([{"id": d, "name": d, "key_hash": "x", "key_hint": "abcd", "created_ms": 1}
                                    for d in ids[i:i + 500]]).execute()
        state = FleetState()
        state.load_from_db()
        for channel, count in (("telemetry", args.messages), ("usage", max(1, args.messages // 10))):
            base = int(time.time() * 1000) - count
            msgs = []
            for k in range(count):
                d = ids[k % len(ids)]
                ts = base + k
                body = telemetry_payload(d, ts) if channel == "telemetry" else usage_payload(d, ts, f"pipe{k:07d}", 20)
                m = mqtt.MQTTMessage(mid=k % 65535 + 1, topic=f"clawfleet/v1/{d}/{channel}".encode())
                m.payload, m.qos = body, 1
                msgs.append(m)
            t0 = time.process_time()
            items = [classify(m, int(time.time() * 1000)) for m in msgs]
            validate = time.process_time() - t0
            q: queue.Queue = queue.Queue()
            for item in items:
                q.put(item)
            writer = BatchWriter(database, q, state, lambda mid, qos: None, Counter())
            writer.stopping.set()  # store what is queued, then return
            t0 = time.process_time()
            writer.run()
            write = time.process_time() - t0
            stored = writer.counters.get(f"stored_{channel}", 0)
            if stored != count:
                raise SystemExit(f"{channel}: stored {stored} of {count} messages ({dict(writer.counters)})")
            out[channel] = {"validate_us": round(validate / count * 1e6, 1), "write_us": round(write / count * 1e6, 1)}
        database.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
