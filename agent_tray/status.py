"""What the running agent reports about itself: one snapshot read by the tray, ``/health`` and
``clawfleet-agent status``.

The tray and the CLI never look into the publisher or collectors themselves; they read an
:class:`AgentStatus` built here from the service's objects, so headless and tray mode show the
same thing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

from shared.version import __version__

if TYPE_CHECKING:
    from agent_tray.service import AgentService
    from shared.payloads import UsageRecord

REFUSED_REASON_CODES = frozenset({0x86, 0x87, 0x8A, 0x8C})
"""MQTT 5 CONNACK reason codes that mean the broker will not take this device's key:
bad user name or password, not authorized, banned, bad authentication method."""


class Health(str, Enum):
    """The agent's state as one word; the tray maps it to the icon colour."""

    OK = "ok"
    """connected; OpenClaw up, or not installed on this machine (green)"""
    OPENCLAW_DOWN = "openclaw-down"
    """connected; OpenClaw installed but its gateway does not answer (amber)"""
    CONNECTING = "connecting"
    """not connected yet, or connection lost; messages wait in the outbox (grey)"""
    REFUSED = "refused"
    """the broker refused the device's key (revoked, rotated, or wrong) (red)"""
    ERROR = "error"
    """configuration error: not enrolled or a bad config file (red)"""


@dataclass(frozen=True)
class AgentStatus:
    """A snapshot of the agent.

    Times are epoch milliseconds UTC; ``openclaw`` is ``"up"``, ``"down"``, ``"absent"`` (not
    installed) or ``None`` (not probed yet); ``tokens_today`` counts the total tokens of the usage
    records read since ``tokens_since_ms`` (the later of local midnight and the agent's start).
    """

    health: Health
    summary: str
    device_id: str | None
    broker_url: str | None
    connected: bool
    paused: bool
    last_error: str | None
    outbox_messages: int
    outbox_bytes: int
    last_publish_ms: int | None
    openclaw: str | None
    openclaw_version: str | None
    tokens_today: int
    tokens_since_ms: int | None
    agent_version: str = __version__
    route: str | None = None
    """How the agent reaches the broker when not directly: the WebSockets fallback and why (None: direct)."""
    update: dict | None = None
    """The last self-update: ``{"state", "version", "detail", "ts"}`` (see :mod:`agent_tray.update.state`)."""

    def to_dict(self) -> dict:
        """JSON-ready form (``health`` as its string value)."""
        d = asdict(self)
        d["health"] = self.health.value
        return d

    @classmethod
    def config_error(cls, message: str) -> AgentStatus:
        """The status shown when there is no usable config (tray before enrollment)."""
        return cls.without_agent(Health.ERROR, message)

    @classmethod
    def without_agent(cls, health: Health, message: str) -> AgentStatus:
        """A status with no agent core behind it (``message`` as summary and, for errors, last error)."""
        return cls(health=health, summary=message, device_id=None, broker_url=None, connected=False,
                   paused=False, last_error=message if health is Health.ERROR else None,
                   outbox_messages=0, outbox_bytes=0, last_publish_ms=None,
                   openclaw=None, openclaw_version=None, tokens_today=0, tokens_since_ms=None)


class TokenCounter:
    """Sums ``total_tokens`` of usage records whose ``ts`` falls on today's local date.

    Thread-safe; the day rolls over at local midnight. Counts only what this process read, so
    ``since_ms`` says from when.
    """

    def __init__(self, started_ms: int) -> None:
        self._lock = threading.Lock()
        self._day = dt.date.today()
        self._total = 0
        self._started_ms = started_ms

    def add(self, records: list[UsageRecord]) -> None:
        """Count the records dated today (local time)."""
        with self._lock:
            self._roll()
            for r in records:
                if dt.datetime.fromtimestamp(r.ts / 1000).date() == self._day:
                    self._total += r.total_tokens

    def today(self) -> tuple[int, int]:
        """``(tokens, since_ms)``."""
        with self._lock:
            self._roll()
            midnight = int(dt.datetime.combine(self._day, dt.time()).timestamp() * 1000)
            return self._total, max(midnight, self._started_ms)

    def _roll(self) -> None:
        today = dt.date.today()
        if today != self._day:
            self._day, self._total = today, 0


