"""Failed-login limiter: a small in-memory fixed-window counter per username and per client IP."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class LoginRateLimiter:
    """At most ``max_failures`` failed logins per ``window_s`` per username and per client IP.

    A window starts at a key's first failure; once it holds ``max_failures`` failures, the key is
    locked until the window ends. A successful login clears its username's count (not the IP's).
    In memory only: counts reset when the server restarts. ``clock`` returns seconds (monotonic);
    tests inject a fake one. At most ``max_keys`` keys are tracked (the oldest are dropped first).
    """

    def __init__(self, max_failures: int = 5, window_s: float = 15 * 60, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 10_000) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.clock = clock
        self.max_keys = max_keys
        self._windows: dict[str, list[float]] = {}  # key -> [window start (s), failures]
        self._lock = threading.Lock()

    @staticmethod
    def _keys(username: str, ip: str) -> list[str]:
        return [f"user:{username.strip().lower()}", f"ip:{ip}"]

    def _remaining(self, key: str, now: float) -> float:
        w = self._windows.get(key)
        if w is None:
            return 0.0
        if now >= w[0] + self.window_s:
            del self._windows[key]
            return 0.0
        return w[0] + self.window_s - now if w[1] >= self.max_failures else 0.0

    def locked_for(self, username: str, ip: str) -> float:
        """Seconds until ``username`` from ``ip`` may try again; 0.0 when not locked."""
        with self._lock:
            now = self.clock()
            return max(self._remaining(k, now) for k in self._keys(username, ip))

    def record_failure(self, username: str, ip: str) -> float:
        """Count a failed login; returns :meth:`locked_for` afterwards."""
        with self._lock:
            now = self.clock()
            for key in self._keys(username, ip):
                self._remaining(key, now)  # drops an expired window
                w = self._windows.setdefault(key, [now, 0])
                w[1] += 1
            self._prune(now)
            return max(self._remaining(k, now) for k in self._keys(username, ip))

    def record_success(self, username: str) -> None:
        """Forget the failures of ``username`` (the client IP's count stays)."""
        with self._lock:
            self._windows.pop(self._keys(username, "")[0], None)

    def _prune(self, now: float) -> None:
        if len(self._windows) <= self.max_keys:
            return
        for key in [k for k, w in self._windows.items() if now >= w[0] + self.window_s]:
            del self._windows[key]
        while len(self._windows) > self.max_keys:
            del self._windows[next(iter(self._windows))]

    @staticmethod
    def message(seconds: float) -> str:
        """``"too many failed attempts; try again in N minutes"`` (N rounded up, at least 1)."""
        minutes = max(1, int(-(-seconds // 60)))
        return f"too many failed attempts; try again in {minutes} minute{'s' if minutes != 1 else ''}"
