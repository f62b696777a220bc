"""The overview's table rows: which devices a query selects, in which order, and each device's
row as plain data (pure functions over :class:`fleet_server.state.DeviceView`, no NiceGUI).

Search, filter and sort run on the server over the in-memory snapshot; only one page of rows is
built and sent to the browser, so the page stays the same size at 10,000 devices.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from fleet_server.dashboard.parts.format import (
    NA,
    STATUS_COLORS,
    ago_h,
    bytes_h,
    duration_h,
    pct_h,
    rate_h,
    status_words,
    token_breakdown,
    tokens_h,
)
from fleet_server.state import DeviceView
from fleet_server.store.usage.sums import UsageSums

STALE_ERROR_MS = 24 * 3_600_000
"""An error older than this (ms) is shown grey instead of red."""

STATUS_FILTERS = {"": "any status", "online": "online", "not-online": "not online", "offline": "offline",
                  "revoked": "revoked", "shutdown": "shut down", "sleeping": "sleeping", "paused": "paused",
                  "unknown": "no data yet"}
"""Status filter values (URL-safe) and their labels; ``not-online`` is everything but online."""

PAGE_SIZES = (25, 50, 100)
DEFAULT_PAGE_SIZE = 50


@dataclass
class Query:
    """What the viewer asked for: search text (name, id or host name; case-insensitive substring),
    status filter (a key of :data:`STATUS_FILTERS`), tag filter ("" any), sort column (a key of
    :data:`SORT_KEYS`), direction, 1-based page and rows per page."""

    text: str = ""
    status: str = ""
    tag: str = ""
    sort_by: str = "name"
    descending: bool = False
    page: int = 1
    per_page: int = DEFAULT_PAGE_SIZE


def tags_of(d: DeviceView) -> list[str]:
    """A device's tags (the comma-separated registry field), trimmed, without empties."""
    return [t.strip() for t in d.tags.split(",") if t.strip()]


def all_tags(devices: Iterable[DeviceView]) -> list[str]:
    """Every tag used in the fleet, sorted."""
    return sorted({t for d in devices for t in tags_of(d)}, key=str.lower)


def _matches(d: DeviceView, q: Query, needle: str) -> bool:
    if q.status:
        status = d.display_status
        if q.status == "not-online" and status == "online" or q.status != "not-online" and status != q.status:
            return False
    if q.tag and q.tag not in tags_of(d):
        return False
    if needle:
        host = d.meta.hostname.lower() if d.meta else ""
        if needle not in d.name.lower() and needle not in d.device_id and needle not in host:
            return False
    return True


def _tel(attr: str) -> Callable[[DeviceView], float]:
    return lambda d: getattr(d.telemetry, attr) if d.telemetry is not None else -1.0


SORT_KEYS: dict[str, Callable[[DeviceView], object]] = {
    "name": lambda d: (d.name.lower(), d.device_id),
    "status": lambda d: (d.display_status, d.name.lower()),
    "cpu": _tel("cpu_pct"),
    "mem": _tel("mem_pct"),
    "disk": _tel("disk_pct"),
    "swap": _tel("swap_pct"),
    "uptime": _tel("uptime_s"),
    "openclaw": lambda d: (d.telemetry is not None and d.telemetry.openclaw is not None
                           and d.telemetry.openclaw.up, d.name.lower()),
    "last_seen": lambda d: d.last_seen_ms or 0,
}
"""Sort column -> key over a device view (devices without a sample sort below every value)."""


