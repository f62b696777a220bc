"""The device page's agent card: the agent's version, its last self-update (state, version, when, what
happened) and, for admins, "Update agent to <offered>" when the server offers a newer version."""

from __future__ import annotations

from nicegui import run, ui

from fleet_server.auth.accounts import admin_only, current_user
from fleet_server.dashboard.parts.format import ago_h
from fleet_server.releases.actions import ReleaseActions
from fleet_server.releases.updates import UpdateError
from fleet_server.state import DeviceView
from shared.packages import version_key

UPDATE_WORDS = {"downloading": "downloading", "installing": "installing", "installed": "installed, waiting for it "
                "to report", "confirmed": "done", "failed": "failed", "refused": "refused",
                "rolled-back": "rolled back"}
"""Plain words for :data:`shared.payloads.UPDATE_STATES`."""


def update_line(d: DeviceView) -> str:
    """``"0.1.2: done (3 min ago)"``, or ``"none yet"``."""
    u = d.meta.update if d.meta else None
    if u is None:
        return "none yet"
    return f"{u.version or '?'}: {UPDATE_WORDS.get(u.state, u.state)} ({ago_h(u.ts)})"


def render_agent_update(d: DeviceView, releases: ReleaseActions | None) -> None:
    """The card (see the module docstring)."""
    m = d.meta
    with ui.card().classes("p-3 min-w-0 w-full sm:w-auto sm:min-w-72 gap-1").mark("agent-card"):
        ui.label("Agent").classes("text-xs uppercase text-gray-500")
        ui.label(f"version {m.agent_version if m else '–'}").classes("text-sm").mark("agent-version")
        line = ui.label(f"last update: {update_line(d)}").classes("text-sm").mark("agent-update")
        if m is not None and m.update is not None and m.update.detail:
            line.tooltip(m.update.detail)
            ui.label(m.update.detail).classes("text-xs text-gray-600 max-w-96")
        offered = releases.offered() if releases else None
        user = current_user()
        if (offered and m is not None and user is not None and user.is_admin
                and version_key(offered) > version_key(m.agent_version)):
            @admin_only
            async def send() -> None:
                actor = current_user().username  # type: ignore[union-attr] - admin_only checked it
                try:
                    await run.io_bound(releases.update, actor, d.device_id, d.tags)
                except UpdateError as exc:
                    ui.notify(str(exc), type="negative")
                    return
                ui.notify(f"{d.device_id} asked to update to {offered}")

            ui.button(f"Update agent to {offered}", icon="system_update", on_click=send).props(
                "dense unelevated").mark("update-agent")
