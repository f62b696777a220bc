"""Tokens and logs pages in NiceGUI's user simulation (real SQLite with the fixtures' data)."""

from __future__ import annotations

import pytest
from nicegui import ui
from nicegui.testing.user_simulation import user_simulation
from usage_seed import seed_fixture_usage

from fleet_server.dashboard import register_pages
from fleet_server.state import FleetState
from fleet_server.store.models import AuditEvent, PriceRule


@pytest.fixture
def fleet_state(db, tmp_path) -> FleetState:
    seed_fixture_usage(tmp_path)
    state = FleetState()
    state.load_from_db()
    return state


async def test_tokens_page_totals_and_repricing(fleet_state, log_in):
    async with user_simulation() as user:
        register_pages(fleet_state)
        await log_in(user)
        await user.open("/tokens?tz=UTC&start=2026-11-15&end=2026-11-22")  # the fixtures' turns: 2026-11-21
        await user.should_see("Days in UTC")
        await user.should_see("unpriced (127,044 tokens)", retries=20)
        user.find(kind=ui.input, content="Model glob").type("stubllm/*")
        user.find(kind=ui.number, content="Input").type("3")
        user.find(kind=ui.button, content="Add rule").click()
        await user.should_see("re-priced 21 records", retries=50)
        assert PriceRule.select().count() == 1
        assert [e.action for e in AuditEvent.select().where(AuditEvent.action.startswith("price"))] == ["price.add"]
        await user.should_not_see("unpriced (127,044 tokens)")


async def test_overview_has_cost_tiles(fleet_state, log_in):
    async with user_simulation() as user:
        register_pages(fleet_state)
        await log_in(user)
        await user.open("/")
        await user.should_see("Cost today")
        await user.should_see("Cost this month")


async def test_viewer_sees_prices_but_cannot_edit(fleet_state, log_in):
    async with user_simulation() as user:
        register_pages(fleet_state)
        await log_in(user, "vera", role="viewer")
        await user.open("/tokens?tz=UTC")
        await user.should_see("Prices (USD per million tokens)")
        await user.should_not_see("Add rule")


async def test_logs_page_filters_and_groups(fleet_state, log_in):
    async with user_simulation() as user:
        register_pages(fleet_state)
        await log_in(user)
        await user.open("/logs?device=oc-latest&level=error&range=all")
        await user.should_see("HTTP 500", retries=20)
        await user.should_not_see("oc-legacy · ")
        await user.open("/logs?view=groups&level=error&range=all")
        await user.should_see("Sample")
        await user.should_see("First seen")


async def test_price_change_is_repriced_by_the_server_job_with_progress(fleet_state, log_in, db):
    """With the server's re-pricing job running, adding a rule stores it at once and the card reports
    the background pass ("re-priced N of M records"); the figures follow without a reload."""
    from fleet_server.jobs.reprice import RepriceJob
    from fleet_server.store.models import UsageRecord

    job = RepriceJob(db, fleet_state.add_usage)
    job.start()
    try:
        async with user_simulation() as user:
            register_pages(fleet_state)
            await log_in(user)
            await user.open("/tokens?tz=UTC&start=2026-11-15&end=2026-11-22")
            await user.should_see("unpriced (127,044 tokens)", retries=20)
            user.find(kind=ui.input, content="Model glob").type("stubllm/*")
            user.find(kind=ui.number, content="Input").type("3")
            user.find(kind=ui.button, content="Add rule").click()
            total = UsageRecord.select().count()
            await user.should_see(f"re-priced 21 of {total:,} records", retries=100)
            await user.should_not_see("unpriced (127,044 tokens)", retries=50)
        assert fleet_state.usage(None).unpriced_tokens < 127_044
    finally:
        job.stop()
