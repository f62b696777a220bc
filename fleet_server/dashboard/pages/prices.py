"""The price table on the tokens page: everyone sees it, admins add and delete rules.

A change is stored at once (audited as ``price.add``, ``price.delete``); history is then re-priced
in the background in short paced transactions (:mod:`fleet_server.jobs.reprice`), so ingest and
every other writer go on meanwhile. The card shows the pass's progress ("re-pricing: 45,000 of
120,000 records, 37 %") to everyone and, when it is done, how many records changed; the page's
figures follow chunk by chunk.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from nicegui import run, ui

from fleet_server.auth.accounts import admin_only, current_user
from fleet_server.jobs import reprice as reprice_job
from fleet_server.store import audit
from fleet_server.store.sql import QueryError
from fleet_server.store.usage import prices as price_store
from fleet_server.store.usage.reprice import Deltas, RepriceProgress, reprice
from fleet_server.store.usage.sums import day_start_ms

PRICE_FIELDS = (("input", "Input"), ("output", "Output"), ("cache_read", "Cache read"), ("cache_write", "Cache write"))
PROGRESS_S = 1.0
"""How often the card reads the re-pricing progress, seconds."""


def _date(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%d") if ms else "always"


def progress_text(p: RepriceProgress) -> str:
    """``"re-pricing: 45,000 of 120,000 records (37 %)"``, ``"re-priced 1,234 of 120,000 records"`` or ``""``."""
    if p.state == "running":
        return f"re-pricing: {p.checked:,} of {p.total:,} records ({p.percent:.0f} %)"
    if p.state == "done":
        return f"re-priced {p.changed:,} of {p.checked:,} records"
    if p.state == "failed":
        return f"re-pricing failed ({p.error}); it is tried again"
    return ""


def render_prices(on_done: Callable[[], None], on_chunk: Callable[[Deltas], None] | None = None) -> None:
    """The price rules card. ``on_done()`` runs when a re-pricing pass the page saw has finished
    (redraw the figures); ``on_chunk`` gets each chunk's cost deltas when the page itself has to
    re-price (no server job, e.g. a dashboard without ingest)."""
    user = current_user()
    admin = user is not None and user.is_admin
    status = ui.label("").classes("text-sm text-green-800").props('data-testid="reprice-status"')
    seen = {"running": False}

    def show_progress() -> None:
        job = reprice_job.current()
        if job is None:
            return
        p = job.progress
        if p.state == "running":
            seen["running"] = True
            status.text = progress_text(p)
        elif seen["running"]:  # a pass this page watched has ended
            seen["running"] = False
            status.text = progress_text(p)
            on_done()

    ui.timer(PROGRESS_S, show_progress)

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

    async def _changed(action: str, target: str) -> None:
        who = current_user()
        audit.record(who.username if who else "?", action, target=target, detail="history re-priced in the background")
        rules_table.refresh()
        job = reprice_job.current()
        if job is not None:
            job.request()
            seen["running"] = True
            status.text = "re-pricing…"
            return
        status.text = "re-pricing…"  # no server job: re-price here (paced as well)
        changed = await run.io_bound(reprice, on_chunk=on_chunk)
        status.text = f"re-priced {changed:,} records"
        on_done()

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
            await run.io_bound(price_store.save_rule, rule)
        except ValueError as exc:
            ui.notify(str(exc), type="negative")
            return
        finally:
            add.enable()
        pattern.value = ""
        await _changed("price.add", rule.pattern)

    @admin_only
    async def delete(rule_id: int, rule_pattern: str) -> None:
        await run.io_bound(price_store.remove_rule, rule_id)
        await _changed("price.delete", rule_pattern)

    add.on_click(do_add)
