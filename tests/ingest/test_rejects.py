"""Reject log lines: one per device and reason per interval, with the count left out."""

from __future__ import annotations

import logging

from fleet_server.ingest.messages import RejectNote
from fleet_server.ingest.rejects import RejectLog


def test_one_line_per_device_and_reason_per_minute_with_the_suppressed_count(caplog):
    now = [1000.0]
    log = RejectLog(logging.getLogger("test.rejects"), interval_s=60, clock=lambda: now[0])
    with caplog.at_level("WARNING", logger="test.rejects"):
        written = [log(RejectNote("a", "not_json", "bad")) for _ in range(50)]
        written.append(log(RejectNote("a", "invalid", "cpu_pct")))
        written.append(log(RejectNote("b", "not_json", "bad")))
        now[0] += 61
        written.append(log(RejectNote("a", "not_json", "still bad")))
    assert written.count(True) == 4
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "rejected a message from a: not_json: bad"
    assert lines[-1] == "rejected a message from a: not_json: still bad (49 more like it in the last 61 s)"


def test_the_memory_it_keeps_is_bounded():
    now = [0.0]
    log = RejectLog(logging.getLogger("test.rejects"), interval_s=60, clock=lambda: now[0])
    for i in range(RejectLog.MAX_KEYS + 10):
        log(RejectNote(f"d{i}", "not_json", ""))
    assert len(log._seen) <= RejectLog.MAX_KEYS
