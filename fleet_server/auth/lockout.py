"""Failed-login state in the database: one row per (username, address) and one per address.

The table is shared by every process on the database: the running server counts failures in
it, ``clawfleet-server admin unlock NAME`` clears them, and a restart keeps them (table
:class:`fleet_server.store.models.LoginThrottle`).

Rows: ``username`` is the normalized attempted name (it need not exist), or ``""`` for the
address-wide row; ``address`` is the client IP. Times are epoch milliseconds UTC.
"""

from __future__ import annotations

from fleet_server.store.models import LoginThrottle

ADDRESS_WIDE = ""
"""``LoginThrottle.username`` of the row that counts every failure from one address."""
MAX_USERNAME = LoginThrottle.username.max_length
MAX_ADDRESS = LoginThrottle.address.max_length




def clear(username: str | None = None, address: str | None = None) -> int:
    """Delete failure rows: all of ``username`` (every address), and/or the address-wide row and
    every pair of ``address``. Returns how many rows were deleted (locked or not).

    Raises:
        ValueError: neither ``username`` nor ``address`` given.
    """
    if not username and not address:
        raise ValueError("name a username or an address to unlock")
    q = LoginThrottle.delete()
    if username and address:
        q = q.where((LoginThrottle.username == username) & (LoginThrottle.address == address))
    elif username:
        q = q.where(LoginThrottle.username == username)
    else:
        q = q.where(LoginThrottle.address == address)
    return q.execute()


def locked(now_ms: int, username: str | None = None) -> list[LoginThrottle]:
    """Rows locked at ``now_ms`` (of ``username`` only, when given), soonest unlock first."""
    q = LoginThrottle.select().where(LoginThrottle.locked_until_ms > now_ms)
    if username is not None:
        q = q.where(LoginThrottle.username == username)
    return list(q.order_by(LoginThrottle.locked_until_ms))