def select(devices: list[DeviceView], q: Query) -> tuple[int, list[DeviceView]]:
    """``(number of devices matching q, the devices on q's page in q's order)``. A page past the end
    gives the last page (the query's ``page`` is corrected in place)."""
    needle = q.text.strip().lower()
    hits = [d for d in devices if _matches(d, q, needle)] if (needle or q.status or q.tag) else list(devices)
    key = SORT_KEYS.get(q.sort_by, SORT_KEYS["name"])
    hits.sort(key=key, reverse=q.descending)  # type: ignore[arg-type]
    pages = max(1, -(-len(hits) // q.per_page))
    q.page = min(max(1, q.page), pages)
    start = (q.page - 1) * q.per_page
    return len(hits), hits[start:start + q.per_page]


def openclaw_cell(d: DeviceView) -> tuple[str, str]:
    """``(state, text)`` of the OpenClaw column: state ``up`` / ``down`` / ``none`` (not installed or
    not known); text ``"up · 2026.9.6"``. The gateway state comes from the latest sample
    (``telemetry.openclaw.up``), the version from it or else from meta (``openclaw_version``)."""
    oc = d.telemetry.openclaw if d.telemetry is not None else None
    version = (oc.version if oc is not None else None) or (d.meta.openclaw_version if d.meta else None) or ""
    if oc is None or (not oc.installed and not oc.up):
        return ("none", f"not running · {version}" if version and oc is not None else version or NA)
    state = "up" if oc.up else "down"
    return state, f"{state} · {version}" if version else state


def row(d: DeviceView, today: UsageSums, total: UsageSums, now_s: float | None = None) -> dict:
    """One table row (JSON-able; every text already formatted) for device ``d`` with its token sums
    of today and of all time."""
    now_s = time.time() if now_s is None else now_s
    t, m = d.telemetry, d.meta
    pill, reason = status_words(d.display_status, d.status_reason)
    since = d.status_since_ms or d.status_ms
    oc_state, oc_text = openclaw_cell(d)
    stale = d.status != "online" and t is not None  # last values of a device that is not reporting
    err = d.latest_error
    r = {
        "id": d.device_id, "name": d.name, "sub": f"{d.device_id} · {m.os} {m.arch}".strip() if m else d.device_id,
        "status": d.display_status, "status_text": pill, "status_color": STATUS_COLORS.get(d.display_status, "grey"),
        "reason": reason, "reason_tip": d.status_reason or d.display_status,
        "since": f"for {duration_h(now_s - since / 1000)}" if since else "",
        "openclaw": oc_text, "openclaw_state": oc_state, "tags": tags_of(d),
        "tokens": f"{tokens_h(today.total_tokens)} / {tokens_h(total.total_tokens)}",
        "tokens_tip": f"today: {today.total_tokens:,} tokens · {token_breakdown(today)}\n"
                      f"all time: {total.total_tokens:,} tokens · {token_breakdown(total)}",
        "last_seen": ago_h(d.last_seen_ms, now_s), "stale": stale,
        "stale_tip": f"last value, {ago_h(t.ts, now_s)}: the device is {pill}" if stale and t else "",
        "error": "", "error_full": "", "error_old": False,
    }
    if t is None:
        r.update(cpu=NA, mem=NA, disk=NA, swap=NA, net=NA, uptime=NA)
    else:
        r.update(cpu=pct_h(t.cpu_pct), mem=f"{pct_h(t.mem_pct)} of {bytes_h(t.mem_total_bytes)}",
                 disk=f"{pct_h(t.disk_pct)} of {bytes_h(t.disk_total_bytes)}", swap=pct_h(t.swap_pct),
                 net=f"{rate_h(t.net_rx_bps)} / {rate_h(t.net_tx_bps)}", uptime=duration_h(t.uptime_s))
    if err is not None:
        r.update(error=f"{ago_h(err.ts, now_s)}: {err.message[:140]}", error_full=err.message[:1000],
                 error_old=now_s * 1000 - err.ts > STALE_ERROR_MS)
    return r


def row_text(r: dict) -> list[str]:
    """The texts a row shows (for NiceGUI's user simulation, which searches element contents)."""
    texts = [str(v) for k, v in r.items() if isinstance(v, str) and not k.endswith(("_tip", "_full", "_color",
                                                                                        "_state"))]
    return texts + list(r.get("tags", []))
