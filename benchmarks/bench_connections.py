"""Device connections and enrollment at fleet scale: a real ``clawfleet-server run`` (its own
process, managed Mosquitto, SQLite) holding 1,000 / 5,000 / 10,000 authenticated device
connections that each publish telemetry every 30 s (:mod:`benchmarks.loadgen`, separate
processes), and what adding, rotating and revoking one device costs at 0 / 5,000 / 10,000 enrolled.

    .venv/bin/python -m benchmarks.bench_connections [--levels 1000,5000,10000] [--hold 60]
        [--interval 30] [--json PATH] [--no-legacy] [--no-enroll] [--profile DIR]

Per level it reports: devices connected (and failures), server CPU in cores and RSS, broker RSS
(averaged over the hold, after all devices connected), and ``GET /`` (the overview, logged in with
a real session: the login page in headless Chromium, then its session cookie) response time.
Devices are enrolled up to each level with ``clawfleet-server device import``'s one-step path
(server stopped), which is timed too. Enrollment through the running server is timed with the
server's own code (:class:`~fleet_server.devices.actions.DeviceActions`, a DynSecClient on the
running broker, the same SQLite file); ``--no-legacy`` skips the same three actions replayed
with the command sequence and account layout of the first design (one labelled role per device
holding every right, ``getRole`` + ``createRole`` + ``createClient`` to add, ``modifyClient`` +
``enableClient`` to rotate) on a bare Mosquitto with the same number of accounts: the "before";
the current design is timed the same way (``bare``), so the two compare without the server's own
load. ``--enroll-only`` runs just those bare-broker figures (a minute); ``--no-enroll`` skips
them (connections only). ``--profile DIR`` records the server with py-spy (``py-spy record``, 50
samples per second, collapsed stacks in ``DIR/server-<level>.txt``) over the same window as the
CPU figure and prints where its busy time went (the functions with the largest inclusive share).

The server raises its own open-file limit (and so the broker's) itself; this script raises its own
for the load generator. Needs ``mosquitto``, ``chromium`` and ``chromedriver``. Everything
listens on 127.0.0.1 in a temporary directory and is stopped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import http.cookiejar
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.loadgen import DeviceCreds, LoadSpec, raise_fd_limit, run_load
from benchmarks.local import free_port

PASSWORD = secrets.token_urlsafe(16)  # the dashboard admin of this run
ENROLL_SAMPLES = 5


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fleet_server.cli.main", *args], input=stdin, capture_output=True,
                          text=True, timeout=600, check=True)


class ServerProcess:
    """``clawfleet-server run`` in its own process (no local agent); output in ``<tmp>/server-N.log``."""

    def __init__(self, data_dir: Path, mqtt_port: int, http_port: int, log_path: Path) -> None:
        self.data_dir, self.mqtt_port, self.http_port = data_dir, mqtt_port, http_port
        self.log = log_path.open("w")
        env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
        self.proc = subprocess.Popen([sys.executable, "-m", "fleet_server.cli.main", "run", "--data-dir",
                                      str(data_dir), "--mqtt-port", str(mqtt_port), "--port", str(http_port),
                                      "--no-local-agent"], stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}; see {log_path}")
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"http://127.0.0.1:{http_port}/healthz", timeout=2).read()
                return
            time.sleep(0.5)
        raise RuntimeError(f"the server did not answer within 180 s; see {log_path}")

    def wait_idle(self, timeout: float = 180.0) -> float:
        """Wait until the server's start-up work is done (under 0.2 cores for 3 s); returns seconds waited."""
        proc, t0 = psutil.Process(self.proc.pid), time.monotonic()
        proc.cpu_percent(None)
        while time.monotonic() - t0 < timeout:
            time.sleep(3.0)
            if proc.cpu_percent(None) < 20.0:
                break
        return time.monotonic() - t0

    def broker_pid(self) -> int:
        return int(json.loads((self.data_dir / "mosquitto" / "mosquitto.pid").read_text())["pid"])

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def log_in(base_url: str, profile: Path) -> http.cookiejar.CookieJar:
    """Log in as ``admin`` through the real login page in headless Chromium; return its cookies."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    opts = webdriver.ChromeOptions()
    opts.page_load_strategy = "eager"
    opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-background-networking", f"--user-data-dir={profile}"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=opts)
    try:
        driver.set_page_load_timeout(60)
        driver.get(base_url + "/login?redirect_to=/api/v1/whoami")  # not the overview: it is what we time
        wait = WebDriverWait(driver, 60)
        fields = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "input")
                            if len(d.find_elements(By.CSS_SELECTOR, "input")) >= 2 else False)
        fields[0].send_keys("admin")
        fields[1].send_keys(PASSWORD + Keys.ENTER)
        wait.until(lambda d: "/login" not in d.current_url)
        jar = http.cookiejar.CookieJar()
        for c in driver.get_cookies():
            jar.set_cookie(http.cookiejar.Cookie(0, c["name"], c["value"], None, False, "127.0.0.1", False, False,
                                                 "/", True, False, None, False, None, None, {}))
        return jar
    finally:
        driver.quit()


def time_overview(base_url: str, jar: http.cookiejar.CookieJar, n: int = 3) -> tuple[float | None, int]:
    """Median seconds of ``GET /`` with the session (stops early above 30 s) and the HTML size, bytes."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    times, size = [], 0
    for _ in range(n):
        t = time.perf_counter()
        try:
            with opener.open(base_url + "/", timeout=180) as resp:
                body = resp.read()
                if "/login" in resp.url:
                    raise RuntimeError("the session cookie was not accepted (redirected to /login)")
        except OSError:
            return None, 0
        times.append(time.perf_counter() - t)
        size = len(body)
        if times[-1] > 30:
            break
    return statistics.median(times), size


