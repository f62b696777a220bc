"""A fleet of simulated devices for the benchmarks: real MQTT 5 connections with real device
credentials, publishing valid ClawFleet payloads at a chosen offered rate.

The load runs in separate OS processes (paho clients on one asyncio loop per process through
paho's external-loop callbacks, thousands of connections each), so the
load generator does not starve the server under test of the interpreter's lock. Optionally a bare
subscriber (its own process, paho, QoS 1, acknowledging at once) counts the same stream: what the
broker can deliver on this machine in the same run — the ceiling a server's stored rate is
compared with.

    from benchmarks.loadgen import DeviceCreds, LoadSpec, run_load
    result = run_load(LoadSpec(port=1883, devices=[DeviceCreds("dev-1", "key")], rate_per_s=100,
                               duration_s=10, observer=("server-account", "password")))

Payloads follow ``shared/schemas.py`` (field names and units), built as plain JSON here so the
generator costs as little CPU as possible: telemetry (``ts`` = publish time, epoch ms, strictly
increasing per device), usage batches and log batches of ``usage_records`` / ``log_records`` records
with ids unique across runs. On connect each device publishes its retained ``online`` status and
its meta, with a retained ``offline`` last will, like the agent; telemetry is retained, as the
agent sends it (``retain_telemetry``).

With ``receipts`` each device also reads its delivery receipts and the server's birth, stamps its
messages and sends again what no receipt confirmed (:mod:`benchmarks.loadgen_receipts`), and the
run waits (up to ``settle_s``) until every message is confirmed, devices still waiting sending a
sample every :data:`SETTLE_SAMPLE_S` like an agent (counted in ``LoadResult.settle_samples``, not in
``published``): an overloaded broker's drops become resends,
and ``LoadResult.unconfirmed`` says what was never confirmed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import queue
import random
import resource
import time
import uuid
from dataclasses import dataclass, field

CHANNELS = ("telemetry", "usage", "logs")
TOPIC_ROOT = "clawfleet/v1"
SERVER_STATUS = f"{TOPIC_ROOT}/_server/status"
TICK_S = 0.01
"""How often each worker tops up what it has sent to the offered rate, seconds."""
SETTLE_SAMPLE_S = 5.0
"""With receipts, while the run waits for confirmations, a device that waits for one sends a
telemetry sample this often (seconds), as an agent keeps sampling."""


@dataclass(frozen=True)
class DeviceCreds:
    """A device's MQTT username (= device id = client id) and password (its API key)."""

    device_id: str
    key: str


@dataclass
class LoadSpec:
    """What to offer. ``rate_per_s`` messages/s over all devices (spread evenly, round-robin) for
    ``duration_s`` seconds; ``mix`` gives each channel's share of the messages (weights over
    ``telemetry``, ``usage``, ``logs``). ``processes``: OS processes sharing the devices.
    ``connect_rate_per_s``: new connections per second per process at start. ``observer``: a broker
    account (username, password) allowed to subscribe to ``clawfleet/v1/#``, for the ceiling.
    ``settle_s``: how long to wait after the last publish for PUBACKs (and the observer).
    ``log_publishes``: keep ``(epoch s, channel, device id, payload ts ms)`` per message."""

    port: int
    devices: list[DeviceCreds]
    host: str = "127.0.0.1"
    rate_per_s: float = 1000.0
    duration_s: float = 60.0
    mix: dict[str, float] = field(default_factory=lambda: {"telemetry": 1.0})
    usage_records: int = 20
    log_records: int = 20
    processes: int = 2
    qos: int = 1
    connect_rate_per_s: float = 500.0
    observer: tuple[str, str] | None = None
    settle_s: float = 30.0
    log_publishes: bool = False
    announce: bool = True
    retain_telemetry: bool = True
    receipts: bool = False


