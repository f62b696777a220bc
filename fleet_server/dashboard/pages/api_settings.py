"""API tokens page (``/settings/api``, admins): create (shown once), list, revoke; links to the docs."""

from __future__ import annotations

from nicegui import ui

from fleet_server.auth import api_tokens
from fleet_server.auth.accounts import admin_only, current_user, require_admin
from fleet_server.dashboard.parts.format import ago_h
from fleet_server.store import audit


def render_api_settings() -> None:
    """Build the page into the current page (an "admins only" notice for viewers)."""
    if not require_admin():
        return
    with ui.column().classes("w-full p-4 gap-3 max-w-4xl"):
        ui.label("API tokens").classes("text-2xl font-semibold")
        ui.markdown("Read-only tokens for scripts, Grafana and Prometheus: send `Authorization: Bearer <token>` "
                    "to `/api/v1/…` or `/metrics`. The token is shown once; only its hash is stored. "
                    "[API reference](/api/docs) · [OpenAPI](/api/openapi.json)").classes("text-sm")
        with ui.row().classes("items-end gap-2"):
            name = ui.input("Name (e.g. grafana)").props('data-testid="token-name"').classes("w-64")
            create = ui.button("Create token")
        shown = ui.column().classes("w-full")

        @ui.refreshable
        def table() -> None:
            rows = api_tokens.list_tokens()
            if not rows:
                ui.label("No API tokens yet.").classes("text-gray-500")
                return
            with ui.grid(columns="2fr 1fr 1fr 1fr 1fr auto").classes("w-full items-center gap-x-4 gap-y-1"):
                for col in ("Name", "Token", "Created", "Last used", "State", ""):
                    ui.label(col).classes("text-xs uppercase text-gray-500")
                for t in rows:
                    ui.label(t.name)
                    ui.label(f"…{t.hint}").classes("font-mono text-sm")
                    ui.label(f"{ago_h(t.created_ms)} by {t.created_by}").classes("text-sm")
                    ui.label(ago_h(t.last_used_ms)).classes("text-sm")
                    ui.label("revoked" if t.revoked_ms else "active").classes(
                        "text-sm " + ("text-red-700" if t.revoked_ms else "text-green-700"))
                    if t.revoked_ms:
                        ui.label("")
                    else:
                        ui.button("Revoke", on_click=lambda _e, tid=t.id, n=t.name: revoke(tid, n)).props(
                            "flat dense color=negative")

        @admin_only
        def do_create() -> None:
            user = current_user()
            try:
                row, token = api_tokens.create_token(name.value or "", user.username if user else "?")
            except api_tokens.TokenError as exc:
                ui.notify(str(exc), type="negative")
                return
            audit.record(user.username if user else "?", "api_token.create", target=row.name, detail=f"…{row.hint}")
            name.value = ""
            shown.clear()
            with shown, ui.card().classes("w-full bg-amber-50"):
                ui.label(f"Token {row.name!r} — copy it now, it is not shown again:").classes("text-sm")
                ui.label(token).classes("font-mono text-sm break-all").props('data-testid="new-token"')
                ui.button("Copy", on_click=lambda: ui.clipboard.write(token)).props("flat dense")
            table.refresh()

        @admin_only
        def revoke(token_id: int, token_name: str) -> None:
            user = current_user()
            api_tokens.revoke_token(token_id)
            audit.record(user.username if user else "?", "api_token.revoke", target=token_name)
            ui.notify(f"token {token_name!r} revoked", type="positive")
            table.refresh()

        create.on_click(do_create)
        table()
