"""NiceGUI dashboard: one module per page; :func:`register_pages` adds them all."""

from __future__ import annotations

from nicegui import ui

from fleet_server.dashboard.overview import render_overview
from fleet_server.state import FleetState


def _frame(title: str) -> None:
    ui.page_title(f"{title} · ClawFleet")
    with ui.header().classes("items-center bg-slate-800"):
        ui.link("ClawFleet", "/").classes("text-white text-lg font-bold no-underline")


def register_pages(state: FleetState) -> None:
    """Register the dashboard's pages on the NiceGUI app. Call before ``ui.run``."""

    @ui.page("/")
    def overview() -> None:
        _frame("Fleet")
        render_overview(state)
