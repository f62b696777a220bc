"""Revocations made outside the server process (the CLI), applied on the broker by the running server.

``clawfleet-server device revoke`` stores the revocation with its audit row first and then asks the
broker; when the broker does not answer (frozen, restarting) the key would keep working. The server's
registry sync sees the revoked device within seconds and hands it to :class:`PendingRevocations`,
which disables the client on the broker, retrying every round until the broker confirms.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from broker.dynsec import DynSecClient, DynSecConnectionError, DynSecError
from fleet_server.devices.registry import disable_on_broker
from fleet_server.state import FleetState

log = logging.getLogger("clawfleet.devices")


class PendingRevocations:
    """Revoked devices still to disable on the broker (called from the registry sync thread).

    Args:
        dynsec: returns the broker admin client (None: none in this process, nothing is done).
        state: the latest-state cache (whether a device is still revoked).
    """

    def __init__(self, dynsec: Callable[[], DynSecClient | None], state: FleetState) -> None:
        self._dynsec, self._state = dynsec, state
        self._pending: set[str] = set()

    @property
    def pending(self) -> set[str]:
        """Device ids not yet confirmed disabled by the broker."""
        return set(self._pending)

    def note(self, changed: Iterable[str]) -> None:
        """Take the devices whose registry fields changed; those now revoked are to be disabled."""
        for device_id in changed:
            view = self._state.get(device_id)
            if view is not None and view.revoked_ms is not None:
                self._pending.add(device_id)

    def apply(self) -> None:
        """Disable the pending devices on the broker (one command each); stop at the first broker
        that does not answer and try again next time."""
        ds = self._dynsec()
        if ds is None:
            return
        for device_id in sorted(self._pending):
            view = self._state.get(device_id)
            if view is None or view.revoked_ms is None:  # deleted or re-enabled since
                self._pending.discard(device_id)
                continue
            try:
                disable_on_broker(ds, device_id)
            except (DynSecConnectionError, DynSecError) as exc:
                log.warning("revoked device %s is not disabled on the broker yet (%s); retrying", device_id, exc)
                return
            except ValueError:  # an id no device may have: the start-up reconciliation handles it
                pass
            self._pending.discard(device_id)
