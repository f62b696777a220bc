"""The viewer's time zone: the one every time and calendar day on a page is shown in.

The zone is the logged-in user's saved one (``User.time_zone``, set in the header's user menu),
else the browser's (``Intl.DateTimeFormat``, asked once per page), else UTC. A page renders with
:func:`initial_zone` at once and, when the user saved none, redraws once :func:`viewer_zone` has
the browser's answer; :func:`zone_note` is the line that names the zone on the page.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from nicegui import ui

from fleet_server.auth.accounts import current_user, user_settings
from fleet_server.store.sql import QueryError
from fleet_server.store.usage.sums import zone

log = logging.getLogger("clawfleet.dashboard")
UTC = ZoneInfo("UTC")


@dataclass(frozen=True)
class Viewer:
    """The zone a page shows times in and where it came from: ``"saved"`` (the user's setting),
    ``"url"`` (the page's ``?tz=``), ``"browser"`` or ``"default"`` (UTC: no setting and no answer from
    the browser yet)."""

    tz: ZoneInfo
    source: str = "default"

    @property
    def final(self) -> bool:
        """True when the browser need not be asked (a saved zone, or one the address names)."""
        return self.source in ("saved", "url")


def saved_zone() -> ZoneInfo | None:
    """The logged-in user's saved zone, or None (none saved, not logged in, or no longer known)."""
    user = current_user()
    name = user_settings(user.username).time_zone if user else None
    try:
        return zone(name) if name else None
    except QueryError:
        log.warning("ignoring the saved time zone %r of %s: not a known zone", name, user.username if user else "?")
        return None


def initial_zone() -> Viewer:
    """The zone to render with before the browser answers: the saved one, else UTC."""
    tz = saved_zone()
    return Viewer(tz, "saved") if tz else Viewer(UTC)


async def browser_zone(timeout_s: float = 3.0) -> ZoneInfo | None:
    """The IANA zone the browser reports (e.g. ``Asia/Kolkata``); None when it does not answer or
    names a zone this server does not know."""
    try:
        await ui.context.client.connected(timeout=timeout_s)
        name = await ui.run_javascript("Intl.DateTimeFormat().resolvedOptions().timeZone", timeout=timeout_s)
        return zone(name) if isinstance(name, str) and name else None
    except Exception as exc:  # no browser (e.g. a simulated client), it went away, or an unknown zone
        log.debug("browser time zone unknown (%s)", exc)
        return None


async def viewer_zone(current: Viewer | None = None) -> Viewer:
    """The viewer's zone: ``current`` when it is final (saved), else the browser's, else UTC."""
    current = current or initial_zone()
    if current.final:
        return current
    tz = await browser_zone()
    return Viewer(tz, "browser") if tz else Viewer(UTC)


def zone_note(viewer: Viewer) -> str:
    """``"Times in Asia/Kolkata (your browser's zone)."`` — said once per page."""
    why = {"saved": "your saved zone", "url": "set in the address", "browser": "your browser's zone"}.get(
        viewer.source, "no zone saved")
    return f"Times in {viewer.tz.key} ({why})."


def follow_browser_zone(viewer: dict[str, Viewer], redraw: Callable[[], object], note: ui.label | None = None,
                        note_text: Callable[[Viewer], str] = zone_note) -> None:
    """Unless ``viewer["zone"]`` is final, ask the browser for its zone once (from a timer), put the
    answer into ``viewer["zone"]`` and ``note``, and call ``redraw`` only when the zone differs from
    the one the page was drawn in (so a page in the browser's zone is drawn once)."""
    if viewer["zone"].final:
        return

    async def learn() -> None:
        found = await viewer_zone(viewer["zone"])
        changed = found.tz.key != viewer["zone"].tz.key
        viewer["zone"] = found
        if note is not None:
            note.text = note_text(found)
        if changed:
            redraw()

    ui.timer(0.05, learn, once=True)
