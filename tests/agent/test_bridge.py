"""The local bridge over real HTTP on 127.0.0.1: endpoints, its safety rules, start and stop."""

from __future__ import annotations

import http.client
import json
import socket
import time
from typing import Any

import pytest

from agent_tray.bridge import BridgeEvent, LocalBridge, OpenClawInfo


class Target:
    """Records what the bridge hands to the agent (the agent service's bridge methods)."""

    def __init__(self) -> None:
        self.infos: list[OpenClawInfo] = []
        self.events: list[BridgeEvent] = []

    def bridge_health(self) -> dict[str, Any]:
        return {"ok": True}

    def bridge_telemetry(self) -> dict[str, Any] | None:
        return None

    def bridge_openclaw(self, info: OpenClawInfo) -> None:
        self.infos.append(info)

    def bridge_events(self, events: list[BridgeEvent]) -> dict[str, int]:
        self.events += events
        return {"accepted": len(events)}


@pytest.fixture
def bridge() -> Any:
    target = Target()
    b = LocalBridge(target, 0, token=None)
    b.start()
    yield b, target
    b.stop()


def request(port: int, method: str, path: str, body: bytes | None = None, **headers: str) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"{}")
    finally:
        conn.close()


def test_endpoints_and_safety_rules(bridge: Any) -> None:
    b, target = bridge
    assert request(b.port, "GET", "/health") == (200, {"ok": True})
    assert request(b.port, "GET", "/telemetry")[0] == 404
    assert request(b.port, "GET", "/health", Host="evil.example:17890")[0] == 403  # DNS rebinding
    js = {"Content-Type": "application/json"}
    assert request(b.port, "POST", "/events", b'{"type": "llm_output"}', **{"Content-Type": "text/plain"})[0] == 415
    assert request(b.port, "POST", "/events", b"{nope", **js)[0] == 400
    status, body = request(b.port, "POST", "/events", b'{"type": "reboot"}', **js)
    assert status == 422 and "'type': must be one of" in body["error"]
    big = b'{"events": [' + b",".join([b'{"type": "agent_end"}'] * 20000) + b"]}"
    assert request(b.port, "POST", "/events", big, **js)[0] == 413
    status, body = request(b.port, "POST", "/events", b'{"events": [{"type": "gateway_start", "port": 18789}, '
                           b'{"type": "after_tool_call", "toolName": "read", "toolCallId": "c1", '
                           b'"durationMs": 12.5, "error": "ENOENT", "usage": {"input": 7}}]}', **js)
    assert (status, body["accepted"]) == (200, 2)
    assert [(e.type, e.port) for e in target.events] == [("gateway_start", 18789), ("after_tool_call", None)]
    ev = target.events[1]
    assert (ev.toolName, ev.toolCallId, ev.durationMs, ev.error) == ("read", "c1", 12.5, "ENOENT")
    assert not hasattr(ev, "usage")  # usage is never taken from events (no entry ids): ignored
    assert request(b.port, "POST", "/openclaw", b'{"openclaw_version": "2026.9.6", "agents": ["main"]}', **js)[0] == 200
    assert (target.infos[0].openclaw_version, target.infos[0].agents) == ("2026.9.6", ("main",))


def test_bearer_token() -> None:
    b = LocalBridge(Target(), 0, token="s3cret-token-value")
    b.start()
    try:
        assert request(b.port, "GET", "/health")[0] == 401
        assert request(b.port, "GET", "/health", Authorization="Bearer wrong")[0] == 401
        assert request(b.port, "GET", "/health", Authorization="Bearer s3cret-token-value")[0] == 200
    finally:
        b.stop()


def test_port_taken_names_the_setting_and_stop_is_prompt() -> None:
    b = LocalBridge(Target(), 0)
    b.start()
    port = b.port
    other = LocalBridge(Target(), port)
    with pytest.raises(OSError, match=f"127.0.0.1:{port}.*bridge_port"):
        other.start()
    t0 = time.monotonic()
    b.stop()
    assert time.monotonic() - t0 < 2, "stop() must not wait for a poll interval"
    with socket.socket() as s:  # the port is free again
        s.bind(("127.0.0.1", port))
    b.stop()  # twice is harmless
