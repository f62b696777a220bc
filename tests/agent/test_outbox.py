"""The agent's persistent outbox (real SQLite files)."""

import logging
import sqlite3

import pytest

from agent_tray.outbox import Outbox, OutMessage


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


def test_bound_drops_telemetry_first_then_logs_usage_last(tmp_path, caplog):
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
    ob.put(msgs("logs", 600, 1000))  # more than all telemetry left: logs go next, usage stays
    kinds = [m.kind for m in ob.pending(limit=10_000)]
    assert kinds.count("telemetry") == 0
    assert kinds.count("usage") == 300
