"""The agent's persistent outbox (real SQLite files)."""

import logging
import sqlite3
import stat

import pytest

from agent_tray.outbox import Outbox, OutboxFull, OutMessage


def msgs(kind, n, size=100):
    return [OutMessage(kind, f"t/{kind}", bytes([65 + i % 26]) * size) for i in range(n)]


def test_messages_survive_reopen_in_order(tmp_path):
    ob = Outbox(tmp_path / "o.sqlite")
    ob.put(msgs("telemetry", 3) + msgs("usage", 2), positions={"usage": {"file": 12}})
    ob.close()
    ob = Outbox(tmp_path / "o.sqlite")
    pending = ob.pending()
    assert [m.kind for m in pending] == ["telemetry"] * 3 + ["usage"] * 2
    assert [m.seq for m in pending] == sorted(m.seq for m in pending)
    assert ob.position("usage") == {"file": 12}
    assert ob.position("logs") == {}


def test_ack_removes_only_acked(tmp_path):
    ob = Outbox(tmp_path / "o.sqlite")
    ob.put(msgs("logs", 4))
    first = ob.pending(limit=2)
    ob.ack(m.seq for m in first)
    rest = ob.pending()
    assert len(rest) == 2 and rest[0].seq > first[-1].seq
    assert ob.pending(after_seq=rest[0].seq) == rest[1:]
    assert ob.stats()["messages"] == 2


def test_positions_and_records_commit_together(tmp_path):
    ob = Outbox(tmp_path / "o.sqlite")

    bad = OutMessage("usage", "t", None)  # NULL payload violates NOT NULL: the whole put must roll back
    with pytest.raises(sqlite3.IntegrityError):
        ob.put(msgs("usage", 2) + [bad], positions={"usage": {"offset": 99}})
    assert ob.pending() == []
    assert ob.position("usage") == {}


def test_bound_drops_only_telemetry_and_refuses_usage_and_logs_that_do_not_fit(tmp_path, caplog):
    ob = Outbox(tmp_path / "o.sqlite", max_bytes=1024 * 1024)
    ob.put(msgs("usage", 300, 1000))
    ob.put(msgs("logs", 300, 1000))
    ob.put(msgs("telemetry", 300, 1000))
    with caplog.at_level(logging.WARNING):
        ob.put(msgs("telemetry", 300, 1000))  # 1.2 MB in all: ~150 KB over
    kinds = [m.kind for m in ob.pending(limit=10_000)]
    assert kinds.count("usage") == 300 and kinds.count("logs") == 300
    assert kinds.count("telemetry") < 600
    assert ob.stats()["bytes"] <= 1024 * 1024
    assert "outbox is full" in caplog.text and "telemetry=" in caplog.text
    with pytest.raises(OutboxFull):  # 600 KB kept + 300 KB > 3/4 of the bound: refused, nothing stored
        ob.put(msgs("logs", 300, 1000), positions={"logs": {"offset": 1}})
    assert ob.position("logs") == {}
    kinds = [m.kind for m in ob.pending(limit=10_000)]
    assert kinds.count("usage") == 300 and kinds.count("logs") == 300
    ob.put(msgs("logs", 150, 1000), positions={"logs": {"offset": 2}})  # fits, telemetry makes room
    assert ob.position("logs") == {"offset": 2}
    assert ob.stats()["bytes"] <= 1024 * 1024
    assert [m.kind for m in ob.pending(limit=10_000)].count("logs") == 450


def test_outbox_file_is_private(tmp_path):
    ob = Outbox(tmp_path / "o.sqlite")
    ob.put(msgs("usage", 2))
    for name in ("o.sqlite", "o.sqlite-wal"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name