class Sampler:
    """CPU (cores) and RSS (bytes) of the server and the broker, sampled every second in a thread."""

    def __init__(self, server_pid: int, broker_pid: int) -> None:
        self.server, self.broker = psutil.Process(server_pid), psutil.Process(broker_pid)
        self.rss: dict[str, list[int]] = {"server": [], "broker": []}
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _cpu(self) -> tuple[float, float]:
        s, b = self.server.cpu_times(), self.broker.cpu_times()
        return s.user + s.system, b.user + b.system

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.rss["server"].append(self.server.memory_info().rss)
            self.rss["broker"].append(self.broker.memory_info().rss)

    def __enter__(self) -> Sampler:
        self.t0, (self.s0, self.b0) = time.monotonic(), self._cpu()
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()
        wall = time.monotonic() - self.t0
        s1, b1 = self._cpu()
        self.server_cores, self.broker_cores = (s1 - self.s0) / wall, (b1 - self.b0) / wall


def enroll_timing(data_dir: Path, mqtt_port: int) -> dict[str, float]:
    """Median ms of add, rotate-key and revoke through the running server's broker, with the
    server's own code (DeviceActions on the same database), over :data:`ENROLL_SAMPLES` devices."""
    from broker.config import BrokerAdmin
    from broker.dynsec import DynSecClient
    from fleet_server.devices.actions import DeviceActions
    from fleet_server.endpoints.broker_link import AgentEndpoint
    from fleet_server.store.db import open_database

    open_database(data_dir)
    admin = BrokerAdmin.load(data_dir / "mosquitto" / "admin.json")
    out: dict[str, list[float]] = {"add": [], "rotate": [], "revoke": []}
    with DynSecClient("127.0.0.1", mqtt_port, admin.username, admin.password, client_id="bench-enroll") as ds:
        actions = DeviceActions(ds, lambda: AgentEndpoint(f"mqtt://127.0.0.1:{mqtt_port}"))
        for _ in range(ENROLL_SAMPLES):
            t = time.perf_counter()
            new = actions.add("bench", f"enroll probe {time.time_ns()}")
            out["add"].append(time.perf_counter() - t)
            t = time.perf_counter()
            actions.rotate_key("bench", new.device.id)
            out["rotate"].append(time.perf_counter() - t)
            t = time.perf_counter()
            actions.revoke("bench", new.device.id)
            out["revoke"].append(time.perf_counter() - t)
    return {k: statistics.median(v) * 1000 for k, v in out.items()}