@dataclass
class LoadResult:
    """What happened. ``published``: messages sent per channel; ``acked``: PUBACKs received (QoS 1)
    or sends completed (QoS 0); ``lag_s``: how far behind the offered schedule the slowest worker
    ended (0 when it kept up); ``observed``: messages the observer received from the start of the
    load until the end of the settle time (``observed_in_window`` until the end of the offered
    window; ``observed_per_s`` = that ÷ ``duration_s``); ``started_at``: epoch s of the first
    publish; with receipts: ``resent`` (messages sent again), ``unconfirmed`` (never confirmed
    within the settle time) and ``settle_samples`` (telemetry sent while waiting for receipts, not in
    ``published``)."""

    connected: int = 0
    connect_failures: int = 0
    published: dict[str, int] = field(default_factory=dict)
    acked: int = 0
    publish_log: list[tuple[float, str, str, int]] = field(default_factory=list)
    elapsed_s: float = 0.0
    lag_s: float = 0.0
    errors: list[str] = field(default_factory=list)
    observed: int = 0
    observed_in_window: int = 0
    observed_per_s: float = 0.0
    started_at: float = 0.0
    resent: int = 0
    unconfirmed: int = 0
    settle_samples: int = 0

    @property
    def total_published(self) -> int:
        """All messages sent during the offered window (announcements excluded)."""
        return sum(self.published.values())


def raise_fd_limit() -> int:
    """Raise this process's open-file soft limit to the hard limit; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# --- payloads (shapes of shared/schemas.py) ---------------------------------------------------

def _dumps(obj: dict) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def telemetry_payload(device_id: str, ts: int) -> bytes:
    """A valid telemetry sample (percent 0–100, bytes, bytes/s, seconds)."""
    return _dumps({
        "v": 1, "device_id": device_id, "ts": ts, "cpu_pct": round(random.uniform(1, 90), 1),
        "mem_used_bytes": 3 << 30, "mem_total_bytes": 8 << 30, "mem_pct": 37.5, "disk_used_bytes": 40 << 30,
        "disk_total_bytes": 200 << 30, "disk_pct": 20.0, "swap_pct": 0.0, "net_rx_bps": 1200.0,
        "net_tx_bps": 800.0, "load_avg": [0.4, 0.3, 0.2], "uptime_s": 86400.0,
        "openclaw": {"installed": True, "up": True, "port": 18789, "version": "2026.9.6"},
    })


def usage_payload(device_id: str, ts: int, prefix: str, n: int) -> bytes:
    """A usage batch of ``n`` records with ids ``<prefix>-<k>`` (tokens, USD)."""
    records = [{"id": f"{prefix}-{k}", "ts": ts, "agent_id": "main", "session_id": "bench", "provider": "anthropic",
                "model": "claude-sonnet-4-5", "input_tokens": 1200, "output_tokens": 300, "cache_read_tokens": 5000,
                "cache_write_tokens": 0, "total_tokens": 6500, "cost_usd": 0.0123} for k in range(n)]
    return _dumps({"v": 1, "device_id": device_id, "ts": ts, "records": records})


def logs_payload(device_id: str, ts: int, prefix: str, n: int) -> bytes:
    """A log batch of ``n`` gateway-log records with ids ``<prefix>-<k>`` (one in ten an error)."""
    records = [{"id": f"{prefix}-{k}", "ts": ts, "level": "error" if k % 10 == 0 else "info",
                "subsystem": "gateway", "message": f"bench line {k}: provider request finished in 812 ms",
                "source": "gateway-log"} for k in range(n)]
    return _dumps({"v": 1, "device_id": device_id, "ts": ts, "records": records})


def _status_payload(device_id: str, state: str, reason: str | None) -> bytes:
    return _dumps({"v": 1, "device_id": device_id, "ts": int(time.time() * 1000), "state": state, "reason": reason})


def _meta_payload(device_id: str) -> bytes:
    return _dumps({"v": 1, "device_id": device_id, "ts": int(time.time() * 1000), "hostname": f"{device_id}.bench",
                   "os": "Linux", "os_version": "6.1", "arch": "x86_64", "agent_version": "bench", "cpu_count": 4,
                   "mem_total_bytes": 8 << 30, "disk_total_bytes": 200 << 30,
                   "boot_time_ms": int(time.time() * 1000) - 86_400_000, "openclaw_version": "2026.9.6",
                   "agents": ["main"], "interval_s": 30.0})


# --- worker process ---------------------------------------------------------------------------

def _channel_plan(mix: dict[str, float]) -> list[str]:
    """A repeating channel sequence with the mix's shares (up to 100 slots), spread out."""
    weights = {c: float(mix.get(c, 0)) for c in CHANNELS if mix.get(c, 0) > 0}
    if not weights:
        raise ValueError("mix gives no channel a share: use e.g. {'telemetry': 1.0}")
    total = sum(weights.values())
    slots = 100
    counts = {c: max(1, round(w / total * slots)) for c, w in weights.items()}
    plan, credit = [], dict.fromkeys(counts, 0.0)
    for _ in range(sum(counts.values())):  # smooth weighted round-robin
        for c in counts:
            credit[c] += counts[c]
        best = max(credit, key=credit.get)
        credit[best] -= sum(counts.values())
        plan.append(best)
    return plan


