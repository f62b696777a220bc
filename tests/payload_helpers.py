"""Valid protocol-v1 payloads (as dicts and bytes) for tests that publish like a device does,
and a device connection to a running :class:`fleet_server.server.FleetServer`.

Import as ``from payload_helpers import ...`` (``tests/`` is on ``sys.path``).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from mqtt_helpers import Probe, connect_probe

from fleet_server.devices.registry import add_device
from fleet_server.server import FleetServer
from shared.clock import now_ms
from shared.topics import Channel, device_topic


def telemetry(device_id: str, ts: int | None = None, **over: Any) -> dict[str, Any]:
    """A valid telemetry sample of ``device_id`` (dict), fields overridable."""
    data = {"v": 1, "device_id": device_id, "ts": ts or now_ms(), "cpu_pct": 5.0, "mem_used_bytes": 1 << 30,
            "mem_total_bytes": 4 << 30, "mem_pct": 25.0, "disk_used_bytes": 10 << 30, "disk_total_bytes": 100 << 30,
            "disk_pct": 10.0, "swap_pct": 0.0, "net_rx_bps": 100.0, "net_tx_bps": 50.0, "load_avg": [0.5, 0.4, 0.3],
            "uptime_s": 3600.0, "openclaw": {"installed": True, "up": True, "port": 18789, "version": "2026.9.6"}}
    data.update(over)
    return data


def usage_record(rid: str | None = None, ts: int | None = None, **over: Any) -> dict[str, Any]:
    """A valid usage record (dict); ``total_tokens`` is the sum of the parts unless overridden."""
    rec = {"id": rid or uuid.uuid4().hex, "ts": ts or now_ms(), "agent_id": "main", "session_id": "s1",
           "provider": "anthropic", "model": "claude", "input_tokens": 100, "output_tokens": 20,
           "cache_read_tokens": 5, "cache_write_tokens": 0, "cost_usd": 0.01, "source": "transcript"}
    rec.update(over)
    rec.setdefault("total_tokens", sum(rec[k] for k in ("input_tokens", "output_tokens", "cache_read_tokens",
                                                        "cache_write_tokens")))
    return rec


def log_record(rid: str | None = None, ts: int | None = None, **over: Any) -> dict[str, Any]:
    """A valid log record (dict), level ``error``."""
    rec = {"id": rid or uuid.uuid4().hex, "ts": ts or now_ms(), "level": "error", "subsystem": "gateway",
           "message": "model call failed", "fingerprint": "f" * 16, "source": "gateway-log"}
    rec.update(over)
    return rec


def run_record(rid: str | None = None, ts: int | None = None, **over: Any) -> dict[str, Any]:
    """A valid run (turn) record (dict): a failed turn with one retry and a tool call."""
    t = ts or now_ms()
    rec = {"id": rid or uuid.uuid4().hex, "agent_id": "main", "session_id": "s1", "run_id": "r-1", "started_ms": t,
           "ended_ms": t + 1500, "status": "failed", "stop_reason": "error", "provider": "anthropic", "model": "claude",
           "messages": 2, "error_messages": 2, "retries": 1, "tool_calls": 1, "tool_errors": 0, "input_tokens": 100,
           "output_tokens": 20, "cache_read_tokens": 0, "cache_write_tokens": 0, "cost_usd": 0.01,
           "error": "HTTP 500", "rev": 4}
    rec.update(over)
    rec.setdefault("total_tokens", sum(rec[k] for k in ("input_tokens", "output_tokens", "cache_read_tokens",
                                                        "cache_write_tokens")))
    return rec


def tool_call(rid: str | None = None, ts: int | None = None, **over: Any) -> dict[str, Any]:
    """A valid tool call record (dict)."""
    rec = {"id": rid or uuid.uuid4().hex, "agent_id": "main", "session_id": "s1", "run": "", "ts": ts or now_ms(),
           "tool": "exec", "error": True, "duration_s": 0.25, "source": "transcript"}
    rec.update(over)
    return rec


def session_record(sid: str = "s1", ts: int | None = None, **over: Any) -> dict[str, Any]:
    """A valid session index record (dict)."""
    rec = {"agent_id": "main", "session_id": sid, "session_key": "agent:main:planning", "channel": "telegram",
           "chat_type": "direct", "label": "planning", "status": "done", "started_ms": (ts or now_ms()) - 60_000,
           "updated_ms": ts or now_ms()}
    rec.update(over)
    return rec


def activity_batch(device_id: str, ts: int | None = None, **lists: list[dict[str, Any]]) -> dict[str, Any]:
    """A usage batch carrying sessions/runs/tool calls only (as newer agents send them)."""
    return {"v": 1, "device_id": device_id, "ts": ts or now_ms(), "records": [], **lists}


def batch(device_id: str, records: list[dict[str, Any]], ts: int | None = None) -> dict[str, Any]:
    """A usage or logs batch envelope around ``records``."""
    return {"v": 1, "device_id": device_id, "ts": ts or now_ms(), "records": records}


def status(device_id: str, state: str = "online", ts: int | None = None, reason: str | None = None) -> dict:
    """A status payload."""
    data: dict[str, Any] = {"v": 1, "device_id": device_id, "ts": ts or now_ms(), "state": state}
    if reason is not None:
        data["reason"] = reason
    return data


def meta(device_id: str, ts: int | None = None, **over: Any) -> dict[str, Any]:
    """A valid meta payload (dict)."""
    data = {"v": 1, "device_id": device_id, "ts": ts or now_ms(), "hostname": f"{device_id}.local", "os": "Linux",
            "os_version": "6.1", "arch": "x86_64", "agent_version": "0.1.0", "cpu_count": 4,
            "mem_total_bytes": 4 << 30, "disk_total_bytes": 100 << 30, "boot_time_ms": now_ms() - 3_600_000,
            "openclaw_version": "2026.9.6", "agents": ["main"]}
    data.update(over)
    return data


def dumps(data: Any) -> bytes:
    """Compact JSON bytes."""
    return json.dumps(data, separators=(",", ":")).encode()


class DeviceConn:
    """An enrolled device connected to ``server``'s broker as a raw MQTT 5 client (no agent).

    ``publish(channel, payload)`` publishes QoS 1 to the device's own topic and asserts the broker
    accepted it (the server, not the broker, judges the payload). Close with :meth:`close`.
    """

    def __init__(self, server: FleetServer, name: str) -> None:
        assert server.dynsec is not None
        new = add_device(server.dynsec, name, server.broker_url)
        self.device_id, self.api_key, self.port = new.device.id, new.api_key, server.opts.mqtt_port
        self.probe: Probe
        self.reopen()

    def reopen(self) -> DeviceConn:
        """(Re)connect with the device's credentials (e.g. after the server restarted); returns self."""
        self.probe, rc = connect_probe("127.0.0.1", self.port, self.device_id, self.api_key,
                                       client_id=self.device_id)
        assert not rc.is_failure, rc
        return self

    def topic(self, channel: Channel) -> str:
        return device_topic(self.device_id, channel)

    def publish(self, channel: Channel, payload: bytes | dict, retain: bool = False) -> None:
        raw = payload if isinstance(payload, bytes) else dumps(payload)
        rc = self.probe.publish(self.topic(channel), raw, qos=1, retain=retain)
        assert rc is not None and not rc.is_failure, rc

    def close(self) -> None:
        self.probe.close()

    def __enter__(self) -> DeviceConn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
