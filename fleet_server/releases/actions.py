"""Agent-update actions the dashboard offers (the CLI has ``device update``): what the server offers, and
sending one device the update."""

from __future__ import annotations

from collections.abc import Callable

from fleet_server.releases import updates
from fleet_server.releases.catalog import Catalog


class ReleaseActions:
    """``offered()``: the agent version the server offers (None: no packages); ``update(...)``: send it.

    Args:
        catalog: the server's packages.
        publish: ``(topic, payload) -> bool`` through the server's broker session.
    """

    def __init__(self, catalog: Catalog, publish: Callable[[str, bytes], bool]) -> None:
        self.catalog = catalog
        self._publish = publish

    def offered(self) -> str | None:
        """The newest agent version in the package folders."""
        return self.catalog.manifest().offered_version

    def update(self, actor: str, device_id: str, tags: str) -> str:
        """Ask ``device_id`` to update to the offered version (rollback time from its policy); returns it.

        Raises:
            UpdateError: no packages, or the broker did not take the command.
        """
        version = self.offered()
        if not version:
            raise updates.UpdateError("this server offers no agent packages yet (clawfleet-server release add FILE)")
        policy = updates.effective_policy(device_id, tags)
        updates.request_update(self._publish, device_id, version, actor, policy.rollback_after_s)
        return version
