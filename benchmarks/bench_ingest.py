"""Ingest throughput against the broker's ceiling: real device connections publish telemetry, usage
and log batches (QoS 1) to a managed Mosquitto on loopback; how much does the server store, how
fast, and at what CPU cost?

    .venv/bin/python benchmarks/bench_ingest.py                      # 100 devices, 1,000 msg/s, 60 s
    .venv/bin/python benchmarks/bench_ingest.py --devices 100,1000,10000 --rates 1000,3000,5000
    .venv/bin/python benchmarks/bench_ingest.py --baseline-repo /path/to/old/checkout --duration 20
    .venv/bin/python benchmarks/bench_ingest.py --devices 1000 --rates 3000 --receipts   # overload: resends
    .venv/bin/python benchmarks/bench_ingest.py --postgres-workers 1,2,4 --rates 3000 --duration 30

For each device count a fresh server runs as its own process (``benchmarks/fleet_process.py``;
devices enrolled in bulk, real per-device credentials), and for each offered rate the shared load
generator (``benchmarks/loadgen.py``, separate processes) connects every device and publishes the
``--mix`` for ``--duration`` seconds while a bare subscriber on the same broker counts what the
broker delivers (the ceiling). The bench polls the server's SQLite file (read-only, every 50 ms)
for what was stored and psutil for the server's and the broker's CPU and memory.

Columns: offered/s (messages published per second), ceiling/s (what the bare subscriber received
per second), stored/s (messages stored per second while the load ran), stored ÷ ceiling,
publish→stored p50/p99 (ms, telemetry: the sample's ``ts`` is its publish time, the bench notes
when the row appears), server cores (CPU seconds per second while the load ran) and cores per
1,000 stored msg/s, server and broker RSS (MiB, peak), broker disk writes per stored message
(bytes the ``mosquitto`` process wrote, from ``/proc/<pid>/io``, from the first publish until the
drain ended, ÷ the messages stored meanwhile; a save every few minutes may or may not fall into a
short run, so the size of its persistence file when the server stopped is printed too, with what
saving it every 300 s costs per stored message), drain (s after the last publish
until everything was stored), lost (published but never stored) and "keeps up" (everything stored
within 2 s of the last publish; run with ``--duration 60`` for the issue's "sustained for 60 s").

``--receipts``: the simulated devices handle delivery receipts as agents do (stamp, keep, send
again what was not confirmed; telemetry retained as the agent sends it), and the run waits until
every message is confirmed: what the broker dropped under overload comes back as resends ("resent").
``--broker-save`` measures another broker persistence setting than the shipped one.

With ``--postgres-workers 1,2,4`` the same loads also run against the server on a throw-away
PostgreSQL (``tests/pg_helpers.py``: Debian's ``postgresql`` binaries, fsync off) with 1, 2 and 4
ingest processes (``run --workers N``: a shared subscription), beside the one process on SQLite;
CPU then counts every server process (:mod:`benchmarks.pg_workers`).

With ``--baseline-repo`` every measurement is repeated with the server code of that checkout
(same machine, same run) and a before/after table with ratios is printed. ``--json PATH`` writes
every figure. First, for each checkout, ``benchmarks/ingest_pipeline.py`` measures the CPU
microseconds per message of validation and of the writer without a broker (CPU time: little
changed by a busy machine). Needs ``mosquitto`` on PATH; everything runs on 127.0.0.1 in a temporary directory.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.loadgen import DeviceCreds, LoadSpec, run_load  # noqa: E402
from benchmarks.local import free_port  # noqa: E402

KEEPS_UP_S = 2.0
"""A run keeps up when everything is stored within this many seconds of the last publish."""
DRAIN_TIMEOUT_S = 60.0


class ServerProcess:
    """``benchmarks/fleet_process.py`` running the server of ``repo`` with ``devices`` enrolled."""

    def __init__(self, repo: Path, workdir: Path, devices: int, broker_save: str | None = None,
                 database_url: str | None = None, workers: int = 1) -> None:
        self.repo, self.data_dir, self.devices = repo, workdir / "server", devices
        self.autosave = ["--broker-save", broker_save] if broker_save else []
        self.database_url, self.workers = database_url, workers
        self.port = free_port()
        self.creds_path = workdir / "creds.json"
        self.proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> ServerProcess:
        for attempt in range(3):  # the free port may be taken by another program before the broker binds it
            try:
                return self._start()
            except RuntimeError:
                if attempt == 2:
                    raise
                self.port = free_port()
        raise AssertionError("unreachable")

    def _start(self) -> ServerProcess:
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "benchmarks" / "fleet_process.py"), "--repo", str(self.repo),
             "--data-dir", str(self.data_dir), "--mqtt-port", str(self.port), "--devices", str(self.devices),
             "--creds-out", str(self.creds_path), *self.autosave, "--workers", str(self.workers)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env={**os.environ, **({"CLAWFLEET_DATABASE_URL": self.database_url} if self.database_url else {})})
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != "READY":
            self.__exit__()
            raise RuntimeError(f"the server did not start (exit code {self.proc.poll()}); see its output above")
        info = json.loads(self.creds_path.read_text())
        self.creds = [DeviceCreds(d, k) for d, k in info["devices"]]
        self.account = tuple(info["account"])
        self.server = psutil.Process(info["server_pid"])
        self.broker = psutil.Process(info["broker_pid"])
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        try:
            if self.proc.stdin:
                self.proc.stdin.close()
            self.proc.wait(timeout=120)  # the server stops its broker, which saves its persistence file
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        broker = getattr(self, "broker", None)
        if broker is not None and broker.is_running():  # orphaned by a server that did not stop in time
            broker.terminate()
            try:
                broker.wait(30)
            except psutil.TimeoutExpired:
                broker.kill()


def broker_written(proc: psutil.Process) -> int:
    """Bytes ``proc`` caused to be written to storage (``write_bytes`` of ``/proc/<pid>/io``); 0 where unknown."""
    try:
        return proc.io_counters().write_bytes
    except (psutil.Error, AttributeError):
        return 0


class Sampler:
    """Polls the server's database and processes in a thread: when each telemetry sample appeared,
    how many messages were stored over time, CPU seconds and RSS of server and broker."""

    def __init__(self, srv: ServerProcess, usage_records: int, log_records: int) -> None:
        self.srv, self.usage_records, self.log_records = srv, max(1, usage_records), max(1, log_records)
        self.latencies_ms: list[tuple[float, int]] = []  # (appeared, publish→stored ms)
        self.stored: list[tuple[float, float]] = []  # (t, messages stored since start)
        self.cpu: list[tuple[float, float, float]] = []  # (t, server cpu s, broker cpu s)
        self.disk: list[tuple[float, int]] = []  # (t, bytes the broker wrote since it started)
        self.rss = {"server": 0, "broker": 0}
        self._stop = threading.Event()
        uri = f"file:{srv.data_dir / 'clawfleet.sqlite'}?mode=ro"
        self._db = sqlite3.connect(uri, uri=True, check_same_thread=False)
        self._base = self._counts()
        self._last_rowid = self._db.execute("SELECT coalesce(max(rowid), 0) FROM sample").fetchone()[0]
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _counts(self) -> tuple[int, int, int]:
        q = "SELECT (SELECT coalesce(max(rowid),0) FROM sample), (SELECT coalesce(max(rowid),0) FROM usage_record), " \
            "(SELECT coalesce(max(rowid),0) FROM log_record)"
        return self._db.execute(q).fetchone()

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._db.close()

    def _run(self) -> None:
        k = 0
        while not self._stop.wait(0.05):
            now = time.time()
            rows = self._db.execute("SELECT rowid, ts FROM sample WHERE rowid > ?", (self._last_rowid,)).fetchall()
            if rows:
                self._last_rowid = rows[-1][0]
                self.latencies_ms += [(now, int(now * 1000) - ts) for _, ts in rows]
            s, u, lg = self._counts()
            b = self._base
            self.stored.append((now, (s - b[0]) + (u - b[1]) / self.usage_records + (lg - b[2]) / self.log_records))
            if k % 5 == 0:
                self._sample_procs(now)
            k += 1

    def _sample_procs(self, now: float) -> None:
        try:
            st, bt = self.srv.server.cpu_times(), self.srv.broker.cpu_times()
            self.cpu.append((now, st.user + st.system, bt.user + bt.system))
            self.disk.append((now, broker_written(self.srv.broker)))
            self.rss["server"] = max(self.rss["server"], self.srv.server.memory_info().rss)
            self.rss["broker"] = max(self.rss["broker"], self.srv.broker.memory_info().rss)
        except psutil.Error:
            pass

    def stored_at(self, t: float) -> float:
        i = bisect.bisect_right(self.stored, (t, float("inf"))) - 1
        return self.stored[i][1] if i >= 0 else 0.0

    def written_at(self, t: float) -> int:
        """Bytes the broker had written by ``t`` (the nearest sample before it)."""
        i = max(0, bisect.bisect_right(self.disk, (t, float("inf"))) - 1)
        return self.disk[i][1] if self.disk else 0

    def cpu_at(self, t: float) -> tuple[float, float]:
        i = max(0, bisect.bisect_right(self.cpu, (t, float("inf"), 0.0)) - 1)
        return self.cpu[i][1], self.cpu[i][2]


@dataclass
class Row:
    """One measurement: one server code, device count and offered rate. Rates per second."""

    code: str
    devices: int
    target_rate: float
    connected: int
    published: int
    offered_per_s: float
    ceiling_per_s: float
    stored_per_s: float
    stored_vs_ceiling: float
    p50_ms: float | None
    p99_ms: float | None
    server_cores: float
    cores_per_1000: float
    broker_cores: float
    server_rss_mib: float
    broker_rss_mib: float
    broker_disk_per_msg: float | None
    broker_db_bytes: int
    drain_s: float | None
    lost: int
    resent: int
    keeps_up: bool
    errors: list[str]


def percentile(values: list[int], q: float) -> float | None:
    """Nearest-rank percentile ``q`` (0-100) of ``values``; None when empty."""
    if not values:
        return None
    s = sorted(values)
    return float(s[min(len(s) - 1, max(0, round(q / 100 * len(s)) - 1))])


def measure(code: str, srv: ServerProcess, rate: float, args: argparse.Namespace) -> Row:
    """Run one load against the running server and read off every figure."""
    if srv.database_url:
        from benchmarks.pg_workers import PgSampler

        sampler: Sampler = PgSampler(srv, args.usage_records, args.log_records, srv.database_url).start()
    else:
        sampler = Sampler(srv, args.usage_records, args.log_records).start()
    try:
        spec = LoadSpec(port=srv.port, devices=srv.creds, host="127.0.0.1", rate_per_s=rate,
                        duration_s=args.duration, mix=args.mix, usage_records=args.usage_records,
                        log_records=args.log_records, processes=args.processes, observer=srv.account,
                        receipts=args.receipts, settle_s=180.0 if args.receipts else 30.0)
        with contextlib.redirect_stdout(sys.stderr):  # its progress lines; the table goes to stdout
            result = run_load(spec)
        published = result.total_published
        p0 = result.started_at
        p1 = p0 + args.duration + result.lag_s  # the last publish
        drained = None
        last_change, last = time.time(), -1.0
        while time.time() - p1 < DRAIN_TIMEOUT_S and time.time() - last_change < 10:
            cur = sampler.stored[-1][1] if sampler.stored else 0.0
            if cur >= published - 0.5:
                drained = next(t for t, n in sampler.stored if n >= published - 0.5)
                break
            if cur != last:
                last_change, last = time.time(), cur
            time.sleep(0.1)
        time.sleep(0.3)
        end = time.time()
        sampler._sample_procs(end)
    finally:
        sampler.stop()
    window = max(1e-3, p1 - p0)
    stored_rate = (sampler.stored_at(p1) - sampler.stored_at(p0)) / window
    (s0, b0), (s1, b1) = sampler.cpu_at(p0), sampler.cpu_at(p1)
    cpu_window = max(1e-3, _cpu_t(sampler, p1) - _cpu_t(sampler, p0))
    cores, broker_cores = (s1 - s0) / cpu_window, (b1 - b0) / cpu_window
    lat = [ms for t, ms in sampler.latencies_ms if p0 <= t <= p1 + DRAIN_TIMEOUT_S]
    drain_s = None if drained is None else max(0.0, drained - p1)
    ceiling = result.observed_per_s
    stored_end = sampler.stored_at(end) - sampler.stored_at(p0)
    written = sampler.written_at(end) - sampler.written_at(p0)
    return Row(code=code, devices=len(srv.creds), target_rate=rate, connected=result.connected, published=published,
               offered_per_s=published / window, ceiling_per_s=ceiling, stored_per_s=stored_rate,
               stored_vs_ceiling=stored_rate / ceiling if ceiling else 0.0,
               p50_ms=percentile(lat, 50), p99_ms=percentile(lat, 99), server_cores=cores,
               cores_per_1000=cores / (stored_rate / 1000) if stored_rate > 0 else float("inf"),
               broker_cores=broker_cores, server_rss_mib=sampler.rss["server"] / 2**20,
               broker_rss_mib=sampler.rss["broker"] / 2**20,
               broker_disk_per_msg=written / stored_end if stored_end > 0 else None,
               broker_db_bytes=0, drain_s=drain_s,
               lost=max(0, round(published + result.settle_samples - stored_end)), resent=result.resent,
               keeps_up=drain_s is not None and drain_s <= KEEPS_UP_S and result.connect_failures == 0,
               errors=list(result.errors)[:5])


def _cpu_t(sampler: Sampler, t: float) -> float:
    i = max(0, bisect.bisect_right(sampler.cpu, (t, float("inf"), 0.0)) - 1)
    return sampler.cpu[i][0] if sampler.cpu else t


def parse_mix(text: str) -> dict[str, float]:
    """``telemetry=0.8,usage=0.1,logs=0.1`` -> dict (weights of the channels)."""
    mix = {}
    for part in text.split(","):
        name, _, weight = part.partition("=")
        if name.strip() not in ("telemetry", "usage", "logs"):
            raise argparse.ArgumentTypeError(f"unknown channel {name!r} in --mix (telemetry, usage, logs)")
        mix[name.strip()] = float(weight or 1)
    return mix


def ints(text: str) -> list[int]:
    return [int(float(x)) for x in text.split(",") if x.strip()]


def fmt(v: float | None, spec: str = ".0f") -> str:
    return "-" if v is None else format(v, spec)


HEADER = (f"{'code':8} {'devices':>7} {'offered/s':>9} {'ceiling/s':>9} {'stored/s':>8} {'st/ceil':>7} "
          f"{'p50 ms':>7} {'p99 ms':>7} {'cores':>6} {'c/1k':>6} {'srv MiB':>7} {'brk MiB':>7} {'brk B/msg':>9} "
          f"{'drain s':>7} {'lost':>6} {'resent':>6} {'keeps up':>8}")


def row_line(r: Row) -> str:
    return (f"{r.code:8} {r.devices:7d} {r.offered_per_s:9.0f} {r.ceiling_per_s:9.0f} {r.stored_per_s:8.0f} "
            f"{r.stored_vs_ceiling:7.2f} {fmt(r.p50_ms):>7} {fmt(r.p99_ms):>7} {r.server_cores:6.2f} "
            f"{r.cores_per_1000:6.2f} {r.server_rss_mib:7.0f} {r.broker_rss_mib:7.0f} "
            f"{fmt(r.broker_disk_per_msg):>9} {fmt(r.drain_s, '.1f'):>7} {r.lost:6d} {r.resent:6d} "
            f"{'yes' if r.keeps_up else 'NO':>8}")


def print_report(rows: list[Row]) -> None:
    print(HEADER)
    for r in rows:
        print(row_line(r))
    print()
    for r in rows:
        if r.broker_db_bytes and r.stored_per_s > 0:
            print(f"{r.code}, {r.devices} devices, {r.offered_per_s:.0f} msg/s: the broker's persistence file is "
                  f"{r.broker_db_bytes / 1024:,.0f} KiB (each save writes it whole): saved every 300 s (shipped) at "
                  f"this rate, {r.broker_db_bytes / (300 * r.stored_per_s):,.0f} bytes per stored message")
    for code in dict.fromkeys(r.code for r in rows):
        for n in dict.fromkeys(r.devices for r in rows):
            ok = [r.offered_per_s for r in rows if r.code == code and r.devices == n and r.keeps_up]
            print(f"max sustained rate ({code}, {n} devices): "
                  + (f"{max(ok):.0f} msg/s of the rates tried" if ok else "none of the rates tried"))
    before = {(r.devices, r.target_rate): r for r in rows if r.code == "before"}
    if before:
        print(f"\n{'devices':>7} {'rate':>6} {'stored/s before':>15} {'after':>6} {'ratio':>6} "
              f"{'c/1k before':>11} {'after':>6} {'ratio':>6} {'p99 before':>10} {'after':>6} "
              f"{'B/msg before':>12} {'after':>6}")
        for r in rows:
            b = before.get((r.devices, r.target_rate))
            if r.code != "after" or b is None:
                continue
            print(f"{r.devices:7d} {r.target_rate:6.0f} {b.stored_per_s:15.0f} {r.stored_per_s:6.0f} "
                  f"{r.stored_per_s / max(b.stored_per_s, 1e-9):6.2f} {b.cores_per_1000:11.2f} "
                  f"{r.cores_per_1000:6.2f} {b.cores_per_1000 / max(r.cores_per_1000, 1e-9):6.1f}x "
                  f"{fmt(b.p99_ms):>9} {fmt(r.p99_ms):>6} {fmt(b.broker_disk_per_msg):>12} "
                  f"{fmt(r.broker_disk_per_msg):>6}")


def pipeline_costs(repo: Path, messages: int) -> dict:
    """``benchmarks/ingest_pipeline.py`` for ``repo``: CPU µs per message of validation and of the
    writer, per channel, without a broker (robust on a busy machine: CPU time, not wall time)."""
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "ingest_pipeline.py"), "--repo", str(repo),
                          "--messages", str(messages)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def print_pipeline(costs: dict[str, dict]) -> None:
    print("ingest CPU per message without a broker (µs; usage: batches of 20 records)")
    print(f"{'code':8} {'channel':10} {'validate':>9} {'write':>8} {'total':>8} {'cores per 1k msg/s':>19}")
    for code, by_channel in costs.items():
        for channel, c in by_channel.items():
            total = c["validate_us"] + c["write_us"]
            print(f"{code:8} {channel:10} {c['validate_us']:9.1f} {c['write_us']:8.1f} {total:8.1f} "
                  f"{total / 1000:19.3f}" + (f"   (one receipt payload: {c['receipt_us']:.1f} µs)"
                                             if "receipt_us" in c else ""))
    print()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--devices", type=ints, default=[100], help="device counts, comma-separated (default 100)")
    ap.add_argument("--rates", type=ints, default=[1000], help="offered msg/s, comma-separated (default 1000)")
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of load per rate (default 60)")
    ap.add_argument("--mix", type=parse_mix, default=parse_mix("telemetry=1"),
                    help="channel weights, e.g. telemetry=0.8,usage=0.1,logs=0.1 (default telemetry=1)")
    ap.add_argument("--usage-records", type=int, default=20, help="records per usage batch (default 20)")
    ap.add_argument("--log-records", type=int, default=20, help="records per log batch (default 20)")
    ap.add_argument("--processes", type=int, default=2, help="load generator processes (default 2)")
    ap.add_argument("--baseline-repo", type=Path, help="also measure the server code of this checkout (before)")
    ap.add_argument("--pipeline-messages", type=int, default=20_000,
                    help="messages for the CPU-per-message measurement without a broker (default 20000)")
    ap.add_argument("--broker-save", metavar="HOW",
                    help="what-if: the managed broker saves its persistence file 'changes:N' (every N changes), "
                         "'interval:S' (every S seconds) or 'off', instead of the shipped setting")
    ap.add_argument("--receipts", action="store_true",
                    help="devices handle delivery receipts like agents (resend what is not confirmed); the run "
                         "waits until everything is confirmed")
    ap.add_argument("--postgres-workers", type=ints, default=[], metavar="N,N",
                    help="also run the server on a throw-away PostgreSQL with these numbers of ingest processes "
                         "(e.g. 1,2,4), beside the one process on SQLite")
    ap.add_argument("--json", type=Path, help="write every figure to this JSON file")
    args = ap.parse_args()
    codes = [("before", args.baseline_repo.resolve())] if args.baseline_repo else []
    codes.append(("after" if args.baseline_repo else "this", ROOT))
    rows: list[Row] = []
    load = psutil.getloadavg()
    print(f"machine: {psutil.cpu_count()} CPUs, load average {load[0]:.2f} before the run", file=sys.stderr)
    costs = {code: pipeline_costs(repo, args.pipeline_messages) for code, repo in codes}
    print_pipeline(costs)
    pg = None
    if args.postgres_workers:
        sys.path.insert(0, str(ROOT / "tests"))
        from pg_helpers import start_pg  # a throw-away cluster on a free loopback port

        pg = start_pg()
    setups = [(code, repo, None, 1) for code, repo in codes]
    setups += [(f"pg×{w}", ROOT, "pg", w) for w in args.postgres_workers]
    try:
        for n in args.devices:
            for code, repo, db, workers in setups:
                url = pg.create_database() if db and pg else None
                with tempfile.TemporaryDirectory(prefix="clawfleet-bench-") as tmp:
                    with ServerProcess(repo, Path(tmp), n, args.broker_save, url, workers) as srv:
                        for rate in args.rates:
                            print(f"{code}: {n} devices, {rate} msg/s for {args.duration:.0f} s …",
                                  file=sys.stderr, flush=True)
                            row = measure(code, srv, rate, args)
                            print(row_line(row), file=sys.stderr, flush=True)
                            rows.append(row)
                    db_file = srv.data_dir / "mosquitto" / "mosquitto.db"  # the broker saved it when it stopped
                    for row in rows[-len(args.rates):]:
                        row.broker_db_bytes = db_file.stat().st_size if db_file.exists() else 0
    finally:
        if pg is not None:
            pg.stop()
    print_report(rows)
    if args.postgres_workers:
        print(f"\nthis machine: {psutil.cpu_count()} CPUs shared by the load generator, the broker, PostgreSQL and "
              "every server process: more workers than CPUs cannot add throughput here")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "pipeline_us": costs,
                                         "load_average": load, "rows": [asdict(r) for r in rows]}, indent=1) + "\n")


if __name__ == "__main__":
    main()
