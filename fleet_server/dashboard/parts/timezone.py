"""The viewer's time zone, asked from the browser (``Intl.DateTimeFormat``), for pages that show
calendar days or wall-clock times."""

from __future__ import annotations

import logging
from zoneinfo import ZoneInfo

from nicegui import ui

from fleet_server.store.usage.days import zone

log = logging.getLogger("clawfleet.dashboard")


async def browser_zone(timeout_s: float = 3.0) -> ZoneInfo:
    """The IANA zone the browser reports (e.g. ``Asia/Kolkata``); UTC when it does not answer."""
    try:
        await ui.context.client.connected(timeout=timeout_s)
        name = await ui.run_javascript("Intl.DateTimeFormat().resolvedOptions().timeZone", timeout=timeout_s)
    except Exception as exc:  # no browser (e.g. a simulated client) or it went away
        log.debug("browser time zone unknown (%s); using UTC", exc)
        return ZoneInfo("UTC")
    return zone(name if isinstance(name, str) else None)
