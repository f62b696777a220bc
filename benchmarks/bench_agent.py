"""Memory and CPU of the headless agent (``clawfleet-agent run --headless``) as users run it.

Run: ``.venv/bin/python benchmarks/bench_agent.py [--duration S] [--runs N] [--json PATH]``
     ``.venv/bin/python benchmarks/bench_agent.py --imports``

Starts a real managed Mosquitto on loopback, creates one device per agent with a real API key
(dynamic-security plugin), and runs every configuration side by side in one window, interleaved
so machine load affects all of them alike: sample interval 5 s and 30 s, each without OpenClaw
(an empty state dir) and with OpenClaw data (a copy of the real 2026.7.35 files in
``tests/fixtures/openclaw/``: config, JSONL transcripts and the gateway log, with a writer that
appends one assistant turn and one WARN log line every 10 s during the run), ``--runs`` agents
each. Every agent is its own process (the console script, as the service unit runs it, with its
local bridge on a free port and its log file, as by default).

Per agent: RSS and USS (``psutil.Process.memory_full_info``; USS = memory only this process
holds) at the end of the run, peak RSS, and CPU as percent of one core over the run after a
warm-up (``--warmup`` s, the start-up imports excluded). Prints the median and the range over
the runs for each configuration.

``--imports`` prints what the headless agent's ``run`` path imports: for each top-level module it
pulls in, in import order, the RSS it adds (fresh interpreter, imported one after another) and its
cumulative import time (``python -X importtime``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.local import free_port  # noqa: E402
from broker.config import BrokerConfig  # noqa: E402
from broker.mosquitto import ManagedMosquitto  # noqa: E402

FIXTURE = ROOT / "tests" / "fixtures" / "openclaw" / "legacy-2026.7.35"
RUN_MODULES = ("agent_tray.cli", "agent_tray.runner", "agent_tray.service")
"""What ``clawfleet-agent run --headless`` loads: the console script's module, then the agent loop."""
WRITE_EVERY_S = 10.0


@dataclass
class Case:
    """One agent process: configuration, and what was measured (MB = 2^20 bytes, CPU % of one core)."""

    interval_s: float
    openclaw: bool
    run: int
    device_id: str = ""
    rss_mb: float = 0.0
    uss_mb: float = 0.0
    peak_rss_mb: float = 0.0
    cpu_pct: float = 0.0
    proc: subprocess.Popen | None = field(default=None, repr=False)
    state_dir: Path | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        """The configuration, as the table names it."""
        return f"{self.interval_s:g} s, {'with' if self.openclaw else 'without'} OpenClaw"


MEASURED = ("interval_s", "openclaw", "run", "device_id", "rss_mb", "uss_mb", "peak_rss_mb", "cpu_pct")


def make_openclaw_home(dst: Path) -> Path:
    """A writable copy of the real 2026.7.35 state dir (config, sessions, gateway log)."""
    state = dst / ".openclaw"
    sessions = state / "agents" / "main" / "sessions"
    sessions.mkdir(parents=True)
    for src in (FIXTURE / "sessions").iterdir():
        if "TRIMMED" not in src.name:
            shutil.copyfile(src, sessions / src.name)
    logs = dst / "openclaw-logs"
    logs.mkdir()
    log_file = logs / "openclaw-2026-11-21.log"
    shutil.copyfile(FIXTURE / "logs" / log_file.name, log_file)
    config = json.loads((FIXTURE / "config" / "openclaw.json").read_text())
    config.setdefault("logging", {})["file"] = str(log_file)
    (state / "openclaw.json").write_text(json.dumps(config))
    return state


def _iso(ts_ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts_ms / 1000)) + f".{ts_ms % 1000:03d}Z"


def append_turn(state: Path, i: int) -> None:
    """Append one assistant turn (with token usage) to a transcript and one WARN line to the log,
    shaped like the fixture's lines."""
    ts = int(time.time() * 1000)
    session = sorted(p for p in (state / "agents" / "main" / "sessions").glob("*.jsonl")
                     if not p.name.endswith(".trajectory.jsonl"))[0]
    usage = {"input": 1000 + i, "output": 20, "cacheRead": 64, "cacheWrite": 0, "totalTokens": 1084 + i,
             "cost": {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0, "total": 0}}
    msg = {"role": "assistant", "content": [{"type": "text", "text": f"bench reply {i}"}],
           "api": "openai-completions", "provider": "stubllm", "model": "stub-model", "usage": usage,
           "stopReason": "stop", "timestamp": ts, "responseId": f"chatcmpl-bench-{ts}-{i}"}
    with session.open("a") as f:
        f.write(json.dumps({"type": "message", "id": f"bench{ts:x}{i:04d}", "parentId": None,
                            "timestamp": _iso(ts), "message": msg}) + "\n")
    log_file = Path(json.loads((state / "openclaw.json").read_text())["logging"]["file"])
    text = f"transient same-model retry {i} for stubllm/stub-model reason=rate_limit"
    with log_file.open("a") as f:
        f.write(json.dumps({"0": '{"subsystem":"agent/embedded"}', "1": text, "_meta": {
            "runtime": "node", "date": _iso(ts), "logLevelId": 4, "logLevelName": "WARN",
            "name": '{"subsystem":"agent/embedded"}', "parentNames": ["openclaw"]},
            "time": _iso(ts), "hostname": "bench", "message": text}) + "\n")


