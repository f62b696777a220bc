"""Shared fixtures. Keep this file to fixtures; put helpers in modules (e.g. ``mqtt_helpers``)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from auth_helpers import PASSWORD, submit_login
from mqtt_helpers import free_port as _free_port
from nicegui.testing import User as SimUser

from broker.dynsec import DynSecClient
from broker.mosquitto import BrokerConfig, ManagedMosquitto
from fleet_server.auth.accounts import create_user
from fleet_server.server import FleetServer, ServerOptions
from fleet_server.store.models import User


@pytest.fixture(scope="session", autouse=True)
def agent_log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Agents started by tests log here, not into the user's log dir (``$CLAWFLEET_AGENT_LOG_DIR``)."""
    path = tmp_path_factory.mktemp("agent-logs")
    os.environ["CLAWFLEET_AGENT_LOG_DIR"] = str(path)
    return path


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


# --- dashboard login ----------------------------------------------------------------------------


@pytest.fixture
def login_form():
    """``await login_form(user, username, password, path="/login")``: submit the login page."""
    return submit_login


@pytest.fixture
def log_in():
    """``await log_in(user, username="admin", role="admin")``: create the account if missing (password
    :data:`auth_helpers.PASSWORD`), log in through ``/login`` and wait until the header shows the user.
    Needs the database open and ``register_pages`` called inside ``user_simulation()``."""

    async def _log_in(user: SimUser, username: str = "admin", role: str = "admin", password: str = PASSWORD) -> None:
        if User.get_or_none(User.username == username) is None:
            create_user(username, password, role=role)
        await submit_login(user, username, password)
        await user.should_see(f"{username} ({role})", retries=50)

    return _log_in


# --- a whole fleet server ---------------------------------------------------------------------


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[FleetServer]:
    """A started FleetServer without a local agent; stopped after the test."""
    server = FleetServer(ServerOptions(data_dir=tmp_path / "server", mqtt_port=_free_port(), local_agent=False))
    server.start()
    assert server.ingest is not None
    server.ingest.connected.wait(5)
    yield server
    server.stop()
