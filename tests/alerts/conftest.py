"""Alert tests: a fresh database bound to the models (SQLite; ``any_db`` also PostgreSQL), a fleet
cache, a settable clock."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alert_helpers import Clock
from pg_helpers import PgServer, start_pg

from fleet_server.state import FleetState
from fleet_server.store.db import open_database

T0 = 1_774_000_000_000
"""2026-03-20 09:46:40 UTC: where the tests' clocks start."""


@pytest.fixture
def db(tmp_path) -> Iterator[object]:
    """A fresh SQLite database in ``tmp_path`` bound to the models."""
    database = open_database(tmp_path)
    yield database
    database.close()


@pytest.fixture(scope="session")
def alerts_pg() -> Iterator[PgServer]:
    """One throw-away PostgreSQL cluster for the alert tests that run on both databases."""
    server = start_pg()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db(request: pytest.FixtureRequest, tmp_path) -> Iterator[object]:
    """A fresh database bound to the models: a SQLite file, then a database on a real PostgreSQL."""
    url = None if request.param == "sqlite" else request.getfixturevalue("alerts_pg").create_database()
    database = open_database(tmp_path, url)
    yield database
    database.close()


@pytest.fixture
def clock() -> Clock:
    """A clock at :data:`T0` that only moves when told."""
    return Clock(T0)


@pytest.fixture
def state() -> FleetState:
    """An empty fleet cache."""
    return FleetState()
