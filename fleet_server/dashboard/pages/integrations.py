"""MQTT integrations page (``/settings/integrations``, admins): read-only broker accounts for Home
Assistant, Node-RED and scripts — add (password shown once), list, revoke. Topics: docs/mqtt.md."""

from __future__ import annotations

from collections.abc import Callable

from nicegui import run, ui

from broker.acl import INTEGRATION_CHANNELS
from broker.dynsec import DynSecClient
from fleet_server.auth.accounts import admin_only, current_user, require_admin
from fleet_server.dashboard.parts.format import ago_h
from fleet_server.integrations import accounts


def render_integrations(dynsec: Callable[[], DynSecClient | None], broker_url: Callable[[], str]) -> None:
    """Build the page. ``dynsec``: the server's broker admin client (None: read-only listing)."""
    if not require_admin():
        return
    with ui.column().classes("w-full p-4 gap-3 max-w-4xl"):
        ui.label("MQTT integrations").classes("text-2xl font-semibold")
        ui.markdown("Read-only broker accounts for other tools. They may subscribe to "
                    "`clawfleet/v1/+/<channel>` for the channels you pick and can publish nothing. "
                    f"Broker: `{broker_url()}`. Topic and payload reference: `docs/mqtt.md`.").classes("text-sm")
        with ui.row().classes("items-end gap-2"):
            name = ui.input("Name (e.g. home-assistant)").classes("w-56")
            chans = ui.select([c.value for c in INTEGRATION_CHANNELS], multiple=True, label="Channels",
                              value=["status", "meta", "telemetry"]).classes("w-72")
            add = ui.button("Add")
        shown = ui.column().classes("w-full")

        @ui.refreshable
        def table() -> None:
            rows = accounts.list_integrations()
            if not rows:
                ui.label("No integration accounts.").classes("text-gray-500")
                return
            with ui.grid(columns="1fr 2fr 2fr 1fr auto").classes("w-full items-center gap-x-4 gap-y-1"):
                for h in ("Name", "Username", "Channels", "Created", ""):
                    ui.label(h).classes("text-xs uppercase text-gray-500")
                for r in rows:
                    ui.label(r.name)
                    ui.label(r.username).classes("font-mono text-sm")
                    ui.label(r.channels.replace(",", ", ")).classes("text-sm")
                    ui.label(f"{ago_h(r.created_ms)} by {r.created_by}").classes("text-sm")
                    ui.button("Revoke", on_click=lambda _e, n=r.name: revoke(n)).props("flat dense color=negative")

        def _client() -> DynSecClient | None:
            client = dynsec()
            if client is None:
                ui.notify("the broker connection is not available in this process", type="negative")
            return client

        @admin_only
        async def do_add() -> None:
            client, user = _client(), current_user()
            if client is None:
                return
            try:
                chosen = accounts.parse_channels(",".join(chans.value or []))
                row, password = await run.io_bound(accounts.add_integration, client, (name.value or "").strip(),
                                                   chosen, user.username if user else "?")
            except Exception as exc:  # a bad name, or the broker refused: say so, change nothing
                ui.notify(str(exc), type="negative")
                return
            name.value = ""
            shown.clear()
            with shown, ui.card().classes("w-full bg-amber-50"):
                ui.label(f"Integration {row.name!r} — copy the password now, it is not shown again:").classes("text-sm")
                ui.label(f"username: {row.username}").classes("font-mono text-sm")
                ui.label(f"password: {password}").classes("font-mono text-sm break-all")
            table.refresh()

        @admin_only
        async def revoke(account: str) -> None:
            client, user = _client(), current_user()
            if client is None:
                return
            await run.io_bound(accounts.revoke_integration, client, account, user.username if user else "?")
            ui.notify(f"integration {account!r} revoked", type="positive")
            table.refresh()

        add.on_click(do_add)
        table()