def agent_command() -> list[str]:
    """The console script next to this interpreter, as the service unit runs it."""
    script = Path(sys.executable).with_name("clawfleet-agent")
    return [str(script)] if script.exists() else [sys.executable, "-m", RUN_MODULES[0]]


def start_agent(case: Case, tmp: Path, broker_url: str, api_key: str, bridge: bool) -> None:
    home = tmp / case.device_id
    home.mkdir()
    case.state_dir = make_openclaw_home(home) if case.openclaw else home / "no-openclaw"
    config = {"device_id": case.device_id, "broker_url": broker_url, "api_key": api_key,
              "interval_s": case.interval_s, "data_dir": str(home / "data"),
              "openclaw_state_dir": str(case.state_dir), "bridge_port": free_port() if bridge else 0}
    path = home / "agent.json"
    path.write_text(json.dumps(config))
    path.chmod(0o600)
    env = {**os.environ, "HOME": str(home)}  # no real ~/.openclaw, no real user dirs
    case.proc = subprocess.Popen([*agent_command(), "run", "--headless", "--config", str(path),
                                  "--log-dir", str(home / "log")],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)


def stop_agent(case: Case) -> None:
    if case.proc and case.proc.poll() is None:
        case.proc.terminate()
        try:
            case.proc.wait(10)
        except subprocess.TimeoutExpired:
            case.proc.kill()
            case.proc.wait()


def measure(cases: list[Case], duration: float, warmup: float) -> None:
    procs = {c.device_id: psutil.Process(c.proc.pid) for c in cases if c.proc}
    time.sleep(warmup)
    start = {k: sum(p.cpu_times()[:2]) for k, p in procs.items()}
    t0 = time.monotonic()
    end = t0 + duration
    while time.monotonic() < end:
        for c in cases:
            c.peak_rss_mb = max(c.peak_rss_mb, procs[c.device_id].memory_info().rss / 2**20)
        time.sleep(min(5.0, max(0.0, end - time.monotonic())))
    wall = time.monotonic() - t0
    for c in cases:
        p = procs[c.device_id]
        c.cpu_pct = 100 * (sum(p.cpu_times()[:2]) - start[c.device_id]) / wall
        mem = p.memory_full_info()
        c.rss_mb, c.uss_mb = mem.rss / 2**20, mem.uss / 2**20
        c.peak_rss_mb = max(c.peak_rss_mb, c.rss_mb)


def _fmt(values: list[float], digits: int) -> str:
    med = statistics.median(values)
    return f"{med:.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def summarise(cases: list[Case]) -> list[dict]:
    rows = []
    for label in dict.fromkeys(c.label for c in cases):
        group = [c for c in cases if c.label == label]
        rows.append({"config": label, "runs": len(group),
                     **{k: {"median": statistics.median(getattr(c, k) for c in group),
                            "min": min(getattr(c, k) for c in group), "max": max(getattr(c, k) for c in group)}
                        for k in ("rss_mb", "uss_mb", "peak_rss_mb", "cpu_pct")}})
    return rows


def print_table(cases: list[Case], duration: float, load: tuple[float, float, float]) -> None:
    print(f"\nheadless agent, {duration:.0f} s window, {len({c.run for c in cases})} runs side by side; "
          f"machine load average during the run {load[0]:.2f} (1 min), {os.cpu_count()} CPUs")
    print("median (min–max) over the runs")
    head = f"{'configuration':28s} {'RSS MB':>18s} {'USS MB':>18s} {'peak RSS MB':>18s} {'CPU % of 1 core':>20s}"
    print(head)
    print("-" * len(head))
    for label in dict.fromkeys(c.label for c in cases):
        g = [c for c in cases if c.label == label]
        print(f"{label:28s} {_fmt([c.rss_mb for c in g], 1):>18s} {_fmt([c.uss_mb for c in g], 1):>18s} "
              f"{_fmt([c.peak_rss_mb for c in g], 1):>18s} {_fmt([c.cpu_pct for c in g], 3):>20s}")


