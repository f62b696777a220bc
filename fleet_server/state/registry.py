"""The registry poll: devices added, renamed, revoked or deleted by the CLI (another process) reach
the cache within seconds. One SELECT of the devices table's registry and status columns, read as
plain tuples (10,000 devices: a few milliseconds, no model object per row)."""

from __future__ import annotations

from fleet_server.state.cache import FleetState
from fleet_server.store.models import Device

REGISTRY_COLUMNS = (Device.id, Device.name, Device.tags, Device.key_hint, Device.created_ms, Device.revoked_ms,
                    Device.status, Device.status_reason, Device.status_ms, Device.last_seen_ms)
"""What :func:`sync_registry` reads, in the order of its tuples."""


def sync_registry(state: FleetState) -> list[str]:
    """Apply the devices table to ``state`` (:meth:`FleetState.apply_registry`). Returns the sorted
    ids whose registry fields changed, or that were added or removed (ingest must forget those,
    see ``Ingest.forget_device``)."""
    with state.registry_lock:
        cached = state.device_ids()  # before the SELECT: a device cached later is in the table
        query = Device.select(*REGISTRY_COLUMNS)
        rows = Device._meta.database.execute_sql(*query.sql()).fetchall()
        return state.apply_registry(rows, cached)
