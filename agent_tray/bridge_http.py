"""The local bridge's HTTP side (``http.server``), loaded by :class:`agent_tray.bridge.LocalBridge`
when its first request arrives. Endpoints and safety rules: :mod:`agent_tray.bridge`."""

from __future__ import annotations

import hmac
import json
import logging
import socket
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from agent_tray.bridge import LOOPBACK_HOSTS, MAX_BODY_BYTES, parse_event, parse_openclaw_info

if TYPE_CHECKING:
    from agent_tray.bridge import LocalBridge

log = logging.getLogger("clawfleet.agent.bridge")


def make_server(bridge: LocalBridge, sock: socket.socket) -> ThreadingHTTPServer:
    """A threading HTTP server answering for ``bridge`` on its already listening ``sock`` (the
    caller accepts connections and hands them to ``process_request``)."""

    class Handler(_Handler):
        owner = bridge

    server = ThreadingHTTPServer(sock.getsockname()[:2], Handler, bind_and_activate=False)
    server.socket.close()
    server.socket = sock
    server.daemon_threads = True
    return server


class _Handler(BaseHTTPRequestHandler):
    owner: LocalBridge
    server_version = "clawfleet-bridge"
    sys_version = ""

    def log_message(self, fmt: str, *args: Any) -> None:
        log.debug("%s " + fmt, self.client_address[0], *args)

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _allowed(self) -> bool:
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0]
        if host not in LOOPBACK_HOSTS:
            self._reply(HTTPStatus.FORBIDDEN, {"error": "the bridge only answers requests addressed to 127.0.0.1"})
            return False
        if self.owner.token:
            given = self.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {self.owner.token}".encode()):
                self._reply(HTTPStatus.UNAUTHORIZED, {"error": "missing or wrong bearer token"})
                return False
        return True

    def do_GET(self) -> None:  # http.server's naming
        if not self._allowed():
            return
        if self.path == "/health":
            self._reply(HTTPStatus.OK, self.owner.target.bridge_health())
        elif self.path == "/telemetry":
            sample = self.owner.target.bridge_telemetry()
            if sample is None:
                self._reply(HTTPStatus.NOT_FOUND, {"error": "no sample taken yet"})
            else:
                self._reply(HTTPStatus.OK, sample)
        else:
            self._reply(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint: GET {self.path}"})

    def do_POST(self) -> None:
        if not self._allowed():
            return
        if (self.headers.get("Content-Type") or "").split(";")[0].strip() != "application/json":
            self._reply(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, {"error": "send Content-Type: application/json"})
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY_BYTES:
            self._reply(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": f"body must be 0-{MAX_BODY_BYTES} bytes"})
            return
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            self._reply(HTTPStatus.BAD_REQUEST, {"error": f"body is not JSON: {exc}"})
            return
        try:
            if self.path == "/openclaw":
                self.owner.target.bridge_openclaw(parse_openclaw_info(body))
                self._reply(HTTPStatus.OK, {"ok": True})
            elif self.path == "/events":
                raw = body.get("events", [body]) if isinstance(body, dict) else body
                if not isinstance(raw, list):
                    raise ValueError("'events' must be a list")
                events = [parse_event(e) for e in raw[:500]]
                self._reply(HTTPStatus.OK, {"ok": True, **self.owner.target.bridge_events(events)})
            else:
                self._reply(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint: POST {self.path}"})
        except ValueError as exc:
            self._reply(HTTPStatus.UNPROCESSABLE_ENTITY, {"error": str(exc)[:1000]})
