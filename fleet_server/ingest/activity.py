"""Ingest of OpenClaw sessions, runs and tool calls (the ``usage`` batch's ``sessions``, ``runs`` and
``tool_calls`` lists, sent by newer agents in messages of their own), and of version changes (``meta``).

Registered in :data:`fleet_server.ingest.writers.WRITERS` after the usage and meta writes of the same
batch; runs inside the writer's transaction like them (:mod:`fleet_server.store.sessions.ingest`).
"""

from __future__ import annotations

from fleet_server.ingest.messages import CacheChange, Received
from fleet_server.state import FleetState
from fleet_server.store.sessions.ingest import record_versions, store_activity


def write_activity(items: list[Received], state: FleetState) -> CacheChange:
    """Store the sessions, runs and tool calls of a batch's usage messages (an old agent sends none)."""
    lists: dict[str, list[dict]] = {"sessions": [], "runs": [], "tool_calls": []}
    for i in items:
        for name, rows in lists.items():
            rows += [{"device": i.device_id, **r.model_dump()} for r in getattr(i.payload, name, ())]
    if any(lists.values()):
        store_activity(lists["sessions"], lists["runs"], lists["tool_calls"])
    return CacheChange()


def write_versions(items: list[Received], state: FleetState) -> CacheChange:
    """Record each device whose meta names another OpenClaw or agent version than the one cached (the
    first meta of a device records its first versions). Uses the cache as it was before this batch."""
    current: dict[tuple[str, str], str | None] = {}
    seen = []
    for i in items:
        view = state.get(i.device_id)
        for kind, version in (("openclaw", i.payload.openclaw_version), ("agent", i.payload.agent_version)):
            key = (i.device_id, kind)
            if key not in current:
                meta = view.meta if view is not None else None
                current[key] = None if meta is None else (meta.openclaw_version if kind == "openclaw"
                                                          else meta.agent_version)
            if version and version != current[key]:
                seen.append((i.device_id, i.received_ms, kind, current[key], version))
                current[key] = version
    record_versions(seen)
    return CacheChange()
