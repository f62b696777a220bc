"""Server test fixtures: a real SQLite database (login fixtures are in tests/conftest.py)."""

from __future__ import annotations

import pytest
from usage_seed import seed_fixture_usage

from fleet_server.state import FleetState
from fleet_server.store.db import open_database


@pytest.fixture
def db(tmp_path):
    """A fresh SQLite database in ``tmp_path`` bound to the models."""
    return open_database(tmp_path)


@pytest.fixture
def fleet_state(db, tmp_path) -> FleetState:
    """The fleet cache over ``db`` seeded with the repo's real OpenClaw fixtures' usage and logs
    (``usage_seed.seed_fixture_usage``)."""
    seed_fixture_usage(tmp_path)
    state = FleetState()
    state.load_from_db()
    return state
