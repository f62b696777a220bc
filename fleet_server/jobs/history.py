"""History upkeep: incremental rollups every minute, retention every hour (after a rollup)."""

from __future__ import annotations

from peewee import Database

from fleet_server.state import now_ms
from fleet_server.store.history.retention import RetentionPolicy, apply_retention
from fleet_server.store.history.rollups import roll_up_all

ROLLUP_S = 60.0
"""Seconds between rollup runs (the 24 h+ charts lag raw data by at most this)."""
RETENTION_S = 3600.0
"""Seconds between retention runs."""


def enforce_retention(database: Database, policy: RetentionPolicy) -> dict[str, int]:
    """Roll up first (retention deletes only rolled-up raw samples), then delete what is too old.

    Returns rows deleted per kind (see :func:`fleet_server.store.history.retention.apply_retention`).
    """
    roll_up_all(database)
    return apply_retention(policy, now_ms(), database)