class _Device:
    """One simulated device: a paho client driven by this process's asyncio loop through paho's
    external-loop callbacks (socket open/close, register/unregister write, ``loop_misc``)."""

    def __init__(self, creds: DeviceCreds, spec: LoadSpec, loop: asyncio.AbstractEventLoop) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.device_id, self.loop, self.acked = creds.device_id, loop, 0
        self.connected: asyncio.Future = loop.create_future()
        self.outbox = None
        if spec.receipts:
            from benchmarks.loadgen_receipts import SimOutbox

            self.outbox = SimOutbox()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=creds.device_id, protocol=mqtt.MQTTv5)
        c.username_pw_set(creds.device_id, creds.key)
        c.will_set(f"{TOPIC_ROOT}/{creds.device_id}/status",
                   _status_payload(creds.device_id, "offline", "last-will"), qos=1, retain=True)
        c.max_inflight_messages_set(100)
        c.on_socket_open = lambda _c, _u, sock: loop.add_reader(sock, self._read)
        c.on_socket_close = lambda _c, _u, sock: loop.remove_reader(sock)
        c.on_socket_register_write = lambda _c, _u, sock: loop.add_writer(sock, self._write)
        c.on_socket_unregister_write = lambda _c, _u, sock: loop.remove_writer(sock)
        c.on_connect = self._on_connect
        c.on_publish = self._on_publish
        c.on_message = self._on_message
        c.on_disconnect = self._on_disconnect
        self.disconnected: str | None = None  # why the broker or the socket ended the connection
        self.client = c

    def start(self, host: str, port: int) -> None:
        """Open the TCP connection and send CONNECT (CONNACK resolves :attr:`connected`): a clean
        start without session expiry, like the agent (its outbox, not the broker, keeps what is unsent)."""
        self.client.connect(host, port, keepalive=60, clean_start=True)

    def _read(self) -> None:
        self.client.loop_read()

    def _write(self) -> None:
        self.client.loop_write()

    def _on_connect(self, client, userdata, flags, rc, props) -> None:
        if self.outbox is not None and not rc.is_failure:
            client.subscribe([(f"{TOPIC_ROOT}/{self.device_id}/receipt", 1), (SERVER_STATUS, 1)])
        if not self.connected.done():
            if rc.is_failure:
                self.connected.set_exception(ConnectionError(f"refused: {rc}"))
            else:
                self.connected.set_result(True)

    def _on_publish(self, client, userdata, mid, rc, props) -> None:
        self.acked += 1

    def _on_disconnect(self, client, userdata, flags, rc, props) -> None:
        self.disconnected = str(rc)

    def _on_message(self, client, userdata, msg) -> None:
        if self.outbox is None:
            return
        if msg.topic == SERVER_STATUS:
            self.outbox.on_server_status(msg.payload)
        elif msg.payload:
            self.outbox.on_receipt(msg.payload)

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool = False, channel: str = "") -> None:
        """Queue one message (paho sends it as the socket allows; PUBACKs count in :attr:`acked`)."""
        if self.outbox is not None:
            payload = self.outbox.new(channel, topic, payload)
        self.client.publish(topic, payload, qos=qos, retain=retain)

    def resend(self) -> int:
        """Send again what no receipt confirmed in time (never retained); returns how many."""
        due = self.outbox.due() if self.outbox is not None else []
        for topic, payload in due:
            self.client.publish(topic, payload, qos=1, retain=False)
        return len(due)


