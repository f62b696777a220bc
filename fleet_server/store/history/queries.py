"""Read queries of device history the REST API shares with the pages (samples, status events).

Timestamps are epoch ms UTC.
"""

from __future__ import annotations

from fleet_server.store.history.samples import samples_for_window
from fleet_server.store.models import StatusEvent
from fleet_server.store.sql import QueryError

WINDOWS_MS = {"1h": 3_600_000, "6h": 6 * 3_600_000, "24h": 86_400_000, "7d": 7 * 86_400_000,
              "30d": 30 * 86_400_000}
"""Sample windows the API accepts (name -> milliseconds back from now)."""

def samples_window(device_id: str, window: str, now_ms: int) -> dict:
    """A device's samples over a window back from ``now_ms``, from the tier the charts read
    (:func:`fleet_server.store.history.samples.samples_for_window`: raw up to 6 h, 5-minute buckets for
    24 h, 1-hour buckets for 7 d and 30 d).

    Returns:
        ``{"device_id", "window", "tier": "raw"|"5m"|"1h", "since_ms", "samples": [...]}``, oldest
        first; each sample ``{"ts", "n", "<metric>_avg", "<metric>_max"}`` for the metrics of
        :data:`fleet_server.store.models.ROLLUP_METRICS` (percent 0–100, bytes per second, load);
        ``ts`` is the sample time or the bucket start (epoch ms), ``n`` the samples in it.

    Raises:
        QueryError: unknown window.
    """
    if window not in WINDOWS_MS:
        raise QueryError(f"window must be one of {', '.join(WINDOWS_MS)}")
    since = now_ms - WINDOWS_MS[window]
    tier, rows = samples_for_window(device_id, since, now_ms + 1)
    samples = [{"ts": r.ts_ms, "n": r.n, **{f"{m}_avg": v for m, v in r.avg.items()},
                **{f"{m}_max": v for m, v in r.max.items()}} for r in rows]
    return {"device_id": device_id, "window": window, "tier": tier, "since_ms": since, "samples": samples}


def status_events(device_id: str, limit: int = 200, before_ms: int | None = None) -> list[dict]:
    """A device's availability changes, newest first: ``[{"ts", "state", "reason"}]`` (ts epoch ms)."""
    q = StatusEvent.select(StatusEvent.ts, StatusEvent.state, StatusEvent.reason).where(StatusEvent.device == device_id)
    if before_ms is not None:
        q = q.where(StatusEvent.ts < before_ms)
    return list(q.order_by(StatusEvent.ts.desc(), StatusEvent.id.desc()).limit(limit).dicts())