def snapshot(service: AgentService) -> AgentStatus:
    """Build the :class:`AgentStatus` of a running (or starting) :class:`AgentService`."""
    pub = service.publisher
    connected = pub.connected.is_set()
    stats = service.outbox.stats()
    oc = service.openclaw.last
    openclaw = None if oc is None else ("up" if oc.up else ("down" if oc.installed else "absent"))
    refusal = getattr(pub, "last_refusal", None)
    routes = getattr(pub, "routes", None)
    route = routes.describe() if routes is not None else None
    if connected:
        health = Health.OPENCLAW_DOWN if openclaw == "down" else Health.OK
        summary = ("connected" + (" via WebSockets" if route else "")
                   + (", OpenClaw gateway down" if openclaw == "down" else ""))
    elif refusal is not None and refusal.value in REFUSED_REASON_CODES:
        health = Health.REFUSED
        summary = f"key refused ({refusal}): ask the fleet admin for a new token"
    else:
        health = Health.CONNECTING
        waiting = f", {stats['messages']} waiting" if stats["messages"] else ""
        summary = ("connecting" if pub.last_error is None else "offline") + waiting
    if service.paused:
        summary += " (reporting paused)"
    tokens, since = service.tokens.today()
    return AgentStatus(
        health=health, summary=summary, device_id=service.cfg.device_id, broker_url=service.cfg.broker_url,
        connected=connected, paused=service.paused, last_error=pub.last_error,
        outbox_messages=stats["messages"], outbox_bytes=stats["bytes"],
        last_publish_ms=getattr(pub, "last_publish_ms", None), openclaw=openclaw,
        openclaw_version=oc.version if oc else None, tokens_today=tokens, tokens_since_ms=since, route=route,
        update=getattr(service, "update_status", lambda: None)())


def ask_running_agent(port: int, token: str | None = None, timeout: float = 2.0) -> dict | None:
    """``GET http://127.0.0.1:<port>/health`` of a running agent's bridge; None when nothing answers.

    Returns the ``status`` object of the answer (:meth:`AgentStatus.to_dict` form).

    Raises:
        PermissionError: the bridge wants a bearer token and ``token`` is missing or wrong.
    """
    import json
    import urllib.error
    import urllib.request

    req = urllib.request.Request(f"http://127.0.0.1:{port}/health")  # fixed loopback http URL
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
            body = json.loads(resp.read(256 * 1024))
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            raise PermissionError("the agent's bridge refused the bearer token (bridge_token in the config)") from None
        return None
    except (OSError, ValueError):
        return None
    status = body.get("status") if isinstance(body, dict) else None
    return status if isinstance(status, dict) else None


def outbox_size(path: Path) -> int | None:
    """Messages waiting in the outbox file at ``path`` (read-only), None when there is none yet."""
    import sqlite3

    if not path.exists():
        return None
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2)) as db:
            return int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
    except sqlite3.Error:
        return None


def bridge_record_path(data_dir: Path, device_id: str) -> Path:
    """Where a running agent records the port its local bridge listens on (``bridge-<device>.json``
    in its data dir)."""
    return data_dir / f"bridge-{device_id}.json"


def record_bridge_port(data_dir: Path, device_id: str, port: int) -> None:
    """Record the bridge port of the running agent of ``device_id`` (``{"port", "pid"}``, mode 0600), so
    ``status`` asks the right agent when a second one had to take another port."""
    import json
    import os

    from shared.private_files import write_private

    try:
        write_private(bridge_record_path(data_dir, device_id), json.dumps({"port": port, "pid": os.getpid()}))
    except OSError:  # a read-only data dir: status falls back to the configured port
        pass


def remove_bridge_record(data_dir: Path, device_id: str) -> None:
    """Forget the recorded bridge port (the agent stopped)."""
    with contextlib.suppress(OSError):
        bridge_record_path(data_dir, device_id).unlink()


def recorded_bridge_port(data_dir: Path, device_id: str) -> int | None:
    """The bridge port a running agent of ``device_id`` recorded, or None (none recorded, or its
    process is gone)."""
    import json

    import psutil

    try:
        data = json.loads(bridge_record_path(data_dir, device_id).read_text(encoding="utf-8"))
        port, pid = int(data["port"]), int(data["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return port if 0 < port < 65536 and psutil.pid_exists(pid) else None