async def _worker_main(index: int, spec: LoadSpec, devices: list[DeviceCreds], share: float,
                       out: mp.Queue, start_event: mp.Event, start_at: mp.Value) -> None:
    loop = asyncio.get_running_loop()
    errors: list[str] = []
    clients: dict[str, _Device] = {}

    async def connect(creds: DeviceCreds) -> None:
        dev = _Device(creds, spec, loop)
        try:
            dev.start(spec.host, spec.port)
            await asyncio.wait_for(dev.connected, timeout=30)
        except Exception as exc:  # refused key, broker full, timeout: counted, the run goes on
            if len(errors) < 20:
                errors.append(f"{creds.device_id}: connect failed: {exc}")
            with contextlib.suppress(Exception):
                dev.client.disconnect()
            return
        clients[creds.device_id] = dev
        if spec.announce:
            dev.publish(f"{TOPIC_ROOT}/{dev.device_id}/status", _status_payload(dev.device_id, "online", None), 1, True)
            dev.publish(f"{TOPIC_ROOT}/{dev.device_id}/meta", _meta_payload(dev.device_id), 1, True)

    resent = {"n": 0}

    async def keepalive() -> None:
        while True:
            for dev in list(clients.values()):
                dev.client.loop_misc()
                resent["n"] += dev.resend()
            await asyncio.sleep(1.0)

    ticker = asyncio.ensure_future(keepalive())
    step = max(1, int(spec.connect_rate_per_s / 10))
    for k in range(0, len(devices), step):  # connect_rate_per_s per process, in tenths of a second
        t0 = time.monotonic()
        await asyncio.gather(*(connect(d) for d in devices[k:k + step]))
        await asyncio.sleep(max(0.0, 0.1 - (time.monotonic() - t0)))
    out.put(("connected", index, len(clients), len(devices) - len(clients), list(errors)))

    while not start_event.is_set():
        await asyncio.sleep(0.01)
    begin = start_at.value
    await asyncio.sleep(max(0.0, begin - time.time()))
    acked_before = sum(d.acked for d in clients.values())

    plan = _channel_plan(spec.mix)
    ids = [d.device_id for d in devices if d.device_id in clients]
    rate = spec.rate_per_s * share
    run_tag = uuid.uuid4().hex[:10]
    last_ts: dict[str, int] = {}
    published = dict.fromkeys(CHANNELS, 0)
    log: list[tuple[float, str, str, int]] = []
    sent = 0
    lag = 0.0
    if ids and rate > 0:
        while True:
            now = time.time()
            elapsed = now - begin
            if elapsed >= spec.duration_s:
                lag = max(0.0, spec.duration_s * rate - sent) / rate
                break
            due = min(int(elapsed * rate), int(spec.duration_s * rate)) - sent
            for _ in range(max(0, due)):
                device_id = ids[sent % len(ids)]
                channel = plan[sent % len(plan)]
                ts = max(int(now * 1000), last_ts.get(device_id, 0) + 1)
                last_ts[device_id] = ts
                if channel == "telemetry":
                    payload = telemetry_payload(device_id, ts)
                elif channel == "usage":
                    payload = usage_payload(device_id, ts, f"b{run_tag}{index}x{sent}", spec.usage_records)
                else:
                    payload = logs_payload(device_id, ts, f"l{run_tag}{index}x{sent}", spec.log_records)
                clients[device_id].publish(f"{TOPIC_ROOT}/{device_id}/{channel}", payload, spec.qos,
                                           retain=spec.retain_telemetry and channel == "telemetry", channel=channel)
                published[channel] += 1
                if spec.log_publishes:
                    log.append((now, channel, device_id, ts))
                sent += 1
            await asyncio.sleep(TICK_S)
    expected = acked_before + sent
    deadline = time.monotonic() + spec.settle_s

    def unconfirmed() -> int:
        return sum(len(d.outbox) for d in clients.values() if d.outbox is not None)

    next_sample = time.monotonic() + SETTLE_SAMPLE_S
    settle_samples = 0
    while (sum(d.acked for d in clients.values()) < expected + resent["n"] or unconfirmed()) \
            and time.monotonic() < deadline:
        if time.monotonic() >= next_sample:  # as an agent keeps sampling: later messages show what was lost
            next_sample += SETTLE_SAMPLE_S
            for dev in clients.values():
                if dev.outbox is not None and len(dev.outbox):
                    ts = last_ts[dev.device_id] = max(int(time.time() * 1000), last_ts.get(dev.device_id, 0) + 1)
                    dev.publish(f"{TOPIC_ROOT}/{dev.device_id}/telemetry", telemetry_payload(dev.device_id, ts),
                                spec.qos, retain=spec.retain_telemetry, channel="telemetry")
                    settle_samples += 1
                    expected += 1
        await asyncio.sleep(0.05)
    acked = sum(d.acked for d in clients.values()) - acked_before - resent["n"] - settle_samples
    if acked < sent:
        errors.append(f"{sent - acked} publishes were not acknowledged within {spec.settle_s:.0f} s")
    if unconfirmed():
        errors.append(f"{unconfirmed()} messages were not confirmed by a receipt within {spec.settle_s:.0f} s")
    lost = [d for d in clients.values() if d.disconnected is not None]
    if lost:
        errors.append(f"{len(lost)} devices lost their connection (e.g. {lost[0].device_id}: {lost[0].disconnected})")
    out.put(("done", index, published, acked, log, list(errors), lag, resent["n"], unconfirmed(), settle_samples))
    ticker.cancel()
    for dev in clients.values():  # a clean DISCONNECT: the broker drops the last will
        with contextlib.suppress(Exception):
            dev.client.disconnect()
            dev.client.loop_write()
    await asyncio.sleep(0.5)


