"""Tokens and logs pages in NiceGUI's user simulation (real SQLite with the fixtures' data)."""

from __future__ import annotations

import asyncio

from nicegui import ui
from nicegui.testing.user_simulation import user_simulation

from fleet_server.dashboard import register_pages
from fleet_server.state import FleetState
from fleet_server.store.models import AuditEvent, PriceRule


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


async def test_same_named_agents_of_two_devices_stay_apart_and_the_page_filters_by_device(db, log_in):
    from fleet_server.store.models import Device
    from fleet_server.store.usage.ledger import insert_usage

    for d, name, tags in (("alpha", "Alpha box", "prod"), ("beta", "Beta box", "lab")):
        Device.create(id=d, name=name, tags=tags, key_hash="x", key_hint="abcd", created_ms=1)
    ts = 1_795_234_253_457  # 2026-11-21
    with db.atomic():
        insert_usage([{"id": f"{d}-{i}", "device": d, "ts": ts + i, "agent_id": "main", "session_id": "s",
                       "provider": "p", "model": "m", "input_tokens": n, "output_tokens": 0, "cache_read_tokens": 0,
                       "cache_write_tokens": 0, "total_tokens": n, "cost_usd": None, "source": "transcript"}
                      for d, n in (("alpha", 1000), ("beta", 234)) for i in range(3)])
    state = FleetState()
    state.load_from_db()
    async with user_simulation() as user:
        register_pages(state)
        await log_in(user)
        await user.open("/tokens?tz=UTC&start=2026-11-21&end=2026-11-21")
        await user.should_see("3,702 tokens")
        user.find(marker="group-toggle").elements.pop().value = "agent"

        def agent_rows() -> list:
            return sorted((r["key"], r["total_tokens"]) for t in user.find(marker="tokens-table").elements
                          for r in t.rows)

        for _ in range(50):
            if agent_rows() == [("main · Alpha box", "3.0k"), ("main · Beta box", "702")]:
                break
            await asyncio.sleep(0.1)
        assert agent_rows() == [("main · Alpha box", "3.0k"), ("main · Beta box", "702")]  # never "main" = 3.7k
        await user.open("/tokens?tz=UTC&start=2026-11-21&end=2026-11-21&device=beta")  # the device filter
        await user.should_see("702 tokens")
        await user.open("/tokens?tz=UTC&start=2026-11-21&end=2026-11-21&tag=prod")  # the tag filter
        await user.should_see("3,000 tokens")
        await user.open("/tokens?tz=UTC&start=2026-11-21&end=2026-11-21&agent=beta/main")  # one device's agent
        await user.should_see("702 tokens")


async def test_a_price_with_a_bad_date_says_which_field_and_the_format(fleet_state, log_in):
    async with user_simulation() as user:
        register_pages(fleet_state)
        await log_in(user)
        await user.open("/tokens?tz=UTC")
        user.find(kind=ui.input, content="Model glob").type("stubllm/*")
        user.find(kind=ui.input, content="Effective from").type("2026-13-45")
        user.find(kind=ui.button, content="Add rule").click()
        for _ in range(30):
            if user.notify.messages:
                break
            await asyncio.sleep(0.1)
        assert any("effective date" in m and "YYYY-MM-DD" in m and "does not match" not in m
                   for m in user.notify.messages), user.notify.messages
        assert PriceRule.select().count() == 0


async def test_price_change_is_repriced_by_the_server_job_with_progress(fleet_state, log_in, db):
    """With the server's re-pricing job running, adding a rule stores it at once and the card reports
    the background pass ("re-priced N of M records"); the figures follow without a reload."""
    from fleet_server.jobs.reprice import RepriceJob
    from fleet_server.store.models import UsageRecord

    job = RepriceJob(db, lambda deltas: fleet_state.note_usage(list(deltas)))
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
    finally:
        job.stop()
