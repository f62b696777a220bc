"""The price table on the tokens page: everyone sees it, admins add, change and delete rules.

Every change re-prices history (:func:`fleet_server.store.usage.prices.reprice`) and says how many
records changed ("re-priced 1,234 records"). Audited as ``price.add``, ``price.update``, ``price.delete``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from nicegui import run, ui

from fleet_server.auth.accounts import admin_only, current_user
from fleet_server.store import audit
from fleet_server.store.sql import QueryError
from fleet_server.store.usage import prices as price_store
from fleet_server.store.usage.sums import day_start_ms

PRICE_FIELDS = (("input", "Input"), ("output", "Output"), ("cache_read", "Cache read"), ("cache_write", "Cache write"))


def _date(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%d") if ms else "always"


def render_prices(on_change: Callable[[int], None]) -> None:
    """The price rules card. ``on_change(records re-priced)`` runs after every change."""
    user = current_user()
    admin = user is not None and user.is_admin
    status = ui.label("").classes("text-sm text-green-800").props('data-testid="reprice-status"')

    with ui.card().classes("w-full p-3 gap-2"):
        ui.label("Prices (USD per million tokens)").classes("text-xs uppercase text-gray-500")
        ui.label("Cost = the matching rule (model glob against provider/model or model; the newest rule in "
                 "effect at the message's time), else the cost OpenClaw recorded, else unpriced. No default "
                 "prices ship: enter your provider's current prices.").classes("text-xs text-gray-600")

        @ui.refreshable
        def rules_table() -> None:
            rules = price_store.load_rules()
            if not rules:
                ui.label("No price rules.").classes("text-sm text-gray-500")
                return
            cols = "2fr 1fr 1fr 1fr 1fr 1fr 2fr" + (" auto" if admin else "")
            with ui.element("div").classes("w-full overflow-x-auto"), ui.grid(columns=cols).classes(
                    "w-full min-w-[40rem] gap-x-3 gap-y-1 items-center"):
                for h in ("Model", "Input", "Output", "Cache read", "Cache write", "From", "Note") + (
                        ("",) if admin else ()):
                    ui.label(h).classes("text-xs uppercase text-gray-500")
                for r in rules:
                    ui.label(r.pattern).classes("font-mono text-sm")
                    for k, _ in PRICE_FIELDS:
                        ui.label(f"{getattr(r, f'{k}_usd_per_mtok'):g}").classes("text-sm")
                    ui.label(_date(r.effective_ms)).classes("text-sm")
                    ui.label(r.note).classes("text-sm text-gray-600")
                    if admin:
                        ui.button("Delete", on_click=lambda _e, rid=r.id, p=r.pattern: delete(rid, p)).props(
                            "flat dense color=negative")

        rules_table()
        if not admin:
            return
        with ui.row().classes("items-end gap-2 w-full"):
            pattern = ui.input("Model glob", placeholder="anthropic/claude-sonnet-*").props(
                'data-testid="price-pattern"').classes("w-56")
            inputs = {k: ui.number(label, value=0, min=0, format="%g").classes("w-28").props(
                f'data-testid="price-{k}"') for k, label in PRICE_FIELDS}
            since = ui.input("Effective from (YYYY-MM-DD, empty: always)").classes("w-64")
            note = ui.input("Source / note").classes("w-48")
            add = ui.button("Add rule").props('data-testid="price-add"')

    def _done(action: str, target: str, changed: int) -> None:
        who = current_user()
        audit.record(who.username if who else "?", action, target=target, detail=f"re-priced {changed} records")
        status.text = f"re-priced {changed:,} records"
        ui.notify(status.text, type="positive")
        rules_table.refresh()
        on_change(changed)

    @admin_only
    async def do_add() -> None:
        try:
            eff = 0
            if (since.value or "").strip():  # a bad date: "effective date …: use YYYY-MM-DD"
                try:
                    eff = day_start_ms(since.value.strip(), ZoneInfo("UTC"))
                except QueryError as exc:
                    raise price_store.PriceError(f"effective date: {exc}") from None
            rule = price_store.RuleInput(pattern.value or "", *(float(inputs[k].value or 0) for k, _ in PRICE_FIELDS),
                                         effective_ms=eff, note=note.value or "")
            add.disable()
            status.text = "re-pricing…"
            _, changed = await run.io_bound(price_store.add_rule, rule)
        except ValueError as exc:
            ui.notify(str(exc), type="negative")
            return
        finally:
            add.enable()
        pattern.value = ""
        _done("price.add", rule.pattern, changed)

    @admin_only
    async def delete(rule_id: int, rule_pattern: str) -> None:
        status.text = "re-pricing…"
        changed = await run.io_bound(price_store.delete_rule, rule_id)
        _done("price.delete", rule_pattern, changed)

    add.on_click(do_add)
