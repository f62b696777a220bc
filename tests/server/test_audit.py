"""Audit log: audit.record, queries, and the /audit page (real SQLite, NiceGUI user simulation)."""

from __future__ import annotations

import logging

from nicegui import ui
from nicegui.testing.user_simulation import user_simulation

from fleet_server.dashboard import register_pages
from fleet_server.dashboard.pages.audit import PER_PAGE
from fleet_server.state import FleetState
from fleet_server.store import audit
from fleet_server.store.models import AuditEvent


def test_record_cleans_and_truncates(db):
    audit.record("alice", "device.add", target="box-1", detail="tags: a,b")
    audit.record("mallory\nadmin", "login_failed", target="t" * 300, detail="line1\r\nline2\x1b[31m" + "x" * 600)
    a, b = AuditEvent.select().order_by(AuditEvent.id)
    assert (a.actor, a.action, a.target, a.detail) == ("alice", "device.add", "box-1", "tags: a,b")
    assert a.ts_ms > 1_600_000_000_000  # epoch ms
    assert b.actor == "mallory admin" and "\n" not in b.detail and "\x1b" not in b.detail
    assert len(b.target) == 200 and b.target.endswith("…") and len(b.detail) == 500
    assert audit.cli_actor().startswith("cli:")


def test_record_never_raises(db, caplog):
    AuditEvent.drop_table()
    with caplog.at_level(logging.ERROR, logger="clawfleet.audit"):
        audit.record("alice", "device.revoke", target="box-1")
    assert "could not write audit event" in caplog.text


def test_query_is_newest_first_paginated_and_filtered(db):
    for i in range(7):
        AuditEvent.create(ts_ms=1_000 + i, actor="a", action="login" if i % 2 else "logout", target=str(i))
    page1 = audit.query(page=1, per_page=3)
    assert page1.total == 7 and [e.target for e in page1.rows] == ["6", "5", "4"]
    assert [e.target for e in audit.query(page=3, per_page=3).rows] == ["0"]
    logins = audit.query(action="login")
    assert logins.total == 3 and [e.target for e in logins.rows] == ["5", "3", "1"]
    assert audit.actions() == ["login", "logout"]


async def test_audit_page_shows_actions_newest_first_with_filter_and_pages(db, log_in):
    for i in range(PER_PAGE + 5):
        AuditEvent.create(ts_ms=1_700_000_000_000 + i, actor="cli:root", action="device.add", target=f"dev-{i}")
    state = FleetState()
    state.load_from_db()
    async with user_simulation() as user:
        register_pages(state)
        await log_in(user)  # audited: "login" is now the newest event
        await user.open("/audit")
        await user.should_see("Audit log")
        table = user.find(ui.table).elements.pop()
        assert len(table.rows) == PER_PAGE
        assert table.rows[0]["action"] == "login" and table.rows[0]["actor"] == "admin"
        assert table.rows[1]["target"] == f"dev-{PER_PAGE + 4}"
        assert table.rows[1]["time"] == "2023-11-14 22:13:20"
        pager = user.find(ui.pagination).elements.pop()
        assert pager.max == 2
        pager.value = 2
        assert [r["target"] for r in table.rows] == [f"dev-{i}" for i in range(5, -1, -1)]
        select = user.find(ui.select).elements.pop()
        assert "login" in select.options and "device.add" in select.options
        select.value = "login"
        assert [r["action"] for r in table.rows] == ["login"] and pager.max == 1 and pager.value == 1
