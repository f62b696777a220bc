"""What one hostile device or one price change costs everyone else, measured as issue 15 did.

Run: ``.venv/bin/python benchmarks/bench_hostile.py [--scenarios flood,reprice,names] [--baseline-repo DIR]
[--json PATH]``

Each scenario runs a real FleetServer (managed Mosquitto, SQLite in a temporary data dir) in its own
process, importing the server from this checkout ("after") and, with ``--baseline-repo``, from an
older checkout ("before"; e.g. ``git worktree add /tmp/before main``), and prints one table:

- ``flood``: one device publishes usage batches of 500 records as fast as the broker takes them
  (``benchmarks/loadgen.py``, its own process) for ``--flood-s`` seconds while a canary device
  publishes a sample every 0.5 s: records stored from the flooder, canary publish→stored p50 / max,
  peak size of the broker's persistence file, ingest disconnects.
- ``reprice``: 120,000 usage records with 10,044 distinct models, then one price rule is added (as
  the dashboard does) while the canary publishes: time until re-priced, canary p50 / max, how often
  ``/healthz`` said not ok.
- ``names``: one device sends 20,000 usage records with 10,000 model names through ingest (device
  budgets off): ``/metrics`` series, bytes and seconds per scrape, series in the tokens chart.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
SCENARIOS = ("flood", "reprice", "names")


# --- worker side (runs inside the measured checkout) ------------------------------------------------

def _now_ms() -> int:
    return int(time.time() * 1000)


def _telemetry(device_id: str, ts: int) -> bytes:
    return json.dumps({"v": 1, "device_id": device_id, "ts": ts, "cpu_pct": 5.0, "mem_used_bytes": 1 << 30,
                       "mem_total_bytes": 4 << 30, "mem_pct": 25.0, "disk_used_bytes": 10 << 30,
                       "disk_total_bytes": 100 << 30, "disk_pct": 10.0, "swap_pct": 0.0, "net_rx_bps": 1.0,
                       "net_tx_bps": 1.0, "load_avg": [0.1, 0.1, 0.1], "uptime_s": 60.0}).encode()


class Canary:
    """A device publishing a sample every 0.5 s; records publish→stored seconds (read from the cache)."""

    def __init__(self, server: object, device_id: str, key: str) -> None:
        sys.path.insert(0, str(HERE / "tests"))
        from mqtt_helpers import connect_probe

        self.server, self.device_id = server, device_id
        self.probe, rc = connect_probe("127.0.0.1", server.opts.mqtt_port, device_id, key)
        assert rc.value == 0, rc
        self.latencies: list[float] = []
        self.not_ok = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        topic = f"clawfleet/v1/{self.device_id}/telemetry"
        while not self._stop.is_set():
            ts, sent = _now_ms(), time.monotonic()
            self.probe.client.publish(topic, _telemetry(self.device_id, ts), qos=1)
            while time.monotonic() - sent < 300:
                view = self.server.state.get(self.device_id)
                if view is not None and view.telemetry is not None and view.telemetry.ts >= ts:
                    break
                time.sleep(0.01)
            self.latencies.append(time.monotonic() - sent)
            self.not_ok += not self.server.health().ok
            self._stop.wait(max(0.0, 0.5 - (time.monotonic() - sent)))

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join(400)
        self.probe.close()
        lat = sorted(self.latencies)
        return {"canary_samples": len(lat), "canary_p50_s": lat[len(lat) // 2] if lat else None,
                "canary_max_s": lat[-1] if lat else None, "healthz_not_ok": self.not_ok}


def _server(data_dir: Path, budgets_off: bool = False):
    from fleet_server.server import FleetServer, ServerOptions

    sys.path.insert(0, str(HERE / "tests"))
    from mqtt_helpers import free_port

    opts = ServerOptions(data_dir=data_dir, mqtt_port=free_port(), local_agent=False)
    if budgets_off and hasattr(opts, "device_budgets"):
        opts.device_budgets = None
    server = FleetServer(opts)
    server.start()
    assert server.ingest is not None and server.ingest.connected.wait(30)
    return server


def _device(server: object, name: str) -> tuple[str, str]:
    from fleet_server.devices.registry import add_device

    new = add_device(server.dynsec, name, server.broker_url)
    return new.device.id, new.api_key


def scenario_flood(data_dir: Path, args: argparse.Namespace) -> dict:
    from benchmarks.loadgen import DeviceCreds, LoadSpec, run_load
    from fleet_server.store.models import UsageRecord

    server = _server(data_dir)
    drops = [0]
    inner = server.ingest.client.on_disconnect
    server.ingest.client.on_disconnect = lambda *a: (drops.__setitem__(0, drops[0] + 1), inner(*a))
    flooder = _device(server, "flooder")
    canary = Canary(server, *_device(server, "canary"))
    db_file = server.broker.cfg.broker_dir / "mosquitto.db"
    peak, stop = [0], threading.Event()

    def watch() -> None:
        while not stop.wait(0.5):
            try:
                peak[0] = max(peak[0], db_file.stat().st_size)
            except OSError:
                pass

    threading.Thread(target=watch, daemon=True).start()
    spec = LoadSpec(port=server.opts.mqtt_port, devices=[DeviceCreds(*flooder)], rate_per_s=args.flood_rate,
                    duration_s=args.flood_s, mix={"usage": 1.0}, usage_records=500, processes=1, settle_s=15,
                    announce=False)
    result = run_load(spec, progress=False)
    time.sleep(5)
    out = canary.stop()
    stop.set()
    out.update(offered_records=result.published.get("usage", 0) * 500,
               stored_records=UsageRecord.select().where(UsageRecord.device == flooder[0]).count(),
               broker_file_peak_mb=peak[0] / 1e6, ingest_disconnects=drops[0])
    server.stop()
    return out


def scenario_reprice(data_dir: Path, args: argparse.Namespace) -> dict:
    from fleet_server.store.models import Device, db
    from fleet_server.store.usage import prices
    from fleet_server.store.usage.ledger import insert_usage

    server = _server(data_dir)
    Device.insert(id="history", name="history", key_hash="0" * 64, key_hint="abcd", created_ms=1).execute()
    base = _now_ms() - 30 * 86_400_000
    rows = [{"device": "history", "id": f"record-{i:07d}", "ts": base + i * 20_000, "agent_id": "main",
             "session_id": "s", "provider": "acme", "model": f"model-{i % args.models}", "input_tokens": 1000,
             "output_tokens": 100, "cache_read_tokens": 0, "cache_write_tokens": 0, "total_tokens": 1100,
             "cost_usd": None, "source": "transcript"} for i in range(args.records)]
    with db.atomic():
        for k in range(0, len(rows), 5000):
            insert_usage(rows[k:k + 5000])
    server.state.load_from_db()
    canary = Canary(server, *_device(server, "canary"))
    time.sleep(2)
    rule = prices.RuleInput("acme/model-1*", input_usd_per_mtok=3.0, output_usd_per_mtok=15.0)
    started = time.monotonic()
    if hasattr(prices, "save_rule"):  # this release: stored at once, the server's job re-prices, paced
        prices.save_rule(rule)
        server.jobs.reprice.request()
        server.jobs.reprice.wait_idle(3600)
    else:  # before: the dashboard ran add_rule (one transaction) in a worker thread
        def change() -> None:
            with db.connection_context():
                prices.add_rule(rule)
        t = threading.Thread(target=change)
        t.start()
        t.join(3600)
    took = time.monotonic() - started
    time.sleep(1)
    out = canary.stop()
    out.update(records=args.records, models=args.models, reprice_s=took)
    server.stop()
    return out


def scenario_names(data_dir: Path, args: argparse.Namespace) -> dict:
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from fleet_server.api.metrics import FleetCollector
    from fleet_server.dashboard.pages.tokens import chart_options
    from fleet_server.store.models import UsageRecord

    sys.path.insert(0, str(HERE / "tests"))
    from mqtt_helpers import connect_probe

    server = _server(data_dir, budgets_off=True)
    device_id, key = _device(server, "namer")
    probe, rc = connect_probe("127.0.0.1", server.opts.mqtt_port, device_id, key)
    assert rc.value == 0
    ts, sent = _now_ms(), 0
    for b in range(args.names_records // 500):
        records = [{"id": f"record-{b}-{k}", "ts": ts, "agent_id": "main", "session_id": "s", "provider": "evil",
                    "model": f"model-{(b * 500 + k) % args.names}", "input_tokens": 10, "output_tokens": 1,
                    "cache_read_tokens": 0, "cache_write_tokens": 0, "total_tokens": 11, "cost_usd": None,
                    "source": "transcript"} for k in range(500)]
        probe.publish(f"clawfleet/v1/{device_id}/usage",
                      json.dumps({"v": 1, "device_id": device_id, "ts": ts, "records": records}).encode())
        sent += 500
    deadline = time.monotonic() + 120
    while UsageRecord.select().count() < sent and time.monotonic() < deadline:
        time.sleep(0.2)
    probe.close()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(server.state, lambda: server.ingest))
    t0 = time.monotonic()
    text = generate_latest(registry).decode()
    scrape_s = time.monotonic() - t0
    series = sum(len(f.samples) for f in text_string_to_metric_families(text))
    day = time.strftime("%Y-%m-%d", time.gmtime(ts / 1000))
    try:  # this release: one sums module; before: store.usage.summary
        from fleet_server.store.usage.sums import usage
        chart = chart_options(usage(["day", "model"], tz="UTC"), "model", [day], {})
    except ImportError:
        from fleet_server.store.usage.summary import usage_summary
        chart = chart_options(usage_summary(["day", "model"], tz="UTC"), "model", [day])
    out = {"records": sent, "stored": UsageRecord.select().count(), "metrics_series": series,
           "metrics_mb": len(text) / 1e6, "scrape_s": scrape_s, "chart_series": len(chart["series"])}
    server.stop()
    return out


def worker(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(Path(args.repo).resolve()))
    sys.path.insert(1, str(HERE))  # benchmarks.loadgen of this checkout
    import logging

    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="bench-hostile-") as tmp:
        result = {"flood": scenario_flood, "reprice": scenario_reprice, "names": scenario_names}[args.worker](
            Path(tmp) / "server", args)
    print("RESULT " + json.dumps(result), flush=True)


# --- driver -----------------------------------------------------------------------------------------

def run_scenario(name: str, repo: Path, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--worker", name, "--repo", str(repo), "--flood-s", str(args.flood_s),
           "--flood-rate", str(args.flood_rate), "--records", str(args.records), "--models", str(args.models),
           "--names", str(args.names), "--names-records", str(args.names_records)]
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=7200, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"{name} on {repo} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:,.3f}" if v < 100 else f"{v:,.0f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated: " + ", ".join(SCENARIOS))
    ap.add_argument("--baseline-repo", type=Path, help="an older checkout to measure as 'before'")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--flood-s", type=float, default=30.0)
    ap.add_argument("--flood-rate", type=float, default=400.0, help="usage batches/s the flooder offers")
    ap.add_argument("--records", type=int, default=120_000, help="usage records before the price change")
    ap.add_argument("--models", type=int, default=10_044, help="distinct models among them")
    ap.add_argument("--names", type=int, default=10_000, help="distinct model names the namer sends")
    ap.add_argument("--names-records", type=int, default=20_000)
    ap.add_argument("--worker", choices=SCENARIOS, help=argparse.SUPPRESS)
    ap.add_argument("--repo", type=Path, default=HERE, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    codes = [("before", args.baseline_repo)] if args.baseline_repo else []
    codes.append(("after", HERE))
    results: dict[str, dict[str, dict]] = {}
    for name in [s.strip() for s in args.scenarios.split(",") if s.strip()]:
        for code, repo in codes:
            print(f"{name} ({code}) …", flush=True)
            results.setdefault(name, {})[code] = run_scenario(name, repo, args)
    for name, by_code in results.items():
        keys = list(next(iter(by_code.values())))
        print(f"\n{name}\n{'':24}" + "".join(f"{c:>16}" for c in by_code))
        for k in keys:
            print(f"{k:24}" + "".join(f"{_fmt(by_code[c].get(k)):>16}" for c in by_code))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
