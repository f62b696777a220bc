"""How the agent reaches the broker: MQTT over TLS first, MQTT over secure WebSockets when that port is blocked.

A firewall that lets only HTTPS out drops or refuses the broker's MQTT/TLS port (8883). When the
enrollment token named a ``wss://host:port/mqtt`` URL (the managed Mosquitto's WebSockets listener,
same certificate, same account), the agent switches to it after :data:`FALLBACK_AFTER` failed attempts
on the direct port, says so in ``status`` and the tray, and checks the direct port again every
:data:`RETRY_DIRECT_S` seconds (a TCP connect and TLS handshake only); once it answers, the agent
moves back to it. A broker that answers but refuses the key is not a blocked port: no fallback then.

:class:`RoutePicker` makes the choice; the publisher asks it for the route before each connection
attempt (:meth:`Route.apply`) and tells it how the attempt went.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from shared.broker_url import parse_broker_url

log = logging.getLogger("clawfleet.agent.mqtt")

FALLBACK_AFTER = 2
"""Consecutive failed attempts on one route before the agent tries the other one."""
RETRY_DIRECT_S = 1800.0
"""While on the WebSockets fallback, how often the direct port is checked again, seconds."""
PROBE_TIMEOUT_S = 10.0
"""Time allowed for the check of the direct port (TCP connect plus TLS handshake), seconds."""


@dataclass(frozen=True)
class Route:
    """One way to the broker: ``kind`` is ``"direct"`` (the broker URL: MQTT over TCP/TLS) or ``"wss"``."""

    kind: str
    url: str
    host: str
    port: int
    tls: bool
    path: str = ""

    @property
    def transport(self) -> str:
        """paho's transport name: ``"tcp"`` or ``"websockets"``."""
        return "websockets" if self.kind == "wss" else "tcp"

    def apply(self, client: object) -> None:
        """Point a paho client at this route before a connection attempt: transport, host, port and
        WebSockets path. paho 2.x's public setters refuse while a reconnect is under way (the state is
        "connection lost", not "closed"), which is exactly when the route changes, so this sets the
        attributes behind them (paho-mqtt is pinned < 3)."""
        client._transport = self.transport  # type: ignore[attr-defined]
        client._host = self.host  # type: ignore[attr-defined]
        client._port = self.port  # type: ignore[attr-defined]
        if self.kind == "wss":
            client.ws_set_options(path=self.path or "/mqtt")  # type: ignore[attr-defined]


def direct_route(broker_url: str) -> Route:
    """The route of an ``mqtt://`` / ``mqtts://`` broker URL. Raises ValueError for another URL."""
    scheme, host, port = parse_broker_url(broker_url)
    return Route("direct", broker_url, host, port, tls=scheme == "mqtts")


def wss_route(wss_url: str) -> Route:
    """The route of a ``wss://host[:port][/path]`` URL (port 443 and path ``/mqtt`` by default).

    Raises:
        ValueError: not a ``wss://`` URL with a host.
    """
    parts = urlsplit(wss_url)
    if parts.scheme != "wss" or not parts.hostname:
        raise ValueError(f"WebSockets URL {wss_url!r} must look like wss://host:port/mqtt")
    return Route("wss", wss_url, parts.hostname, parts.port or 443, tls=True, path=parts.path or "/mqtt")


class RoutePicker:
    """Chooses the route for each connection attempt (thread-safe).

    Args:
        direct: the broker URL's route (tried first).
        fallback: the WebSockets route, if the token named one.
        fallback_after: failed attempts in a row before switching routes.
        retry_direct_s: while connected over the fallback, seconds between checks of the direct port.
        clock: monotonic seconds (tests pass their own).
    """

    def __init__(self, direct: Route, fallback: Route | None = None, fallback_after: int = FALLBACK_AFTER,
                 retry_direct_s: float = RETRY_DIRECT_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.direct = direct
        self.fallback = fallback
        self.fallback_after = max(1, fallback_after)
        self.retry_direct_s = retry_direct_s
        self._clock = clock
        self._lock = threading.Lock()
        self._current = direct
        self._failures = 0
        self._direct_blocked_since: float | None = None
        self._direct_checked = 0.0
        self.connected_route: Route | None = None
        """The route of the live connection, None while not connected."""

    @property
    def current(self) -> Route:
        """The route the next attempt uses."""
        return self._current

    def failed(self, why: str = "") -> Route:
        """Record a failed attempt on :attr:`current`; returns the route for the next one."""
        with self._lock:
            self.connected_route = None
            self._failures += 1
            if self.fallback is None or self._failures < self.fallback_after:
                return self._current
            self._failures = 0
            if self._current is self.direct:
                self._direct_blocked_since = self._direct_blocked_since or self._clock()
                self._direct_checked = self._clock()
                log.warning("cannot reach the broker on %s:%d (%s); trying MQTT over WebSockets on %s:%d",
                            self.direct.host, self.direct.port, why or "no answer", self.fallback.host,
                            self.fallback.port)
                self._current = self.fallback
            else:
                log.warning("the WebSockets fallback %s:%d fails too (%s); trying %s:%d again", self.fallback.host,
                            self.fallback.port, why or "no answer", self.direct.host, self.direct.port)
                self._current = self.direct
            return self._current

    def connected(self) -> None:
        """Record a successful connection on :attr:`current`."""
        with self._lock:
            self._failures = 0
            self.connected_route = self._current
            if self._current is self.direct:
                self._direct_blocked_since = None

    def disconnected(self) -> None:
        """The live connection ended (the next attempt stays on the same route)."""
        self.connected_route = None

    def on_fallback(self) -> bool:
        """True when the agent uses (or is about to use) the WebSockets fallback."""
        return self._current is not self.direct

    def direct_due(self) -> bool:
        """True when connected over the fallback and the direct port was last checked
        :attr:`retry_direct_s` seconds ago or more."""
        return (self.connected_route is not None and self.connected_route is not self.direct
                and self._clock() - self._direct_checked >= self.retry_direct_s)

    def use_direct(self) -> None:
        """Go back to the direct route for the next attempt (its port answered a check)."""
        with self._lock:
            log.info("the broker's port %s:%d answers again; moving back from WebSockets", self.direct.host,
                     self.direct.port)
            self._current, self._failures, self._direct_blocked_since = self.direct, 0, None

    def checked_direct(self) -> None:
        """A check of the direct port failed: wait :attr:`retry_direct_s` before the next one."""
        self._direct_checked = self._clock()

    def describe(self) -> str | None:
        """One line for ``status`` and the tray while on the fallback (None on the direct route)."""
        if not self.on_fallback():
            return None
        return (f"via MQTT over WebSockets ({self.fallback.host}:{self.fallback.port}): port {self.direct.port} "  # type: ignore[union-attr]
                f"is blocked; checked again every {self.retry_direct_s / 60:.0f} min")


def probe_direct(route: Route, context: ssl.SSLContext | None, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """True when ``route``'s port accepts a TCP connection and, for TLS, completes a verified handshake."""
    try:
        with socket.create_connection((route.host, route.port), timeout=timeout) as sock:
            if context is None or not route.tls:
                return True
            with context.wrap_socket(sock, server_hostname=route.host):
                return True
    except (OSError, ValueError):
        return False


def picker_for(broker_url: str, wss_url: str | None, **kwargs: object) -> RoutePicker:
    """A :class:`RoutePicker` for an agent config's ``broker_url`` and ``wss_url``."""
    return RoutePicker(direct_route(broker_url), wss_route(wss_url) if wss_url else None, **kwargs)  # type: ignore[arg-type]
