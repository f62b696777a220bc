"""Failed-login limits: atomic under concurrency, per (username, address) with backoff, a coarser
per-address limit, shared with the CLI through the database (real SQLite, real argon2)."""

from __future__ import annotations

import asyncio

import pytest
from auth_helpers import PASSWORD
from typer.testing import CliRunner

from fleet_server.auth import gate as login
from fleet_server.auth.accounts import create_user
from fleet_server.auth.ratelimit import LoginRateLimiter
from fleet_server.cli.main import app as cli_app
from fleet_server.store.db import open_database
from fleet_server.store.models import AuditEvent

ATTACKER = "198.51.100.7"
OWNER = "192.0.2.10"


class FakeClock:
    """Epoch seconds, advanced by hand."""

    def __init__(self) -> None:
        self.t = 1_900_000_000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def counted_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every password check the login page makes (the real argon2 check still runs)."""
    checks: list[str] = []
    real = login.check_credentials

    def counting(username: str, password: str):
        checks.append(password)
        return real(username, password)

    monkeypatch.setattr(login, "check_credentials", counting)
    return checks


async def test_simultaneous_attempts_get_no_more_password_checks_than_the_limit(db, counted_checks, monkeypatch):
    create_user("admin", PASSWORD, role="admin")
    monkeypatch.setattr(login, "_limiter", LoginRateLimiter(max_failures=5))
    attempts = [login.authenticate("admin", f"wrong password {i}", ATTACKER) for i in range(39)]
    attempts.append(login.authenticate("admin", PASSWORD, ATTACKER))  # the right one, last of 40 at once
    results = await asyncio.gather(*attempts)
    assert len(counted_checks) <= 5
    user, message = results[-1]
    assert user is None and message.startswith("too many failed attempts")
    assert sum(1 for u, _ in results if u is not None) == 0
    assert AuditEvent.select().where(AuditEvent.action == "login_failed").count() == len(counted_checks)


async def test_an_attacker_elsewhere_does_not_lock_the_owner_out(db, monkeypatch):
    create_user("admin", PASSWORD, role="admin")
    clock = FakeClock()
    monkeypatch.setattr(login, "_limiter", LoginRateLimiter(max_failures=5, clock=clock))
    for i in range(4):
        assert (await login.authenticate("admin", f"guess {i}", ATTACKER))[1] == "wrong username or password"
    _, message = await login.authenticate("admin", "guess 5", ATTACKER)
    assert message == "too many failed attempts; try again in 30 seconds"
    user, message = await login.authenticate("admin", PASSWORD, OWNER)  # the owner, at their own address
    assert user is not None and user.username == "admin", message
    _, message = await login.authenticate("admin", PASSWORD, ATTACKER)  # the attacker's pair stays locked
    assert message.startswith("too many failed attempts")


def test_backoff_doubles_per_failure_after_the_free_ones(db):
    clock = FakeClock()
    limiter = LoginRateLimiter(max_failures=5, base_delay_s=30, max_delay_s=900, clock=clock)
    for _ in range(4):
        assert limiter.reserve("admin", ATTACKER) == 0
    assert limiter.locked_for("admin", ATTACKER) == 0
    assert limiter.reserve("admin", ATTACKER) == 0  # the fifth attempt may go ahead...
    assert limiter.locked_for("admin", ATTACKER) == 30  # ...and, failed, locks the pair for 30 s
    assert limiter.reserve("admin", ATTACKER) == 30  # refused: not counted
    clock.t += 30
    assert limiter.reserve("admin", ATTACKER) == 0
    assert limiter.locked_for("admin", ATTACKER) == 60
    clock.t += 60
    limiter.reserve("admin", ATTACKER)
    assert limiter.locked_for("admin", ATTACKER) == 120
    for _ in range(10):
        clock.t += 900
        limiter.reserve("admin", ATTACKER)
    assert limiter.locked_for("admin", ATTACKER) == 900  # capped
    assert limiter.locked_for("admin", OWNER) == 0
    assert limiter.locked_for("alice", ATTACKER) == 0  # 18 failures are far below the address limit
    clock.t += 900 + limiter.forget_after_s
    assert limiter.reserve("admin", ATTACKER) == 0  # forgotten a while after the last failure
    assert limiter.locked_for("admin", ATTACKER) == 0


def test_success_clears_its_pair_only_and_does_not_count_for_the_address(db):
    clock = FakeClock()
    limiter = LoginRateLimiter(max_failures=3, address_max_failures=6, clock=clock)
    for _ in range(3):
        assert limiter.reserve("bob", OWNER) == 0
    assert limiter.locked_for("bob", OWNER) > 0  # the third attempt, in flight, counts...
    limiter.succeeded("bob", OWNER)  # ...until it turns out right
    assert limiter.locked_for("bob", OWNER) == 0
    for _ in range(3):
        assert limiter.reserve("bob", OWNER) == 0  # the pair starts again from zero
    assert limiter.locked_for("bob", OWNER) > 0
    assert limiter.locked_for("dave", OWNER) == 0  # 5 failures at the address, not 6


def test_many_users_failing_behind_one_address_lock_that_address(db):
    clock = FakeClock()
    limiter = LoginRateLimiter(max_failures=5, address_max_failures=20, base_delay_s=30, clock=clock)
    for i in range(19):
        assert limiter.reserve(f"user{i}", ATTACKER) == 0  # a spray: one guess per username
    assert limiter.locked_for("carol", ATTACKER) == 0  # a shared NAT's other users still get in
    assert limiter.reserve("user19", ATTACKER) == 0
    assert limiter.locked_for("carol", ATTACKER) == 30
    assert limiter.locked_for("carol", OWNER) == 0


def test_locks_live_in_the_database_survive_restarts_and_the_cli_clears_them(tmp_path):
    database = open_database(tmp_path)
    clock = FakeClock()
    limiter = LoginRateLimiter(max_failures=2, clock=clock)
    for _ in range(2):
        limiter.reserve("ops", ATTACKER)
    limiter.reserve("ops", OWNER)
    limiter.reserve("ops", OWNER)
    assert limiter.locked_for("ops", ATTACKER) > 0
    restarted = LoginRateLimiter(max_failures=2, clock=clock)  # a new server process on the same database
    assert restarted.locked_for("ops", ATTACKER) > 0
    database.close()

    runner = CliRunner()
    r = runner.invoke(cli_app, ["admin", "unlock", "ops", "--data-dir", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert "cleared 2 failed-login locks of ops" in r.output
    open_database(tmp_path)
    assert limiter.locked_for("ops", ATTACKER) == 0 and limiter.locked_for("ops", OWNER) == 0
    [row] = AuditEvent.select().where(AuditEvent.action == "user.unlock")
    assert row.target == "ops" and row.actor.startswith("cli:")
    r = runner.invoke(cli_app, ["admin", "unlock", "ops", "--data-dir", str(tmp_path)])
    assert r.exit_code == 0 and "ops has no failed-login lock" in r.output


def test_message_names_seconds_or_minutes():
    assert LoginRateLimiter.message(30) == "too many failed attempts; try again in 30 seconds"
    assert LoginRateLimiter.message(61) == "too many failed attempts; try again in 2 minutes"
    assert LoginRateLimiter.message(1) == "too many failed attempts; try again in 1 second"


def test_cli_clears_an_address_lock_and_names_what_it_needs(tmp_path):
    database = open_database(tmp_path)
    clock = FakeClock()
    limiter = LoginRateLimiter(address_max_failures=3, clock=clock)
    for name in ("a", "b", "c"):
        limiter.reserve(name, ATTACKER)
    assert limiter.locked_for("carol", ATTACKER) > 0
    database.close()
    runner = CliRunner()
    r = runner.invoke(cli_app, ["admin", "unlock", "--data-dir", str(tmp_path)])
    assert r.exit_code == 2 and "name a user" in r.output
    r = runner.invoke(cli_app, ["admin", "unlock", "--address", ATTACKER, "--data-dir", str(tmp_path)])
    assert r.exit_code == 0 and f"cleared 4 failed-login locks of address {ATTACKER}" in r.output, r.output
    open_database(tmp_path)
    assert limiter.locked_for("carol", ATTACKER) == 0 and limiter.locked_for("a", ATTACKER) == 0
