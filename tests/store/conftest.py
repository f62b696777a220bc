"""Store tests run twice: on a SQLite file and on a real PostgreSQL (see ``pg_helpers``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pg_helpers import PgServer, start_pg

from fleet_server.store.db import open_database


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One throw-away PostgreSQL cluster for the whole test session."""
    server = start_pg()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """URL of a new empty database: a SQLite file, or a fresh database on the test PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'clawfleet.sqlite'}"
    return request.getfixturevalue("pg_server").create_database()


@pytest.fixture
def store(db_url: str, tmp_path: Path) -> Iterator[object]:
    """The models bound to a fresh database (schema created), closed after the test."""
    database = open_database(tmp_path, db_url)
    yield database
    database.close()
