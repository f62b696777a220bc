"""Live pages: redraw refreshable parts when the fleet cache changes."""

from __future__ import annotations

from collections.abc import Callable

from nicegui import ui

from fleet_server.state import FleetState


def redraw_on_change(state: FleetState, *parts: Callable[[], object], check_s: float = 1.0,
                     full_every: int = 10) -> ui.timer:
    """Call each part's ``refresh()`` when ``state.version`` changed (checked every ``check_s``
    seconds), and every ``full_every`` checks anyway so relative times ("12s ago") stay true."""
    seen = {"version": state.version, "tick": 0}

    def check() -> None:
        seen["tick"] += 1
        if state.version != seen["version"] or seen["tick"] % full_every == 0:
            seen["version"] = state.version
            for part in parts:
                part.refresh()  # type: ignore[attr-defined]

    return ui.timer(check_s, check)
