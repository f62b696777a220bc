"""Logs: filters and cursor paging over 100k seeded rows, fingerprint groups, and the line that says
what failed (never OpenClaw's trailing "Help: openclaw --help") as the latest error (real SQLite)."""

from __future__ import annotations

import pytest
from usage_seed import seed_bulk_logs, seed_fixture_usage

from fleet_server.state import FleetState
from fleet_server.store import logs as log_store
from fleet_server.store.logs import LogFilter

N = 100_000
START = 1_795_000_000_000


@pytest.fixture(scope="module")
def bulk(tmp_path_factory):
    from fleet_server.store.db import open_database

    database = open_database(tmp_path_factory.mktemp("bulk"))
    seed_bulk_logs(N, devices=20, start_ms=START)
    return database


def walk(f: LogFilter, limit: int = 500) -> list[dict]:
    rows, cursor = [], None
    while True:
        page = log_store.logs_page(f, cursor, limit)
        rows += page.rows
        if page.next_cursor is None:
            return rows
        cursor = page.next_cursor


def test_paging_visits_every_matching_row_once_newest_first(bulk):
    f = LogFilter(device="bulk-007")
    rows = walk(f)
    assert len(rows) == N // 20 == len({r["id"] for r in rows})
    assert all(r["device"] == "bulk-007" for r in rows)
    assert [r["ts"] for r in rows] == sorted((r["ts"] for r in rows), reverse=True)
    first = log_store.logs_page(LogFilter(), None, 3)
    assert [r["ts"] for r in first.rows] == [START + (N - i) * 1000 for i in (1, 2, 3)]


def test_level_time_and_text_filters_combine(bulk):
    since, until = START + 10_000_000, START + 20_000_000
    rows = walk(LogFilter(min_level="error", since_ms=since, until_ms=until))
    assert rows and all(r["level"] == "error" and since <= r["ts"] < until for r in rows)
    assert len(rows) == sum(1 for r in walk(LogFilter(since_ms=since, until_ms=until)) if r["level"] == "error")
    text = walk(LogFilter(text="ECONNREFUSED", since_ms=since, until_ms=until))
    assert text and all("ECONNREFUSED" in r["message"] for r in text)
    assert walk(LogFilter(text="econnrefused", since_ms=since, until_ms=until)) == text  # case-insensitive
    assert walk(LogFilter(min_level="fatal")) == []
    with pytest.raises(log_store.LogQueryError):
        log_store.logs_page(LogFilter(min_level="loud"))
    with pytest.raises(log_store.LogQueryError, match="cursor"):
        log_store.logs_page(LogFilter(), "not-a-cursor")


def test_fingerprint_groups_count_devices_and_click_through(bulk):
    groups = log_store.fingerprint_groups(LogFilter())
    assert {g["fingerprint"] for g in groups} == {"fp0", "fp1", "fp2", "fp3"}
    assert sum(g["count"] for g in groups) == N
    assert all(g["devices"] == 20 and g["first_ms"] < g["last_ms"] for g in groups)
    g = groups[0]
    assert g["last_ms"] == START + (N - 1) * 1000  # newest group first
    occurrences = walk(LogFilter(fingerprint=g["fingerprint"]))
    assert len(occurrences) == g["count"] and occurrences[0]["message"] == g["sample"]


def test_failed_turn_shows_its_reason_line(db, tmp_path):
    seed_fixture_usage(tmp_path)
    state = FleetState()
    state.load_from_db()
    err = state.get("oc-latest").latest_error
    assert err is not None and not log_store.is_hint(err.message)
    assert "Help: openclaw --help" not in err.message
    hints = walk(LogFilter(device="oc-latest", text="Help: openclaw --help"))
    assert hints and all(log_store.is_hint(r["message"]) for r in hints)  # kept, just never the headline
    reasons = [r["message"] for r in walk(LogFilter(device="oc-latest", min_level="error", hide_hints=True))]
    assert any("HTTP 500" in m for m in reasons)
    assert any("rate limit" in m.lower() for m in reasons)
    turns = walk(LogFilter(device="oc-legacy", min_level="error"))
    failed = [r for r in turns if r["source"] == "transcript"]
    assert len(failed) == 6 and all(r["agent_id"] == "research" for r in failed)
    assert any("ECONNREFUSED" in r["message"] or "Connection error" in r["message"] for r in failed), \
        [r["message"][:80] for r in failed]
