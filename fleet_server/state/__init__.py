"""The server's in-memory latest state of every device, kept by ingest and read by the dashboard,
the API and the jobs (the overview never scans history).

- :mod:`.cache`: :class:`FleetState` (the cache and its change counter), :class:`DeviceView`.
- :mod:`.loader`: fills the cache from the database once at start.
- :mod:`.registry`: the registry poll (devices changed by the CLI in another process).

Token sums are not cached: :mod:`fleet_server.store.usage.sums` answers them.
"""

from fleet_server.state.cache import DeviceView, FleetState, LatestError

__all__ = ["DeviceView", "FleetState", "LatestError"]
