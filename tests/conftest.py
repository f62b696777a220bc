"""Shared fixtures. Keep this file to fixtures; put helpers in modules (e.g. ``mqtt_helpers``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from mqtt_helpers import free_port as _free_port

from broker.dynsec import DynSecClient
from broker.mosquitto import BrokerConfig, ManagedMosquitto

# --- broker -----------------------------------------------------------------------------------


@pytest.fixture
def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    return _free_port()


@pytest.fixture
def broker_factory(tmp_path: Path) -> Iterator[Callable[..., ManagedMosquitto]]:
    """Start fresh managed brokers in ``tmp_path`` (loopback, free port); all stopped at teardown.

    ``broker_factory(start=True, data_dir=None, manager_kw=None, **config_kw)`` returns a
    ManagedMosquitto; ``config_kw`` go to BrokerConfig, ``manager_kw`` to ManagedMosquitto.
    """
    made: list[ManagedMosquitto] = []

    def make(start: bool = True, data_dir: Path | None = None, manager_kw: dict | None = None,
             **config_kw: object) -> ManagedMosquitto:
        config_kw.setdefault("port", _free_port())
        cfg = BrokerConfig(data_dir=data_dir or tmp_path / f"broker{len(made)}", **config_kw)  # type: ignore[arg-type]
        broker = ManagedMosquitto(cfg, **(manager_kw or {}))
        made.append(broker)
        if start:
            broker.start()
        return broker

    yield make
    for broker in made:
        broker.stop()


@pytest.fixture(scope="module")
def managed_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagedMosquitto]:
    """One managed broker per test module (started; stopped after the module)."""
    broker = ManagedMosquitto(BrokerConfig(data_dir=tmp_path_factory.mktemp("broker"), port=_free_port()))
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(scope="module")
def dynsec(managed_broker: ManagedMosquitto) -> Iterator[DynSecClient]:
    """Admin DynSecClient on ``managed_broker``, with ``ensure_server_role()`` done."""
    with managed_broker.admin_client() as client:
        client.ensure_server_role()
        yield client
