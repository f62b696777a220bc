"""The dashboard with a real fleet: overview and device page response times, rendering, login, live
updates and the server's CPU with dashboard tabs open.

    .venv/bin/python benchmarks/bench_dashboard.py [--devices 1000] [--live-devices 1000] [--json PATH]

A fresh data dir gets ``--devices`` devices seeded through the store (registry rows with meta, tags
and one sample each; the first ``--live-devices`` also get real broker credentials through the
dynamic-security plugin, as ``device add`` does). Then ``clawfleet-server run --no-local-agent``
starts as its own process and a real headless Chromium (Selenium, as ``tests/browser``) measures:

- login: Enter on the login page until the overview's table shows its rows (``--rounds-browser``);
- rendered: ``GET /`` in the browser until the table's rows are on screen;
- HTML: p50/p95 of ``GET /`` and ``GET /device/<id>`` with the browser's session cookie (``--rounds``);
- live: while every live device reports telemetry every 30 s through the broker (the shared load
  generator, ``benchmarks.loadgen``), a probe device publishes a new CPU value and the time until
  the open overview shows it is taken (``--probes`` times);
- server CPU (its own process, psutil; the managed Mosquitto not included) over ``--cpu-s`` seconds
  with zero, one and five overview tabs open, while the live devices report.

Targets (issue 11): overview HTML p95 < 300 ms and rendered < 2 s at 1,000 devices; login < 1 s at
any fleet size; one open tab with 1,000 devices reporting < 10 % of one core above the no-tab figure.
Needs ``mosquitto``, ``chromium`` and ``chromedriver`` (``scripts/ensure-system-packages.sh test``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import psutil  # noqa: E402
from browser_helpers import PASSWORD, create_admin  # noqa: E402
from e2e_helpers import ServerProcess  # noqa: E402
from fleet_seed import seed, telemetry  # noqa: E402
from mqtt_helpers import free_port  # noqa: E402

from shared import schemas  # noqa: E402
from shared.topics import Channel, device_topic  # noqa: E402


def chromium(profile: Path, width: int = 1500, height: int = 900):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
                f"--window-size={width},{height}", f"--user-data-dir={profile}"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    driver.set_page_load_timeout(300)
    return driver


def rows_shown(driver, at_least: int) -> bool:
    return driver.execute_script("return document.querySelectorAll('td[data-device]').length") >= at_least


def time_login(driver, base: str, expect_rows: int) -> float:
    """Seconds from Enter on the login page until the overview shows its rows."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(base + "/login")
    driver.delete_all_cookies()  # a new visitor: no session yet
    driver.get(base + "/login")
    wait = WebDriverWait(driver, 60, poll_frequency=0.02)
    fields = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "input") if len(
        d.find_elements(By.CSS_SELECTOR, "input")) >= 2 else False)
    wait.until(lambda d: d.execute_script("return window.did_handshake === true && !!window.socket?.connected"))
    fields[0].send_keys("admin")
    fields[1].send_keys(PASSWORD)
    start = time.perf_counter()
    fields[1].send_keys(Keys.ENTER)
    try:
        wait.until(lambda d: "/login" not in d.current_url and rows_shown(d, expect_rows))
    except Exception:
        print(driver.current_url, driver.find_element(By.TAG_NAME, "body").text[:500])
        raise
    return time.perf_counter() - start


def time_render(driver, url: str, expect_rows: int) -> float:
    """Seconds from navigating to ``url`` until the overview's rows are on screen."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get("about:blank")
    start = time.perf_counter()
    driver.get(url)
    WebDriverWait(driver, 300, poll_frequency=0.02).until(lambda d: rows_shown(d, expect_rows))
    return time.perf_counter() - start


def time_get(url: str, cookie: str, rounds: int) -> tuple[list[float], int]:
    """Response times (s) of ``rounds`` GETs of ``url`` and the body's size (bytes)."""
    import httpx

    times, size = [], 0
    with httpx.Client(headers={"Cookie": cookie}, timeout=300) as client:
        for _ in range(rounds):
            start = time.perf_counter()
            resp = client.get(url)
            times.append(time.perf_counter() - start)
            assert resp.status_code == 200 and "/login" not in str(resp.url), (resp.status_code, resp.url)
            size = len(resp.content)
    return times, size


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


def cpu_cores(pid: int, seconds: float) -> float:
    """Cores the process used over ``seconds`` (user + system time / wall time)."""
    proc = psutil.Process(pid)
    t0, c0 = time.monotonic(), sum(proc.cpu_times()[:2])
    time.sleep(seconds)
    return (sum(proc.cpu_times()[:2]) - c0) / (time.monotonic() - t0)