def bench(args: argparse.Namespace) -> dict:
    cases = [Case(interval_s=iv, openclaw=oc, run=r) for r in range(args.runs) for iv in (5.0, 30.0)
             for oc in (False, True)]
    with tempfile.TemporaryDirectory(prefix="bench-agent-") as tmp_s:
        tmp = Path(tmp_s)
        broker = ManagedMosquitto(BrokerConfig(data_dir=tmp / "broker", port=free_port()))
        broker.start()
        stop_writer = threading.Event()
        try:
            import secrets

            with broker.admin_client() as admin:
                keys = {}
                for i, c in enumerate(cases):
                    c.device_id = f"bench-agent-{i}"
                    keys[c.device_id] = "cfk_" + secrets.token_urlsafe(32)
                    admin.create_device(c.device_id, keys[c.device_id])
            for c in cases:
                start_agent(c, tmp, broker.url, keys[c.device_id], bridge=not args.no_bridge)
            homes = [c.state_dir for c in cases if c.openclaw and c.state_dir]

            def writer() -> None:
                i = 0
                while not stop_writer.wait(WRITE_EVERY_S):
                    for state in homes:
                        append_turn(state, i)
                    i += 1

            threading.Thread(target=writer, daemon=True).start()
            print(f"{len(cases)} agents started; warm-up {args.warmup:.0f} s, then measuring for "
                  f"{args.duration:.0f} s …", file=sys.stderr)
            measure(cases, args.duration, args.warmup)
            load = os.getloadavg()
            dead = [c.device_id for c in cases if c.proc and c.proc.poll() is not None]
            if dead:
                raise SystemExit(f"agents exited during the run: {', '.join(dead)}")
        finally:
            stop_writer.set()
            for c in cases:
                stop_agent(c)
            broker.stop()
    print_table(cases, args.duration, load)
    return {"duration_s": args.duration, "warmup_s": args.warmup, "load_avg_1m": load[0],
            "bridge": not args.no_bridge, "summary": summarise(cases),
            "agents": [{k: getattr(c, k) for k in MEASURED} for c in cases]}


# ---- --imports -----------------------------------------------------------------------------------
_PROBE = """
import sys, json
def rss():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * __import__('os').sysconf('SC_PAGE_SIZE')
out = [('(interpreter)', rss())]
for name in sys.argv[1:]:
    if name in sys.modules:
        continue
    try:
        __import__(name)
    except ImportError:  # importtime also lists what was tried and missing (other platforms' modules)
        continue
    out.append((name, rss()))
print(json.dumps(out))
"""


def imports(args: argparse.Namespace) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {', '.join(RUN_MODULES)}"],
                          capture_output=True, text=True, env=env, check=True)
    first_seen: dict[str, int] = {}  # module -> cumulative import time, microseconds, in import order
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _self, cumulative, name = (p.strip() for p in line[len("import time:"):].split("|"))
        first_seen.setdefault(name, int(cumulative))
    # importtime prints a module after its imports: reverse so that packages come before their parts
    names = sorted(first_seen, key=lambda n: (n.count("."), list(first_seen).index(n)))
    probe = subprocess.run([sys.executable, "-c", _PROBE, *names, *RUN_MODULES], capture_output=True, text=True,
                           env=env, check=True)
    steps = json.loads(probe.stdout)
    by_package: dict[str, dict] = {}
    for (name, after), (_prev, before) in zip(steps[1:], steps[:-1], strict=True):
        top = name.split(".")[0]
        row = by_package.setdefault(top, {"package": top, "adds_rss_mb": 0.0, "import_ms": 0.0, "modules": 0})
        row["adds_rss_mb"] += (after - before) / 2**20
        row["modules"] += 1
        if top == name:
            row["import_ms"] = first_seen.get(name, 0) / 1000
    rows = sorted(by_package.values(), key=lambda r: -r["adds_rss_mb"])
    total = steps[-1][1] / 2**20
    print(f"\nwhat the headless agent's run path imports: {total:.1f} MB RSS after importing "
          f"{', '.join(RUN_MODULES)} (fresh interpreter: {steps[0][1] / 2**20:.1f} MB)")
    print(f"{'top-level package':28s} {'adds RSS MB':>12s} {'modules':>8s}")
    for r in rows:
        if r["adds_rss_mb"] >= args.min_mb:
            print(f"{r['package']:28s} {r['adds_rss_mb']:12.2f} {r['modules']:8d}")
    print(f"(each package's modules imported one by one in a fresh interpreter, packages before their parts; "
          f"packages adding less than {args.min_mb} MB not shown)")
    return {"interpreter_rss_mb": steps[0][1] / 2**20, "total_rss_mb": total, "packages": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=180.0, help="measuring window, seconds (default 180)")
    ap.add_argument("--warmup", type=float, default=15.0, help="seconds after start not counted in CPU (default 15)")
    ap.add_argument("--runs", type=int, default=3, help="agents per configuration (default 3)")
    ap.add_argument("--no-bridge", action="store_true", help="run the agents with the local bridge off")
    ap.add_argument("--imports", action="store_true", help="print the RSS each top-level import of run adds")
    ap.add_argument("--min-mb", type=float, default=0.1, help="--imports: hide modules adding less (MB)")
    ap.add_argument("--json", type=Path, metavar="PATH", help="also write the figures as JSON")
    args = ap.parse_args()
    result = imports(args) if args.imports else bench(args)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
