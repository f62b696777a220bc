"""Helpers for alert tests: a settable clock, fleet-cache views, a real webhook receiver (HTTP on
loopback, what Apprise's ``json://`` posts to) that can also hang, and a real SMTP server on
loopback (aiosmtpd) that collects e-mails."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from mqtt_helpers import free_port

from fleet_server.state import FleetState
from shared import schemas


class Clock:
    """An epoch-ms clock tests move by hand: ``clock()`` reads it, ``clock.advance(s)`` moves it."""

    def __init__(self, start_ms: int) -> None:
        self.ms = start_ms

    def __call__(self) -> int:
        return self.ms

    def advance(self, seconds: float) -> int:
        """Move the clock forward; returns the new time."""
        self.ms += int(seconds * 1000)
        return self.ms


def sample(device_id: str, ts: int, **over: object) -> schemas.Telemetry:
    """A telemetry sample (disk 10 %, cpu 5 %, OpenClaw installed and up unless overridden)."""
    data = {"device_id": device_id, "ts": ts, "cpu_pct": 5.0, "mem_used_bytes": 1 << 30, "mem_total_bytes": 4 << 30,
            "mem_pct": 25.0, "disk_used_bytes": 10 << 30, "disk_total_bytes": 100 << 30, "disk_pct": 10.0,
            "swap_pct": 0.0, "net_rx_bps": 100.0, "net_tx_bps": 50.0, "load_avg": (0.5, 0.4, 0.3), "uptime_s": 3600.0,
            "openclaw": schemas.OpenClawState(installed=True, up=True)}
    data.update(over)
    return schemas.Telemetry(**data)


def put(state: FleetState, device_id: str, now: int, status: str = "online", tags: str | None = None,
        **fields: object) -> None:
    """Set a device's view as ingest would: status (a change moves ``status_since_ms`` to ``now``),
    heard now, tags when given, and the given fields (e.g. ``telemetry=sample(...)``)."""
    cur = state.get(device_id)
    changes: dict = {"name": device_id, "status": status, "status_ms": now, "heard_ms": now, **fields}
    if tags is not None:
        changes["tags"] = tags
    if cur is None or cur.status != status:
        changes["status_since_ms"] = now
    state.upsert(device_id, **changes)


def fire_offline(state: FleetState, clock: Clock, devices: list[str], severity: str = "critical",
                 name: str = "") -> object:
    """An "offline, at once" rule; ``devices`` online, then offline (last will) and evaluated: each has
    a firing incident. Returns the :class:`fleet_server.alerts.engine.AlertEngine` (real database)."""
    from fleet_server.alerts.engine import AlertEngine
    from fleet_server.alerts.rules import save_rule

    save_rule("offline", "fleet", severity, {"for_s": 0, "clear_s": 0}, name=name)
    for d in devices:
        put(state, d, clock(), "online")
    eng = AlertEngine(state, clock=clock, settle_s=0)
    eng.load()
    eng.tick()
    for d in devices:
        put(state, d, clock(), "offline", status_reason="last-will")
    clock.advance(1)
    eng.tick()
    return eng


class WebhookReceiver:
    """An HTTP server on 127.0.0.1 that records each JSON body POSTed to it (``.posts``: dicts with
    ``title``, ``message``, ``type``, plus ``received`` monotonic time and ``path``). With
    ``hang=True`` it accepts connections and never answers."""

    def __init__(self, hang: bool = False) -> None:
        self.posts: list[dict] = []
        self.port = free_port()
        self.hang = hang
        self._release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                if receiver.hang:
                    receiver._release.wait(120)
                    return
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    data = json.loads(body)
                except ValueError:
                    data = {"raw": body.decode(errors="replace")}
                data["received"], data["path"] = time.monotonic(), self.path
                receiver.posts.append(data)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *_a: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The Apprise URL of this receiver."""
        return f"json://127.0.0.1:{self.port}/hook"

    def __enter__(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()


class SilentServer:
    """A TCP listener on 127.0.0.1 that accepts connections and never says a word (a channel that
    never answers)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(50)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self._stop = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
                self.conns.append(conn)
            except OSError:
                continue

    def close(self) -> None:
        """Stop listening and drop every connection."""
        self._stop = True
        self.thread.join(2)
        for c in self.conns:
            c.close()
        self.sock.close()


@contextmanager
def smtp_server() -> Iterator[tuple[int, list]]:
    """A real SMTP server (aiosmtpd) on 127.0.0.1; yields ``(port, messages)`` where each message is
    an :class:`email.message.Message` appended as it arrives."""
    from aiosmtpd.controller import Controller

    received: list = []

    class Handler:
        async def handle_DATA(self, _server, _session, envelope):
            msg = message_from_bytes(envelope.original_content or envelope.content)
            msg["X-Received-Monotonic"] = str(time.monotonic())
            received.append(msg)
            return "250 OK"

    port = free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, received
    finally:
        controller.stop()


def mail_text(msg: object) -> str:
    """Subject and plain-text body of an e-mail."""
    parts = [str(msg["Subject"])]
    for part in msg.walk():  # type: ignore[attr-defined]
        if part.get_content_type() == "text/plain":
            parts.append(part.get_payload(decode=True).decode(errors="replace"))
    return "\n".join(parts)


def smtp_url(port: int) -> str:
    """Apprise ``mailto://`` URL of a plain (no TLS, no login) SMTP server on loopback."""
    return f"mailto://127.0.0.1:{port}?from=clawfleet@example.com&to=ops@example.com&mode=insecure"