def probe_latency(driver, base: str, mqtt_port: int, device_id: str, key: str, probes: int) -> list[float]:
    """Seconds from a probe device's publish until the open overview shows the new CPU value."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(base + "/")
    WebDriverWait(driver, 60).until(lambda d: rows_shown(d, 1))
    search = driver.find_element(By.CSS_SELECTOR, "input[type=search]")
    search.send_keys(device_id)
    WebDriverWait(driver, 30).until(lambda d: d.execute_script(
        "return document.querySelectorAll('td[data-device]').length") == 1)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device_id, protocol=mqtt.MQTTv5)
    client.username_pw_set(device_id, key)
    client.connect("127.0.0.1", mqtt_port)
    client.loop_start()
    out = []
    try:
        for k in range(probes):
            cpu = 10 + (k * 7) % 80 + 0.2
            text = f"{cpu:.0f}%"
            start = time.perf_counter()
            client.publish(device_topic(device_id, Channel.TELEMETRY), schemas.encode(telemetry(device_id, cpu)),
                           qos=1).wait_for_publish(10)
            WebDriverWait(driver, 30, poll_frequency=0.02).until(lambda d, text=text: d.execute_script(
                "return [...document.querySelectorAll('tbody td')].some(e => e.innerText === arguments[0])", text))
            out.append(time.perf_counter() - start)
            time.sleep(0.5)
    finally:
        client.loop_stop()
        client.disconnect()
    return out


def background_load(mqtt_port: int, keys: dict[str, str], seconds: float) -> tuple[threading.Thread, dict]:
    """Every live device reports telemetry every 30 s for ``seconds`` (the shared load generator, in
    its own processes) in a thread; the dict gets the :class:`LoadResult` or the error."""
    result: dict = {}

    def go() -> None:
        try:
            from benchmarks.loadgen import DeviceCreds, LoadSpec, run_load

            creds = [DeviceCreds(d, k) for d, k in keys.items()]
            result["load"] = run_load(LoadSpec(port=mqtt_port, devices=creds, rate_per_s=len(creds) / 30.0,
                                               duration_s=seconds, processes=2), progress=False)
        except Exception as exc:  # reported in the table's notes
            result["error"] = f"{type(exc).__name__}: {exc}"

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    return thread, result


def main() -> None:  # one run, step by step
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=1000, help="devices in the fleet (seeded through the store)")
    ap.add_argument("--live-devices", type=int, default=None,
                    help="devices with broker credentials that report every 30 s (default: all, at most 1000)")
    ap.add_argument("--rounds", type=int, default=30, help="HTTP GETs per page")
    ap.add_argument("--rounds-browser", type=int, default=3, help="browser logins and renders")
    ap.add_argument("--probes", type=int, default=10, help="live-update probes")
    ap.add_argument("--cpu-s", type=float, default=30.0, help="seconds per CPU measurement")
    ap.add_argument("--settle-s", type=float, default=30.0, help="wait after the server started, seconds")
    ap.add_argument("--json", type=Path, help="also write the figures as JSON to this file")
    args = ap.parse_args()
    live = min(args.devices, 1000) if args.live_devices is None else min(args.live_devices, args.devices)
    expect = min(args.devices, 50)
    figures: dict = {"devices": args.devices, "live_devices": live, "cpus": psutil.cpu_count(),
                     "load_avg_at_start": psutil.getloadavg()}
    notes: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        data, port, mqtt_port = tmp_path / "data", free_port(), free_port()
        create_admin(data)
        t0 = time.monotonic()
        keys = seed(data, args.devices, live, mqtt_port)
        figures["seed_s"] = time.monotonic() - t0
        server = ServerProcess(data, port, mqtt_port, tmp_path / "server.log", "--no-local-agent")
        t0 = time.monotonic()
        server.start(timeout=600)
        figures["server_start_s"] = time.monotonic() - t0
        assert server.proc is not None
        pid, base = server.proc.pid, f"http://127.0.0.1:{port}"
        drivers = []
        try:
            driver = chromium(tmp_path / "profile-0")
            drivers.append(driver)
            time.sleep(args.settle_s)  # start-up work (reconciliation, the first rollup) is not measured
            figures["login_s"] = []
            for _ in range(args.rounds_browser):
                try:
                    figures["login_s"].append(time_login(driver, base, expect))
                except Exception as exc:  # counted and reported, then measured again
                    notes.append(f"a login failed ({type(exc).__name__}); see the server log's errors above")
                    figures["login_s"].append(time_login(driver, base, expect))
            figures["render_s"] = [time_render(driver, base + "/", expect) for _ in range(args.rounds_browser)]
            cookie = "; ".join(f"{c['name']}={c['value']}" for c in driver.get_cookies())
            device_id = next(iter(keys), "seed-00000")
            figures["overview_html_s"], figures["overview_html_bytes"] = time_get(base + "/", cookie, args.rounds)
            figures["device_html_s"], figures["device_html_bytes"] = time_get(f"{base}/device/{device_id}", cookie,
                                                                              args.rounds)
            rss = psutil.Process(pid).memory_info().rss
            if keys:
                window = 3 * args.cpu_s + args.probes * 3 + 60
                thread, load = background_load(mqtt_port, dict(list(keys.items())[1:]), window)
                time.sleep(15)  # connections up, first reports in
                driver.get("about:blank")
                figures["cpu_0_tabs"] = cpu_cores(pid, args.cpu_s)
                figures["live_update_s"] = probe_latency(driver, base, mqtt_port, device_id, keys[device_id],
                                                         args.probes)
                driver.get(base + "/")
                figures["cpu_1_tab"] = cpu_cores(pid, args.cpu_s)
                for i in range(4):
                    extra = chromium(tmp_path / f"profile-{i + 1}", 1200, 800)
                    drivers.append(extra)
                    time_login(extra, base, expect)
                figures["cpu_5_tabs"] = cpu_cores(pid, args.cpu_s)
                figures["server_rss_bytes"] = psutil.Process(pid).memory_info().rss
                thread.join(window + 120)
                if "error" in load:
                    notes.append(f"load generator: {load['error']}")
                elif "load" in load:
                    res = load["load"]
                    figures["load_connected"], figures["load_published"] = res.connected, res.published
                    notes.append(f"load generator: {res.connected} devices connected, published {res.published}")
            else:
                figures["server_rss_bytes"] = rss
                notes.append("no live devices: no live update or CPU figures")
        finally:
            log = (tmp_path / "server.log").read_text(errors="replace").splitlines()
            errors = [line for line in log if " ERROR " in line or "Error:" in line or "/fleet_server/" in line]
            if errors:
                print("server log (errors):", *errors[-30:], sep="\n  ")
            for d in drivers:
                d.quit()
            server.stop()
    figures["load_avg_at_end"] = psutil.getloadavg()
    _print(figures, notes)
    if args.json:
        args.json.write_text(json.dumps({**figures, "notes": notes}, indent=2, default=str))


def _print(f: dict, notes: list[str]) -> None:
    def ms(values: list[float], q: float) -> str:
        return f"{pct(values, q) * 1000:9.0f}" if values else f"{'–':>9}"

    print(f"\nbench_dashboard: {f['devices']:,} devices ({f['live_devices']:,} reporting every 30 s), "
          f"{f['cpus']} CPUs, load average {f['load_avg_at_start'][0]:.2f} at start")
    print(f"{'measure':34} {'p50 ms':>9} {'p95 ms':>9} {'max ms':>9} {'bytes':>10}  target")
    for name, key, size, target in (("login → overview rows", "login_s", None, "< 1000 ms"),
                                    ("overview rendered in Chromium", "render_s", None, "< 2000 ms"),
                                    ("GET / (overview HTML)", "overview_html_s", "overview_html_bytes", "p95 < 300"),
                                    ("GET /device/<id> (HTML)", "device_html_s", "device_html_bytes", ""),
                                    ("live update publish → on screen", "live_update_s", None, "")):
        v = f.get(key) or []
        mx = f"{max(v) * 1000:9.0f}" if v else f"{'–':>9}"
        print(f"{name:34} {ms(v, 50)} {ms(v, 95)} {mx} {f.get(size, '') if size else '':>10}  {target}")
    print(f"{'server CPU (cores)':34} {'0 tabs':>9} {'1 tab':>9} {'5 tabs':>9} {'RSS MiB':>10}")
    cpu = [f.get(k) for k in ("cpu_0_tabs", "cpu_1_tab", "cpu_5_tabs")]
    print(f"{'':34} " + " ".join(f"{c:9.3f}" if c is not None else f"{'–':>9}" for c in cpu)
          + f" {f.get('server_rss_bytes', 0) / 2**20:10.0f}  1 tab − 0 tabs < 0.100")
    for n in notes:
        print(f"note: {n}")


if __name__ == "__main__":
    main()
