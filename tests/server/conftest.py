"""Server test fixtures: a real SQLite database (login fixtures are in tests/conftest.py)."""

from __future__ import annotations

import pytest

from fleet_server.store.db import open_database


@pytest.fixture
def db(tmp_path):
    """A fresh SQLite database in ``tmp_path`` bound to the models."""
    return open_database(tmp_path)