def broker_enroll_timing(tmp: Path, enrolled: int, legacy: bool) -> dict[str, float]:
    """Add, rotate and revoke, broker side only, on a bare Mosquitto holding ``enrolled`` accounts
    (median ms). ``legacy``: the first design's layout (one labelled role per device holding every
    right) and command sequence (add: getRole, createRole, createClient; rotate: getRole, createClient
    refused, modifyClient + enableClient; revoke: disableClient); else the current ones (add:
    createRole + createClient in one message; rotate: setClientPassword; revoke: disableClient)."""
    from broker.acl import device_client_roles, device_role_acls, device_role_name, legacy_device_role_acls
    from broker.config import BrokerAdmin, BrokerConfig, pbkdf2_fields, prepare_dynsec_file, render_config
    from broker.dynsec import DynSecClient
    from broker.dynsec_file import add_devices
    from broker.install import find_mosquitto

    cfg = BrokerConfig(data_dir=tmp / f"bare-{enrolled}-{'legacy' if legacy else 'current'}", port=free_port(),
                       persistence=False)
    cfg.broker_dir.mkdir(parents=True, mode=0o700)
    admin = BrokerAdmin.load_or_create(cfg.admin_path)
    prepare_dynsec_file(cfg.dynsec_path, admin)
    data = json.loads(cfg.dynsec_path.read_text())
    fields = pbkdf2_fields("k" * 47)
    ids = [f"seeded-{i:05d}" for i in range(enrolled)]
    if legacy:
        for did in ids:
            data["clients"].append({"username": did, "textname": f"ClawFleet device {did}", "clientid": did,
                                    "roles": [{"rolename": device_role_name(did)}], **fields})
            data["roles"].append({"rolename": device_role_name(did), "textname": f"ClawFleet device {did}",
                                  "acls": legacy_device_role_acls(did)})
    else:
        add_devices(data, [(did, fields) for did in ids])
    cfg.dynsec_path.write_text(json.dumps(data))
    install = find_mosquitto()
    cfg.conf_path.write_text(render_config(cfg, install, 4096))
    proc = subprocess.Popen([str(install.binary), "-c", str(cfg.conf_path)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    out: dict[str, list[float]] = {"add": [], "rotate": [], "revoke": []}
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                ds = DynSecClient("127.0.0.1", cfg.port, admin.username, admin.password)
                break
            except ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        with ds:
            for j in range(ENROLL_SAMPLES):
                did, role = f"probe-{j}", device_role_name(f"probe-{j}")
                label = f"ClawFleet device {did}"
                t = time.perf_counter()
                if legacy:
                    ds._request([{"command": "getRole", "rolename": role}], 30)  # "Role not found"
                    ds.execute([{"command": "createRole", "rolename": role, "textname": label,
                                 "acls": legacy_device_role_acls(did)}], 30)
                    ds.execute([{"command": "createClient", "username": did, "password": "a" * 47, "clientid": did,
                                 "textname": label, "roles": [{"rolename": role}]}], 30)
                else:
                    ds.execute([{"command": "createRole", "rolename": role, "acls": device_role_acls(did)},
                                {"command": "createClient", "username": did, "password": "a" * 47, "clientid": did,
                                 "roles": device_client_roles(did)}], 30)
                out["add"].append(time.perf_counter() - t)
                t = time.perf_counter()
                if legacy:
                    ds._request([{"command": "getRole", "rolename": role}], 30)
                    ds._request([{"command": "createClient", "username": did, "password": "b" * 47, "clientid": did,
                                  "textname": label, "roles": [{"rolename": role}]}], 30)  # "Client already exists"
                    ds.execute([{"command": "modifyClient", "username": did, "password": "b" * 47, "clientid": did,
                                 "roles": [{"rolename": role}]}, {"command": "enableClient", "username": did}], 30)
                else:
                    ds.execute([{"command": "setClientPassword", "username": did, "password": "b" * 47}], 30)
                out["rotate"].append(time.perf_counter() - t)
                t = time.perf_counter()
                ds.execute([{"command": "disableClient", "username": did}], 30)
                out["revoke"].append(time.perf_counter() - t)
    finally:
        proc.terminate()
        proc.wait(30)
    return {k: statistics.median(v) * 1000 for k, v in out.items()}


def seed(data_dir: Path, mqtt_port: int, creds: list[DeviceCreds], upto: int) -> float:
    """Enroll devices up to ``upto`` with the import command's one-step path (server stopped); seconds."""
    from broker.config import BrokerConfig
    from fleet_server.devices.bulk import ImportRow, enroll_offline
    from fleet_server.store.db import open_database

    need = upto - len(creds)
    if need <= 0:
        return 0.0
    open_database(data_dir)
    rows = [ImportRow(i, f"load-{i:05d}", f"load {i:05d}", "bench") for i in range(len(creds), upto)]
    t = time.perf_counter()
    enroll_offline(BrokerConfig(data_dir=data_dir, port=mqtt_port), rows, f"mqtt://127.0.0.1:{mqtt_port}", None,
                   "bench", "bench", lambda new: creds.append(DeviceCreds(new.device.id, new.api_key)))
    return time.perf_counter() - t


@contextlib.contextmanager
def server(data_dir: Path, mqtt_port: int, http_port: int, tmp: Path, n: int) -> Iterator[ServerProcess]:
    proc = ServerProcess(data_dir, mqtt_port, http_port, tmp / f"server-{n}.log")
    try:
        yield proc
    finally:
        proc.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--levels", default="1000,5000,10000", help="connection counts, comma-separated")
    ap.add_argument("--hold", type=float, default=60.0, help="seconds each level is held after connecting")
    ap.add_argument("--interval", type=float, default=30.0, help="seconds between two messages of one device")
    ap.add_argument("--processes", type=int, default=2, help="load-generator processes")
    ap.add_argument("--no-legacy", action="store_true", help="skip the first design's enrollment figures")
    ap.add_argument("--enroll-only", action="store_true", help="only the broker-side enrollment figures (bare "
                    "Mosquitto, current and first design) at 0 and each level; no server, no connections")
    ap.add_argument("--no-enroll", action="store_true", help="skip every enrollment figure (connections only)")
    ap.add_argument("--profile", type=Path, help="record the server with py-spy during each hold into this directory")
    ap.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = ap.parse_args()
    import logging

    logging.basicConfig(level=logging.ERROR)  # the probes' revocations warn that no session clears retained topics
    levels = sorted(int(x) for x in args.levels.split(","))
    print(f"open-file limit of the load generator: {raise_fd_limit()}; machine load {os.getloadavg()[0]:.2f}")
    tmp = Path(tempfile.mkdtemp(prefix="bench-connections-"))
    data_dir, mqtt_port, http_port = tmp / "server", free_port(), free_port()
    base_url = f"http://127.0.0.1:{http_port}"
    cli("admin", "create", "admin", "--password-stdin", "--data-dir", str(data_dir), stdin=PASSWORD + "\n")
    creds: list[DeviceCreds] = []
    enroll_rows: list[dict] = []
    conn_rows: list[dict] = []
    marks = set() if args.no_enroll else {0, 5000, 10000, levels[-1]}  # enrollment is timed at these fleet sizes

    def bare_rows(enrolled: int) -> dict[str, float]:
        row = {f"bare_{k}_ms": v for k, v in broker_enroll_timing(tmp, enrolled, legacy=False).items()}
        if not args.no_legacy:
            row.update({f"legacy_{k}_ms": v for k, v in broker_enroll_timing(tmp, enrolled, legacy=True).items()})
        return row

    if args.enroll_only:
        try:
            for n in sorted({0, *levels}):
                enroll_rows.append({"enrolled": n, "add_ms": None, "rotate_ms": None, "revoke_ms": None,
                                    **bare_rows(n)})
                print(f"broker-side enrollment at {n:,}: {enroll_rows[-1]}", flush=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        print_tables([], enroll_rows)
        if args.json:
            args.json.write_text(json.dumps({"enrollment": enroll_rows, "load_average": os.getloadavg()}, indent=1))
            print(f"wrote {args.json}")
        return

    def time_enrollment(seeded_s: float, added: int) -> None:
        import peewee

        for attempt in range(6):  # the server's own start-up writes may hold SQLite's lock past its 10 s timeout
            try:
                timing = enroll_timing(data_dir, mqtt_port)
                break
            except peewee.OperationalError as exc:
                print(f"enrollment attempt {attempt + 1}: {exc}; retrying in 20 s", flush=True)
                time.sleep(20)
        else:
            timing = {"add": None, "rotate": None, "revoke": None}
        row = {"enrolled": len(creds), "import_s_per_1000": seeded_s / added * 1000 if added else None,
               **{f"{k}_ms": v for k, v in timing.items()}}
        row.update(bare_rows(len(creds)))
        enroll_rows.append(row)
        print(f"enrollment at {len(creds):,} enrolled: {row}", flush=True)

    try:
        with server(data_dir, mqtt_port, http_port, tmp, 0) as srv:  # the first start creates the broker's files
            srv.wait_idle()
            if marks:
                time_enrollment(0.0, 0)
        for n, level in enumerate(levels, 1):
            before = len(creds)
            seeded_s = seed(data_dir, mqtt_port, creds, level)
            print(f"imported {len(creds) - before:,} devices (server stopped) in {seeded_s:.1f} s", flush=True)
            with server(data_dir, mqtt_port, http_port, tmp, n) as srv:
                print(f"server started; idle after {srv.wait_idle():.0f} s more", flush=True)
                if level in marks:
                    time_enrollment(seeded_s, len(creds) - before)
                conn_rows.append(hold_connections(srv, creds[:level], args, base_url, tmp / f"chromium-{n}"))
                print(f"connections: {conn_rows[-1]}", flush=True)
    finally:
        for log in tmp.glob("server-*.log"):  # kept for a look at what the server did
            shutil.copy(log, Path(tempfile.gettempdir()) / f"bench-connections-{log.name}")
        shutil.rmtree(tmp, ignore_errors=True)
    print_tables(conn_rows, enroll_rows)
    if args.json:
        args.json.write_text(json.dumps({"connections": conn_rows, "enrollment": enroll_rows,
                                         "load_average": os.getloadavg()}, indent=1) + "\n")
        print(f"wrote {args.json}")


def hold_connections(srv: ServerProcess, devices: list[DeviceCreds], args: argparse.Namespace, base_url: str,
                     profile: Path) -> dict:
    """Connect ``devices``, let each publish once, sample CPU/RSS for ``args.hold`` - 15 s, then time
    the overview while they go on publishing; returns the figures."""
    jar = log_in(base_url, profile)
    spec = LoadSpec(port=srv.mqtt_port, devices=devices, rate_per_s=len(devices) / args.interval,
                    duration_s=args.interval + args.hold + 15, processes=args.processes, connect_rate_per_s=500.0,
                    settle_s=10.0)
    result: dict = {}
    load = threading.Thread(target=lambda: result.setdefault("r", run_load(spec)), daemon=True)
    load.start()
    broker = psutil.Process(srv.broker_pid())
    deadline = time.monotonic() + 60 + len(devices) / 100
    while broker.num_fds() < len(devices) and time.monotonic() < deadline and load.is_alive():
        time.sleep(0.5)
    time.sleep(args.interval)  # every device has published once
    window = max(5.0, args.hold - 15)
    spy = None
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
        out = args.profile / f"server-{len(devices)}.txt"
        spy = subprocess.Popen([shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy"), "record",
                                "--pid", str(srv.proc.pid), "--rate", "50", "--duration", str(int(window)),
                                "--format", "raw", "--threads", "--gil", "--nonblocking", "-o", str(out)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with Sampler(srv.proc.pid, broker.pid) as sample:
        time.sleep(window)
    if spy is not None:
        spy.wait(60)
        print_profile(out, window)
    overview_s, overview_bytes = time_overview(base_url, jar)  # while the devices go on publishing
    load.join()
    r = result["r"]
    return {"devices": len(devices), "connected": r.connected, "connect_failures": r.connect_failures,
            "published": r.total_published, "acked": r.acked, "server_cores": sample.server_cores,
            "broker_cores": sample.broker_cores, "server_rss_mb": statistics.mean(sample.rss["server"]) / 2**20,
            "broker_rss_mb": statistics.mean(sample.rss["broker"]) / 2**20, "overview_s": overview_s,
            "overview_kb": overview_bytes / 1024, "errors": r.errors[:3]}


def print_profile(path: Path, seconds: float, top: int = 12) -> None:
    """Summarise py-spy's collapsed stacks (``thread;frame;frame;… count`` per line, recorded with
    ``--gil``: only samples holding the GIL, i.e. running Python): the share per thread, the
    functions the samples were in (self), and this project's functions by inclusive share."""
    if not path.exists():
        print(f"py-spy wrote no profile to {path}")
        return
    threads: dict[str, int] = {}
    leaf: dict[str, int] = {}
    ours: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        total += n
        name = frames[0].split(": ", 1)[-1]
        threads[name] = threads.get(name, 0) + n
        leaf[frames[-1]] = leaf.get(frames[-1], 0) + n
        for f in {f for f in frames[1:] if "fleet_server/" in f or "broker/" in f}:
            ours[f] = ours.get(f, 0) + n
    if not total:
        print("py-spy recorded no samples holding the GIL")
        return
    print(f"\nprofile ({path}): {total} samples holding the GIL at 50/s over {seconds:.0f} s "
          f"(~{total / 50 / seconds:.3f} cores of Python)")
    by_thread = sorted(threads.items(), key=lambda kv: -kv[1])[:8]
    print("  by thread:  " + ", ".join(f"{k} {v / total:.0%}" for k, v in by_thread))
    print("  self (innermost frame):")
    for name, n in sorted(leaf.items(), key=lambda kv: -kv[1])[:top]:
        print(f"    {n / total:6.1%}  {name[:110]}")
    print("  ClawFleet code, inclusive:")
    for name, n in sorted(ours.items(), key=lambda kv: -kv[1])[:top]:
        print(f"    {n / total:6.1%}  {name[:110]}")


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}"


def print_tables(conn_rows: list[dict], enroll_rows: list[dict]) -> None:
    if conn_rows:
        print_connections(conn_rows)
    print_enrollment(enroll_rows)


def print_connections(conn_rows: list[dict]) -> None:
    print("\nconnections (each device publishes telemetry every interval; CPU and RSS averaged over the hold)")
    print(f"{'devices':>8} {'connected':>9} {'failed':>6} {'server cores':>12} {'server RSS MB':>13} "
          f"{'broker cores':>12} {'broker RSS MB':>13} {'GET / s':>8} {'HTML KB':>8}")
    for r in conn_rows:
        ov = "timeout" if r["overview_s"] is None else f"{r['overview_s']:.2f}"
        print(f"{r['devices']:>8,} {r['connected']:>9,} {r['connect_failures']:>6} {r['server_cores']:>12.3f} "
              f"{r['server_rss_mb']:>13.0f} {r['broker_cores']:>12.3f} {r['broker_rss_mb']:>13.0f} {ov:>8} "
              f"{r['overview_kb']:>8.0f}")


def print_enrollment(enroll_rows: list[dict]) -> None:
    print("\nenrollment per device, ms (median of 5): server = through the running server (DeviceActions, "
          "database included);\nbare = broker side only on a bare Mosquitto, current design / first design "
          "(legacy); import = device import with the server stopped")
    print(f"{'enrolled':>8} {'server add/rot/rev':>18} {'bare add/rot/rev':>16} {'legacy add/rot/rev':>18} "
          f"{'import s/1000':>13}")
    for r in enroll_rows:
        imp = "-" if r.get("import_s_per_1000") is None else f"{r['import_s_per_1000']:.2f}"

        def trio(prefix: str, r: dict = r) -> str:
            return "/".join(_ms(r.get(f"{prefix}{k}_ms")) for k in ("add", "rotate", "revoke"))

        print(f"{r['enrolled']:>8,} {trio(''):>18} {trio('bare_'):>16} {trio('legacy_'):>18} {imp:>13}")


if __name__ == "__main__":
    main()
