"""Human-readable numbers for the dashboard (pure functions, no NiceGUI)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def bytes_h(n: float | None) -> str:
    """``1536`` -> ``"1.5 KiB"``; None -> ``"–"``."""
    if n is None:
        return "–"
    n = float(n)
    for unit in _UNITS:
        if abs(n) < 1024 or unit == _UNITS[-1]:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return "–"


def rate_h(bps: float | None) -> str:
    """Bytes per second -> ``"1.2 MiB/s"``."""
    return "–" if bps is None else bytes_h(bps) + "/s"


def pct_h(p: float | None) -> str:
    """Percent 0-100 -> ``"42%"``."""
    return "–" if p is None else f"{p:.0f}%"


def duration_h(seconds: float | None) -> str:
    """Seconds -> ``"3d 4h"``, ``"5h 2m"``, ``"42s"``."""
    if seconds is None:
        return "–"
    s = int(max(0, seconds))
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    if d:
        return f"{d}d {h}h"
    if h:
        return f"{h}h {m}m"
    if m:
        return f"{m}m {s}s"
    return f"{s}s"


def ago_h(ts_ms: int | None, now_s: float | None = None) -> str:
    """Epoch ms -> ``"12s ago"``; None -> ``"never"``."""
    if ts_ms is None:
        return "never"
    now_s = time.time() if now_s is None else now_s
    delta = now_s - ts_ms / 1000
    return "just now" if delta < 1 else f"{duration_h(delta)} ago"


def tokens_h(n: int | None) -> str:
    """Token counts -> ``"12.3k"``, ``"4.5M"``."""
    if n is None:
        return "–"
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.1f}{suffix}"
    return str(n)


STATUS_COLORS = {
    "online": "positive",
    "offline": "negative",
    "revoked": "negative",
    "shutdown": "grey",
    "sleeping": "warning",
    "unknown": "grey",
}
"""Quasar color name for each device status pill."""


def day_bounds_ms(offset_days: int = 0, now: datetime | None = None) -> tuple[int, int]:
    """``(start, end)`` epoch ms of a local calendar day: 0 today, -1 yesterday (server's zone)."""
    now = now or datetime.now().astimezone()
    start = (now + timedelta(days=offset_days)).replace(hour=0, minute=0, second=0, microsecond=0)
    end = start + timedelta(days=1)
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)
