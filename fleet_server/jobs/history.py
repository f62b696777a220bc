"""History upkeep: incremental rollups every minute, retention every hour."""

from __future__ import annotations

from peewee import Database

from fleet_server.store.history.retention import RetentionPolicy, apply_retention
from shared.clock import now_ms

ROLLUP_S = 60.0
"""Seconds between rollup runs (the 24 h+ charts lag raw data by at most this)."""
RETENTION_S = 3600.0
"""Seconds between retention runs."""


def enforce_retention(database: Database, policy: RetentionPolicy) -> dict[str, int]:
    """Delete what is too old. No rollup pass of its own: raw samples the rollup job has not reached
    yet are kept (see :func:`fleet_server.store.history.retention.apply_retention`), and go at the
    next run after it has.

    Returns rows deleted per kind.
    """
    return apply_retention(policy, now_ms(), database)
