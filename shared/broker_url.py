"""Broker URLs as agents and enrollment tokens spell them (dependency-free: the agent's run path uses it)."""

from __future__ import annotations

from urllib.parse import urlsplit


def parse_broker_url(url: str) -> tuple[str, str, int]:
    """Split ``mqtt://host:port`` / ``mqtts://host:port`` into ``(scheme, host, port)``.

    Default ports: 1883 for mqtt, 8883 for mqtts. Raises :class:`ValueError` naming the problem.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ValueError(f"broker URL {url!r} must look like mqtt://host:port or mqtts://host:port")
    return parts.scheme, parts.hostname, parts.port or (8883 if parts.scheme == "mqtts" else 1883)
