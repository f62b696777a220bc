"""Human-readable numbers for the dashboard (pure functions, no NiceGUI).

Every function takes whatever a stored value may be (None, NaN, infinity, integers far beyond
64 bits, negative numbers) and returns short text without raising: ``"–"`` for what is not a
number, scientific notation for what is absurdly large.
"""

from __future__ import annotations

import math
import time
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fleet_server.store.usage.sums import UsageSums

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
NA = "–"
"""Text for a missing or non-finite value."""


def _num(n: object) -> float | None:
    """``n`` as a finite float, or None (None, NaN, ±infinity, not a number, beyond float range)."""
    if n is None or isinstance(n, bool):
        return None
    try:
        f = float(n)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None
    return f if math.isfinite(f) else None


def bytes_h(n: float | None) -> str:
    """``1536`` -> ``"1.5 KiB"``; None or non-finite -> ``"–"``."""
    n = _num(n)
    if n is None:
        return NA
    if abs(n) >= 1024.0 ** len(_UNITS):
        return f"{n:.2e} B"
    for unit in _UNITS:
        if abs(n) < 1024 or unit == _UNITS[-1]:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return "–"


def rate_h(bps: float | None) -> str:
    """Bytes per second -> ``"1.2 MiB/s"``."""
    text = bytes_h(bps)
    return text if text == NA else text + "/s"


def pct_h(p: float | None) -> str:
    """Percent 0-100 -> ``"42%"`` (values outside 0-100 are shown as they are, if short)."""
    p = _num(p)
    if p is None or abs(p) >= 1e6:
        return NA
    return f"{p:.0f}%"


def duration_h(seconds: float | None) -> str:
    """Seconds -> ``"3d 4h"``, ``"5h 2m"``, ``"42s"``; beyond 100 years or not finite -> ``"–"``."""
    seconds = _num(seconds)
    if seconds is None or seconds > 100 * 365 * 86400:
        return NA
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
    """Epoch ms -> ``"12s ago"``; None -> ``"never"``; a time ahead of the clock -> ``"just now"``."""
    if ts_ms is None:
        return "never"
    ts = _num(ts_ms)
    if ts is None:
        return NA
    now_s = time.time() if now_s is None else now_s
    delta = now_s - ts / 1000
    if delta < 1:
        return "just now"
    text = duration_h(delta)
    return "long ago" if text == NA else f"{text} ago"


def tokens_h(n: int | None) -> str:
    """Token counts -> ``"12.3k"``, ``"4.5M"``, ``"7.8G"``, ``"1.2T"``; beyond 10^18 ``"1.2e+21"``."""
    f = _num(n)
    if f is None:
        return NA
    if abs(f) >= 1e18:
        return f"{f:.1e}"
    for div, suffix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(f) >= div:
            return f"{f / div:.1f}{suffix}"
    return str(int(f)) if f == int(f) else f"{f:.1f}"


def usd_h(usd: float | None) -> str:
    """US dollars -> ``"$1.23"``; beyond a trillion ``"$1.2e+15"``; not finite -> ``"–"``."""
    f = _num(usd)
    if f is None:
        return NA
    return f"${f:.1e}" if abs(f) >= 1e12 else f"${f:,.2f}"


def date_time_h(ts_ms: int | None, tz: tzinfo, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    """Epoch ms -> wall-clock time in ``tz`` (the viewer's zone, see
    :mod:`fleet_server.dashboard.parts.timezone`): ``"2026-11-21 04:10:53"``; ``fmt`` as
    ``strftime``. None or outside years 1-9999 -> ``"–"``. The one time format of every page."""
    ts = _num(ts_ms)
    if ts is None:
        return NA
    try:
        return datetime.fromtimestamp(ts / 1000, tz).strftime(fmt)
    except (OverflowError, OSError, ValueError):
        return NA


STATUS_COLORS = {
    "online": "positive",
    "offline": "negative",
    "revoked": "negative",
    "shutdown": "grey",
    "sleeping": "warning",
    "paused": "info",
    "unknown": "grey",
}
"""Quasar color name for each device status pill."""

STATUS_WORDS = {"shutdown": "shut down", "unknown": "no data yet"}
"""Pill text of a status where the wire term is not plain English (others are shown as they are)."""

REASON_WORDS = {
    "last-will": "lost connection",
    "agent stopped": "stopped",
    "revoked": "key revoked",
    "key rotated": "key rotated",
    "needs new key": "needs a new key",
    "no data for 3 intervals": "stopped reporting",
    "data resumed": "reporting again",
}
"""Plain words for the status reasons the agent, broker and server record (``Device.status_reason``);
a reason not listed (a device may send its own, up to 200 characters) is shown as it is."""


def status_words(status: str, reason: str | None) -> tuple[str, str]:
    """``(pill text, reason text)`` for a device status (its ``display_status``) and its recorded
    reason, in plain words: ``("offline", "lost connection")`` for a last will, ``("revoked", "")`` for
    a revoked device (its reason would only repeat the pill), ``("online", "")`` for a reason that
    says nothing more. The one mapping every page uses where a status is shown."""
    pill = STATUS_WORDS.get(status, status)
    text = REASON_WORDS.get(reason, reason) if reason else ""
    if status == "online" and reason in ("data resumed", None):
        text = ""
    if text and (pill in text or text in pill):
        text = ""
    return pill, text


def count_h(n: int, noun: str, plural: str | None = None) -> str:
    """``count_h(1, "device")`` -> ``"1 device"``, ``count_h(1234, "device")`` -> ``"1,234 devices"``."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"


def cost_h(s: UsageSums, exact: bool = False) -> str:
    """The cost of some usage in words: ``"$1.23"``, ``"$1.23 + unpriced (45 tokens)"``,
    ``"unpriced (12,345 tokens)"``. Unpriced usage is never shown as $0: a "$0.00" appears only when
    every message had a price and it came to nothing, or nothing was used. ``exact``: to 1/10000 of
    a cent (``"$1.234567"``). The one cost format of every page."""
    parts = []
    if s.priced_messages and (s.cost_usd > 0 or not s.unpriced_tokens):  # a $0 beside unpriced tokens says nothing
        parts.append(f"${s.cost_usd:,.6f}" if exact else usd_h(s.cost_usd))
    if s.unpriced_tokens:
        parts.append(f"unpriced ({s.unpriced_tokens:,} tokens)")
    return " + ".join(parts) if parts else ("$0.000000" if exact else "$0.00")


def token_breakdown(s: UsageSums) -> str:
    """``"in 12.3k · out 456 · cache read 1.2k · cache write 0 · $0.12"`` (the cost as :func:`cost_h`)."""
    return (f"in {tokens_h(s.input_tokens)} · out {tokens_h(s.output_tokens)} · cache read "
            f"{tokens_h(s.cache_read_tokens)} · cache write {tokens_h(s.cache_write_tokens)} · {cost_h(s)}")
