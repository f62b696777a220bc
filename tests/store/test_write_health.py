"""What /healthz learns from failing writes (a database on another disk, e.g. PostgreSQL, that is
full): reported after a few seconds of failures with no commit, cleared by a commit, forgotten when
nobody tries any more (a fake monotonic clock)."""

from __future__ import annotations

from peewee import OperationalError

from fleet_server.store import write_health


def test_failing_writes_are_reported_until_a_commit():
    write_health.succeeded()
    full = OperationalError("database or disk is full")
    write_health.failed(full, clock=100.0)
    assert write_health.problem(clock=101.0) is None, "a moment of failure is not yet a problem"
    write_health.failed(full, clock=104.0)
    assert write_health.problem(clock=104.0) == "the database refuses writes for 4 s: database or disk is full"
    write_health.succeeded()
    assert write_health.problem(clock=105.0) is None
    write_health.failed(full, clock=200.0)
    write_health.failed(full, clock=205.0)
    assert write_health.problem(clock=205.0) is not None
    assert write_health.problem(clock=205.0 + write_health.FORGET_S) is None, "no new failure: forgotten"
