"""Local bridge: a small HTTP API on 127.0.0.1 for the OpenClaw plugin and local tools.

Endpoints (JSON in and out):
- ``GET /health`` -> ``{"ok": true, "agent_version", "device_id", "connected", "outbox": {...}}``
- ``GET /telemetry`` -> the latest telemetry sample (404 before the first one)
- ``POST /openclaw`` <- ``{"openclaw_version"?, "plugin_version"?, "agents"?: [str]}``
- ``POST /events`` <- one event or ``{"events": [...]}``; event types (fields as OpenClaw's plugin hooks and
  their context give them): ``gateway_start {port}``, ``gateway_stop {reason?}``, ``llm_output``,
  ``agent_end``, ``session_start``, ``session_end`` (each ``{agentId, sessionId, sessionKey?, runId?}``: they
  make the agent read the transcripts now), and ``after_tool_call {agentId, sessionId, runId, toolCallId,
  toolName, error?, durationMs?}`` (a tool call, stored at once; the transcript's record of the same call has
  the same id). Token usage is never taken from events: only transcripts have the entry ids that make a
  message count once.

Safety: binds 127.0.0.1 only; optional bearer token; bodies capped at 256 KiB; POST requires
``Content-Type: application/json`` and a loopback ``Host`` header, so a web page in a local
browser can neither post to it (CORS preflight is never answered) nor reach it by DNS
rebinding. The bridge never blocks the gateway: handlers only queue work.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from agent_tray.checks import Rule, check

log = logging.getLogger("clawfleet.agent.bridge")

MAX_BODY_BYTES = 256 * 1024
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
"""Host header values the bridge answers (DNS-rebinding guard)."""


EVENT_TYPES = ("gateway_start", "gateway_stop", "llm_output", "agent_end", "session_start", "session_end",
               "after_tool_call")
_ID = Rule(str, max_length=200)
_TEXT = Rule(str, optional=True, max_length=200)


@dataclass(frozen=True)
class BridgeEvent:
    """One event posted by the OpenClaw plugin (``type`` one of :data:`EVENT_TYPES`; ``ts`` epoch
    ms, the agent's clock when absent; ``durationMs`` milliseconds; ``error`` the tool's error text, or
    ``true``, when the call failed)."""

    type: str
    ts: int | None = None
    port: int | None = None
    reason: str | None = None
    agentId: str = "main"  # OpenClaw's field names
    sessionId: str = ""
    sessionKey: str = ""
    runId: str = ""
    toolCallId: str = ""
    toolName: str = ""
    error: str | bool | None = None
    durationMs: float | None = None

    RULES: ClassVar[dict[str, Rule]] = {
        "type": Rule(str, choices=EVENT_TYPES), "ts": Rule(int, optional=True, ge=0),
        "port": Rule(int, optional=True, ge=1, le=65535), "reason": Rule(str, optional=True, max_length=500),
        "agentId": _TEXT, "sessionId": _TEXT, "sessionKey": _TEXT, "runId": _TEXT, "toolCallId": _TEXT,
        "toolName": _TEXT, "durationMs": Rule(float, optional=True, ge=0, le=366 * 86_400_000),
    }


@dataclass(frozen=True)
class OpenClawInfo:
    """Body of ``POST /openclaw``."""

    openclaw_version: str | None = None
    plugin_version: str | None = None
    agents: tuple[str, ...] | None = None

    RULES: ClassVar[dict[str, Rule]] = {"openclaw_version": Rule(str, optional=True, max_length=100),
                                        "plugin_version": Rule(str, optional=True, max_length=100)}


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    return {k: data[k] for k in cls.__dataclass_fields__ if data.get(k) is not None}  # type: ignore[attr-defined]


def parse_event(data: Any) -> BridgeEvent:
    """One ``POST /events`` event from its JSON object (unknown fields ignored).

    Raises:
        ValueError: not an object, an unknown ``type``, or a field of the wrong type or size.
    """
    if not isinstance(data, dict):
        raise ValueError("an event must be a JSON object")
    problems = check(BridgeEvent.RULES, data)
    error = data.get("error")
    if error is not None and not isinstance(error, (str, bool)):
        problems.append("'error': must be a string or true/false")
    if problems:
        raise ValueError("; ".join(problems[:5]))
    fields = _known(BridgeEvent, data)
    if isinstance(error, str):
        fields["error"] = error[:500]
    return BridgeEvent(**fields)


def parse_openclaw_info(data: Any) -> OpenClawInfo:
    """The ``POST /openclaw`` body (unknown fields ignored; ``agents`` at most 200 ids of ≤ 200 chars).

    Raises:
        ValueError: not an object, or a field of the wrong type or size.
    """
    if not isinstance(data, dict):
        raise ValueError("the body must be a JSON object")
    problems = check(OpenClawInfo.RULES, data)
    agents = data.get("agents")
    if agents is not None and (not isinstance(agents, list) or len(agents) > 200
                               or any(_ID.problem(a) for a in agents)):
        problems.append("'agents': must be a list of at most 200 agent ids (strings of at most 200 characters)")
    if problems:
        raise ValueError("; ".join(problems))
    return OpenClawInfo(openclaw_version=data.get("openclaw_version"), plugin_version=data.get("plugin_version"),
                        agents=None if agents is None else tuple(agents))


class BridgeTarget(Protocol):
    """What the bridge calls; implemented by :class:`agent_tray.service.AgentService`."""

    def bridge_health(self) -> dict[str, Any]: ...
    def bridge_telemetry(self) -> dict[str, Any] | None: ...
    def bridge_openclaw(self, info: OpenClawInfo) -> None: ...
    def bridge_events(self, events: list[BridgeEvent]) -> dict[str, int]: ...


class LocalBridge:
    """Runs the bridge's HTTP server in a daemon thread.

    Args:
        target: the agent service answering the requests.
        port: TCP port on 127.0.0.1 (0 picks a free one; see :attr:`port` after start).
        token: when set, every request needs ``Authorization: Bearer <token>``.

    Raises:
        OSError: from :meth:`start` when the port is taken (the message names it).
    """

    def __init__(self, target: BridgeTarget, port: int, token: str | None = None) -> None:
        self.target = target
        self.token = token
        self._requested_port = port
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        return self._sock.getsockname()[1] if self._sock else self._requested_port

    def start(self) -> None:
        """Bind 127.0.0.1:port and serve in the background.

        The port is bound at once (a conflict shows at start-up), but the HTTP server
        (``http.server``, ~0.9 MB) is loaded only when the first request arrives: on a machine
        without the OpenClaw plugin or local tools asking, nothing ever does.
        """
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            if os.name == "posix":  # as http.server does: a restarted agent may rebind at once
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", self._requested_port))
            sock.listen(16)
        except OSError as exc:
            sock.close()
            raise OSError(f"local bridge cannot listen on 127.0.0.1:{self._requested_port}: {exc.strerror}; "
                          "set bridge_port in the agent config (0 turns the bridge off)") from None
        self._sock = sock
        self._stopping = False
        self._thread = threading.Thread(target=self._serve, args=(sock,), name="clawfleet-bridge", daemon=True)
        self._thread.start()
        log.info("local bridge listening on http://127.0.0.1:%d", self.port)

    def _serve(self, sock: socket.socket) -> None:
        # blocks in accept() (no idle polling, unlike serve_forever's 0.5 s); stop() wakes it by connecting
        server = None
        while not self._stopping:
            try:
                conn, addr = sock.accept()
            except OSError:
                return  # closed by stop()
            if self._stopping:
                conn.close()
                return
            if server is None:
                from agent_tray.bridge_http import make_server

                server = make_server(self, sock)
            server.process_request(conn, addr)  # a handler thread per request (ThreadingMixIn)

    def stop(self) -> None:
        """Stop serving and close the socket."""
        sock, self._sock = self._sock, None
        if sock is None:
            return
        self._stopping = True
        try:  # wake the blocked accept(); it then sees _stopping
            socket.create_connection(sock.getsockname()[:2], timeout=1).close()
        except OSError:
            pass
        if self._thread is not None:
            self._thread.join(timeout=5)
        sock.close()