def _worker(index: int, spec: LoadSpec, devices: list[DeviceCreds], share: float, out: mp.Queue,
            start_event: mp.Event, start_at: mp.Value) -> None:
    raise_fd_limit()
    asyncio.run(_worker_main(index, spec, devices, share, out, start_event, start_at))


def _observer(spec: LoadSpec, out: mp.Queue, start_event: mp.Event, start_at: mp.Value, stop_event: mp.Event) -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    counts = {"all": 0, "window": 0}
    subscribed = {"ok": False}
    window = {"start": None, "end": None}

    def on_connect(client, userdata, flags, rc, props):  # the data channels only (not receipts, status, meta)
        client.subscribe([(f"{TOPIC_ROOT}/+/{channel}", 1) for channel in CHANNELS])

    def on_subscribe(client, userdata, mid, rcs, props):
        subscribed["ok"] = True

    def on_message(client, userdata, msg):
        if msg.retain or window["start"] is None:
            return
        now = time.time()
        if now >= window["start"]:
            counts["all"] += 1
            if now <= window["end"]:
                counts["window"] += 1

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-observer-{uuid.uuid4().hex[:8]}",
                    protocol=mqtt.MQTTv5)
    c.username_pw_set(*spec.observer)
    c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
    c.connect(spec.host, spec.port, keepalive=60)
    c.loop_start()
    deadline = time.time() + 30
    while not subscribed["ok"] and time.time() < deadline:
        time.sleep(0.01)
    out.put(("observer-ready", subscribed["ok"]))
    start_event.wait()
    window["start"], window["end"] = start_at.value, start_at.value + spec.duration_s
    stop_event.wait()
    c.loop_stop()
    c.disconnect()
    out.put(("observed", counts["all"], counts["window"]))


