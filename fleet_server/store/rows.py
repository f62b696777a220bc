"""Payloads <-> table rows: a telemetry sample as a ``Sample`` row and back, meta as the devices
table's ``meta_json``. Units as in :class:`shared.schemas.Telemetry`."""

from __future__ import annotations

import json

from fleet_server.store.models import Sample
from shared import schemas


def sample_to_telemetry(s: Sample) -> schemas.Telemetry:
    """Rebuild a :class:`shared.schemas.Telemetry` from a stored row.

    Raises:
        ValueError: a stored value outside the schema's bounds (stored before it had them).
    """
    load = (s.load1, s.load5, s.load15) if s.load1 is not None else None
    return schemas.Telemetry(
        device_id=s.device, ts=s.ts, cpu_pct=s.cpu_pct, mem_used_bytes=s.mem_used_bytes,
        mem_total_bytes=s.mem_total_bytes, mem_pct=s.mem_pct, disk_used_bytes=s.disk_used_bytes,
        disk_total_bytes=s.disk_total_bytes, disk_pct=s.disk_pct, swap_pct=s.swap_pct, net_rx_bps=s.net_rx_bps,
        net_tx_bps=s.net_tx_bps, load_avg=load, uptime_s=s.uptime_s,
        openclaw=schemas.OpenClawState(installed=True, up=s.openclaw_up) if s.openclaw_up is not None else None,
    )


SAMPLE_COLUMNS = ("device", "ts", "cpu_pct", "mem_used_bytes", "mem_total_bytes", "mem_pct", "disk_used_bytes",
                  "disk_total_bytes", "disk_pct", "swap_pct", "net_rx_bps", "net_tx_bps", "load1", "load5", "load15",
                  "uptime_s", "openclaw_up")
"""The :class:`Sample` columns, in the order of :func:`telemetry_values`."""


def telemetry_values(t: schemas.Telemetry) -> tuple:
    """The :class:`Sample` row of a telemetry payload as a tuple in :data:`SAMPLE_COLUMNS` order
    (for a prepared bulk INSERT)."""
    load = t.load_avg or (None, None, None)
    return (t.device_id, t.ts, t.cpu_pct, t.mem_used_bytes, t.mem_total_bytes, t.mem_pct, t.disk_used_bytes,
            t.disk_total_bytes, t.disk_pct, t.swap_pct, t.net_rx_bps, t.net_tx_bps, load[0], load[1], load[2],
            t.uptime_s, t.openclaw.up if t.openclaw else None)


def telemetry_row(t: schemas.Telemetry) -> dict:
    """The :class:`Sample` row of a telemetry payload as a dict (:func:`telemetry_values` by column)."""
    return dict(zip(SAMPLE_COLUMNS, telemetry_values(t), strict=True))


def meta_json(meta: schemas.Meta) -> str:
    """Serialise meta for the devices table."""
    return json.dumps(meta.model_dump(mode="json"), separators=(",", ":"))
