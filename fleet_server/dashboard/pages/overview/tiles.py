"""The overview's fleet tiles: tokens today / yesterday / all time and cost today / this month, in
the viewer's zone, from :func:`fleet_server.dashboard.parts.usage_view.fleet_figures` (the same
sums every other page shows, re-read only when stored usage changed)."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from nicegui import ui

from fleet_server.dashboard.parts.format import cost_h, token_breakdown, tokens_h
from fleet_server.dashboard.parts.usage_view import fleet_figures
from fleet_server.state import FleetState


def render_tiles(state: FleetState, tz: ZoneInfo) -> None:
    """The token and cost tiles into the current page (calendar days in ``tz``)."""
    f = fleet_figures(state, tz)
    with ui.row().classes("w-full gap-4"):
        for title, sums in (("Tokens today", f.today), ("Yesterday", f.yesterday), ("All time", f.all_time)):
            with ui.card().classes("p-3 min-w-0 grow sm:grow-0 sm:min-w-64"):
                ui.label(title).classes("text-xs uppercase text-gray-500")
                ui.label(tokens_h(sums.total_tokens)).classes("text-xl font-semibold").tooltip(
                    f"{sums.total_tokens:,} tokens").props(f'data-testid="tokens-{title.split()[-1].lower()}"')
                ui.label(token_breakdown(sums)).classes("text-xs text-gray-600")
        for title, cost in (("Cost today", f.today), ("Cost this month", f.month)):
            with ui.card().classes("p-3 min-w-0 grow sm:grow-0 sm:min-w-48"):
                ui.label(title).classes("text-xs uppercase text-gray-500")
                ui.link(cost_h(cost), "/tokens").classes("text-xl font-semibold no-underline cost-figure").tooltip(
                    f"{cost_h(cost, exact=True)} for {cost.priced_messages:,} priced messages").props(
                    f'data-testid="{title.lower().replace(" ", "-")}"')
