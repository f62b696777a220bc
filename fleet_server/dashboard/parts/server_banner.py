"""Header banner of every page: "The server has lost its broker" while ingest has no broker
connection (then no device can be heard, and no device is marked stale one by one; see
:mod:`fleet_server.jobs.stale`).

The banner reads the server's health (:meth:`fleet_server.server.FleetServer.health`, the
``ingest.connected`` detail) every :data:`CHECK_S` seconds; a dashboard without ingest shows none.
"""

from __future__ import annotations

from collections.abc import Callable

from nicegui import ui

CHECK_S = 3.0
"""How often an open page asks whether ingest has its broker connection, seconds."""
TEXT = ("The server has lost its connection to the MQTT broker: no device can report until it is back. "
        "Devices keep the status they had; none is marked stale while the broker is unreachable.")

_source: dict[str, Callable[[], bool | None]] = {}


def install(broker_connected: Callable[[], bool | None] | None) -> None:
    """Where pages learn the connection state: a callable returning True/False, or None when this
    dashboard has no ingest to ask (then no banner)."""
    if broker_connected is None:
        _source.pop("connected", None)
    else:
        _source["connected"] = broker_connected


def broker_lost() -> bool:
    """True while ingest reports no broker connection."""
    check = _source.get("connected")
    return check is not None and check() is False


def server_banner() -> None:
    """The banner, hidden while the broker is connected; re-checked on a timer."""
    banner = ui.label(TEXT).classes("w-full bg-red-700 text-white text-sm px-4 py-2").mark("broker-lost")
    banner.props('role="alert"')
    banner.set_visibility(broker_lost())

    def refresh() -> None:
        banner.set_visibility(broker_lost())

    ui.timer(CHECK_S, refresh)
