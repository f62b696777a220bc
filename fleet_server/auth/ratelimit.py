"""Failed-login limiter: per (username, address) with exponential backoff, plus a coarser limit per
address. State lives in the database (:mod:`fleet_server.auth.lockout`), so it is shared with the
CLI (``clawfleet-server admin unlock``) and survives restarts.

Why two keys: a lock on the username alone lets anyone lock the owner out (five wrong passwords
from anywhere), and a lock on the address alone blocks everyone behind a shared NAT. A pair lock
slows one guesser at one address and leaves the owner at their own address alone; the address
limit (default 100 failures) stops a password spray over many usernames from one address while
a NAT's legitimate users, who fail now and then, stay far below it. A guesser spread over many
addresses is held back by argon2 (tens of ms and 64 MiB per check, at most four at once) and the
12-character password minimum, not by a lock that would also hit the owner.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from fleet_server.auth.lockout import ADDRESS_WIDE, MAX_ADDRESS, MAX_USERNAME
from fleet_server.store.locks import write_transaction
from fleet_server.store.models import LoginThrottle, db

PRUNE_EVERY = 256
"""Reservations between two deletions of forgotten rows."""


class LoginRateLimiter:
    """Atomic failed-login limiter (thread-safe; one instance per server process).

    Use: :meth:`reserve` before checking a password — it refuses (returns the seconds to wait)
    or counts the attempt as a failure at once, so concurrent attempts cannot all slip past the
    limit while their password checks run; then :meth:`succeeded` when the password was right.

    After ``max_failures`` failures of a (username, address) pair, the pair waits
    ``base_delay_s`` seconds, doubled with every further failure up to ``max_delay_s``. The
    address-wide count works the same with ``address_max_failures``. A row is forgotten
    ``forget_after_s`` seconds after its last failure. ``clock`` returns epoch seconds (the state
    is persisted); tests inject a fake one.
    """

    def __init__(self, max_failures: int = 5, *, base_delay_s: float = 30.0, max_delay_s: float = 15 * 60,
                 address_max_failures: int = 100, forget_after_s: float = 3600.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.max_failures = max_failures
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.address_max_failures = address_max_failures
        self.forget_after_s = max(forget_after_s, max_delay_s)
        self.clock = clock
        self._lock = threading.Lock()
        self._reservations = 0

    @staticmethod
    def _keys(username: str, ip: str) -> list[tuple[str, str]]:
        name = (username or "").strip().lower()[:MAX_USERNAME] or "?"
        address = (ip or "?")[:MAX_ADDRESS]
        return [(name, address), (ADDRESS_WIDE, address)]

    def _threshold(self, username: str) -> int:
        return self.address_max_failures if username == ADDRESS_WIDE else self.max_failures

    def _delay_ms(self, failures: int, threshold: int) -> int:
        if failures < threshold:
            return 0
        return int(min(self.max_delay_s, self.base_delay_s * 2 ** min(failures - threshold, 32)) * 1000)

    def _rows(self, username: str, ip: str, now_ms: int) -> list[tuple[str, str, LoginThrottle | None]]:
        rows = []
        forget_ms = int(self.forget_after_s * 1000)
        for name, address in self._keys(username, ip):
            row = LoginThrottle.get_or_none((LoginThrottle.username == name) & (LoginThrottle.address == address))
            if row is not None and now_ms - row.last_failure_ms >= forget_ms and row.locked_until_ms <= now_ms:
                row.delete_instance()
                row = None
            rows.append((name, address, row))
        return rows

    @staticmethod
    def _wait_s(rows: list[tuple[str, str, LoginThrottle | None]], now_ms: int) -> float:
        return max([(r.locked_until_ms - now_ms) / 1000 for _, _, r in rows if r is not None] + [0.0])

    def locked_for(self, username: str, ip: str) -> float:
        """Seconds until ``username`` from ``ip`` may try again; 0.0 when not locked. Changes nothing."""
        now_ms = int(self.clock() * 1000)
        with self._lock:
            rows = [(n, a, LoginThrottle.get_or_none((LoginThrottle.username == n) & (LoginThrottle.address == a)))
                    for n, a in self._keys(username, ip)]
            return self._wait_s(rows, now_ms)

    def reserve(self, username: str, ip: str) -> float:
        """Let one attempt of ``username`` from ``ip`` go ahead, or refuse it.

        Returns 0.0 when the attempt may check its password — it is then already counted as a
        failure (call :meth:`succeeded` if the password is right) — else the seconds to wait
        (nothing is counted). Atomic: check and count happen under one lock and in one transaction.
        """
        now_ms = int(self.clock() * 1000)
        with self._lock, write_transaction(db.obj):  # IMMEDIATE: waits for a writer, no deadlock
            rows = self._rows(username, ip, now_ms)
            wait_s = self._wait_s(rows, now_ms)
            if wait_s > 0:
                return wait_s
            for name, address, row in rows:
                new = row is None
                if row is None:
                    row = LoginThrottle(username=name, address=address, failures=0, last_failure_ms=now_ms)
                row.failures += 1
                row.last_failure_ms = now_ms
                delay = self._delay_ms(row.failures, self._threshold(name))
                row.locked_until_ms = now_ms + delay if delay else 0
                row.save(force_insert=new)  # a composite key: save() alone would UPDATE nothing
            self._reservations += 1
            if self._reservations % PRUNE_EVERY == 0:
                self._prune(now_ms)
            return 0.0

    def succeeded(self, username: str, ip: str) -> None:
        """The reserved attempt had the right password: forget the pair's failures and take the
        attempt back out of the address count."""
        now_ms = int(self.clock() * 1000)
        name, address = self._keys(username, ip)[0]
        with self._lock, write_transaction(db.obj):  # IMMEDIATE: waits for a writer, no deadlock
            LoginThrottle.delete().where((LoginThrottle.username == name)
                                         & (LoginThrottle.address == address)).execute()
            row = LoginThrottle.get_or_none((LoginThrottle.username == ADDRESS_WIDE)
                                            & (LoginThrottle.address == address))
            if row is not None:
                row.failures = max(0, row.failures - 1)
                delay = self._delay_ms(row.failures, self.address_max_failures)
                row.locked_until_ms = max(now_ms, row.last_failure_ms + delay) if delay else 0
                row.save()

    def _prune(self, now_ms: int) -> None:
        LoginThrottle.delete().where((LoginThrottle.last_failure_ms < now_ms - int(self.forget_after_s * 1000))
                                     & (LoginThrottle.locked_until_ms <= now_ms)).execute()

    @staticmethod
    def message(seconds: float) -> str:
        """``"too many failed attempts; try again in N seconds"`` under a minute, else ``"… N minutes"``
        (N rounded up, at least 1)."""
        if seconds < 60:
            n, unit = max(1, math.ceil(seconds)), "second"
        else:
            n, unit = math.ceil(seconds / 60), "minute"
        return f"too many failed attempts; try again in {n} {unit}{'s' if n != 1 else ''}"