def run_load(spec: LoadSpec, progress: bool = True) -> LoadResult:
    """Connect every device, publish for ``spec.duration_s`` at ``spec.rate_per_s``, wait for the
    PUBACKs, disconnect. Blocks; prints one progress line per phase when ``progress``.

    Raises:
        ValueError: no devices, or a mix without any channel.
        RuntimeError: a worker process died or did not report within its time limit.
    """
    if not spec.devices:
        raise ValueError("LoadSpec.devices is empty: enroll some devices first")
    _channel_plan(spec.mix)
    ctx = mp.get_context("spawn")
    out: mp.Queue = ctx.Queue()
    start_event, stop_event = ctx.Event(), ctx.Event()
    start_at = ctx.Value("d", 0.0)
    n = max(1, min(spec.processes, len(spec.devices)))
    parts = [spec.devices[k::n] for k in range(n)]
    procs = [ctx.Process(target=_worker, args=(k, spec, parts[k], len(parts[k]) / len(spec.devices), out,
                                               start_event, start_at), daemon=True) for k in range(n)]
    observer = None
    if spec.observer:
        observer = ctx.Process(target=_observer, args=(spec, out, start_event, start_at, stop_event), daemon=True)
        observer.start()
    for p in procs:
        p.start()
    result = LoadResult()
    connect_timeout = 120 + len(spec.devices) / max(1.0, spec.connect_rate_per_s * n) * 3
    waiting = {"connected": n, "observer-ready": 1 if observer else 0}
    t0 = time.time()
    while any(waiting.values()):
        msg = _get(out, t0 + connect_timeout, procs)
        kind = msg[0]
        waiting[kind] -= 1
        if kind == "connected":
            result.connected += msg[2]
            result.connect_failures += msg[3]
            result.errors += msg[4]
        elif kind == "observer-ready" and not msg[1]:
            result.errors.append("the observer could not subscribe to clawfleet/v1/# (account not allowed?)")
    if progress:
        print(f"  {result.connected:,} devices connected ({result.connect_failures} failed) in "
              f"{time.time() - t0:.1f} s;\n  offering {spec.rate_per_s:,.0f} msg/s for {spec.duration_s:.0f} s",
              flush=True)
    start_at.value = time.time() + 0.5
    result.started_at = start_at.value
    start_event.set()
    done = 0
    published = dict.fromkeys(CHANNELS, 0)
    deadline = start_at.value + spec.duration_s + spec.settle_s + 60
    while done < n:
        msg = _get(out, deadline, procs)
        if msg[0] != "done":
            continue
        done += 1
        for c, v in msg[2].items():
            published[c] += v
        result.acked += msg[3]
        result.publish_log += msg[4]
        result.errors += msg[5]
        result.lag_s = max(result.lag_s, msg[6])
        result.resent += msg[7]
        result.unconfirmed += msg[8]
        result.settle_samples += msg[9]
    result.published = {c: v for c, v in published.items() if v}
    result.elapsed_s = time.time() - start_at.value
    if observer is not None:
        stop_event.set()
        msg = _get(out, time.time() + 30, [observer])
        result.observed, result.observed_in_window = msg[1], msg[2]
        result.observed_per_s = result.observed_in_window / spec.duration_s
    for p in procs + ([observer] if observer else []):
        p.join(timeout=90)
        if p.is_alive():
            p.kill()
    result.errors = result.errors[:20]
    if progress:
        print(f"  published {result.total_published:,}, acknowledged {result.acked:,}"
              + (f", observer received {result.observed:,}" if observer else "")
              + (f", sent again {result.resent:,}, unconfirmed {result.unconfirmed:,}" if spec.receipts else ""),
              flush=True)
    return result


def _get(out: mp.Queue, deadline: float, procs: list) -> tuple:
    while True:
        try:
            return out.get(timeout=1.0)
        except queue.Empty:
            pass
        if time.time() > deadline:
            raise RuntimeError("a load-generator process did not report in time")
        dead = [p for p in procs if not p.is_alive() and p.exitcode not in (0, None)]
        if dead:
            raise RuntimeError(f"a load-generator process died (exit code {dead[0].exitcode})")


if __name__ == "__main__":  # pragma: no cover - a quick manual check: python -m benchmarks.loadgen --help
    import argparse

    ap = argparse.ArgumentParser(description="Publish a simulated fleet's telemetry to a broker "
                                             "(devices from a CSV of device_id,key).")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--devices-csv", required=True, help="file of device_id,key lines")
    ap.add_argument("--rate", type=float, default=100.0, help="messages per second, all devices (default 100)")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds (default 10)")
    args = ap.parse_args()
    with open(args.devices_csv) as f:
        creds = [DeviceCreds(*line.strip().split(",", 1)) for line in f if line.strip()]
    r = run_load(LoadSpec(port=args.port, devices=creds, rate_per_s=args.rate, duration_s=args.duration,
                          processes=min(4, os.cpu_count() or 2)))
    print(r.published, r.acked, r.errors[:3])
