"""Live pages: redraw refreshable parts when the fleet cache changes."""

from __future__ import annotations

from collections.abc import Callable

from nicegui import ui

from fleet_server.state import FleetState


def redraw_on_change(state: FleetState, *parts: Callable[[], object], check_s: float = 1.0,
                     full_every: int = 10, device_id: str | None = None) -> ui.timer:
    """Call each part's ``refresh()`` when the cache changed (checked every ``check_s`` seconds), and
    every ``full_every`` checks anyway so relative times ("12s ago") stay true.

    With ``device_id`` only a change of that device counts (or a removal/reload of the cache, see
    :meth:`FleetState.changes_since`), so a device page does not redraw for the rest of the fleet."""
    seen = {"version": state.version, "tick": 0}

    def check() -> None:
        seen["tick"] += 1
        version, changed = state.changes_since(seen["version"])
        seen["version"] = version
        hit = bool(changed) if device_id is None or changed is None else device_id in changed
        if changed is None or hit or seen["tick"] % full_every == 0:
            for part in parts:
                part.refresh()  # type: ignore[attr-defined]

    return ui.timer(check_s, check)
