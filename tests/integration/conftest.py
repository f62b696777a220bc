"""A real fleet server (managed Mosquitto on a free loopback port, SQLite in tmp) per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from mqtt_helpers import free_port

from fleet_server.server import FleetServer, ServerOptions


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[FleetServer]:
    """A started FleetServer without a local agent; stopped after the test."""
    server = FleetServer(ServerOptions(data_dir=tmp_path / "server", mqtt_port=free_port(), local_agent=False))
    server.start()
    assert server.ingest is not None
    server.ingest.connected.wait(5)
    yield server
    server.stop()
