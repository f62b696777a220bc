"""CPU cost of ingest's own work per message, without a broker: validation (``classify``, as paho's
network thread runs it) and the batch writer (SQLite file, batches of up to 1,000 messages, the
cache updated after each commit), measured in CPU time so a busy machine changes it little.

    python benchmarks/ingest_pipeline.py --repo CHECKOUT [--messages 20000] [--devices 100]

Imports the server code of ``--repo`` (entry points that exist in older checkouts too:
``classify``, ``BatchWriter``, ``FleetState``, ``open_database``) and prints one JSON object:
``{"telemetry": {"validate_us": …, "write_us": …}, "usage": {…}}`` — CPU microseconds per
message (usage: batches of 20 records). For a checkout with delivery receipts also
``"telemetry+receipts"``: the same samples stamped as agents send them, the writer recording receipt
marks, and ``receipt_us``: building one device's receipt payload (done at most once a second per
device). ``bench_ingest.py`` runs it for each checkout it compares.
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
        try:
            from fleet_server.ingest import receipts
            from shared.payloads import stamp
        except ImportError:  # a checkout from before receipts
            receipts = None
        cases = [("telemetry", args.messages), ("usage", max(1, args.messages // 10))]
        if receipts is not None:
            cases.append(("telemetry+receipts", args.messages))
        for channel, count in cases:
            base = int(time.time() * 1000) - count - (2 * count if channel != "telemetry" else 0)
            msgs = []
            for k in range(count):
                d = ids[k % len(ids)]
                ts = base + k
                body = usage_payload(d, ts, f"pipe{k:07d}", 20) if channel == "usage" else telemetry_payload(d, ts)
                if channel == "telemetry+receipts":
                    body = stamp(body, "0123456789abcdef", k // len(ids) + 1, 1)
                m = mqtt.MQTTMessage(mid=k % 65535 + 1, topic=f"clawfleet/v1/{d}/{channel.split('+')[0]}".encode())
                m.payload, m.qos = body, 1
                msgs.append(m)
            t0 = time.process_time()
            items = [classify(m, int(time.time() * 1000)) for m in msgs]
            validate = time.process_time() - t0
            q: queue.Queue = queue.Queue()
            for item in items:
                q.put(item)
            offered: list = []
            kw = {"on_receipts": offered.append} if channel == "telemetry+receipts" else {}
            writer = BatchWriter(database, q, state, lambda mid, qos: None, Counter(), **kw)
            writer.stopping.set()  # store what is queued, then return
            t0 = time.process_time()
            writer.run()
            write = time.process_time() - t0
            stored = writer.counters.get(f"stored_{channel.split('+')[0]}", 0)
            if stored != count:
                raise SystemExit(f"{channel}: stored {stored} of {count} messages ({dict(writer.counters)})")
            out[channel] = {"validate_us": round(validate / count * 1e6, 1), "write_us": round(write / count * 1e6, 1)}
            if offered:
                marks = [m for batch in offered for m in batch.values()]
                t0 = time.process_time()
                for m in marks:
                    m.receipt(base)
                out[channel]["receipt_us"] = round((time.process_time() - t0) / len(marks) * 1e6, 1)
        database.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
