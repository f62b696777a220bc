"""Rejected messages: counted per device and reason in :class:`RejectCount` (inside the batch's
transaction), and logged at most once per device and reason per minute."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from peewee import Case

from fleet_server.ingest.messages import RejectNote
from fleet_server.store.models import RejectCount

MAX_COUNT = 2**31 - 1
"""Reject counters stop here (the column is a 32-bit integer on PostgreSQL)."""


def store_rejects(notes: list[RejectNote], now_ms: int) -> None:
    """Add ``notes`` to the reject counters (one upsert per device and reason). Call inside the
    batch's transaction, so a batch that is rolled back and retried does not count twice."""
    grouped: dict[tuple[str, str], tuple[int, str]] = {}
    for n in notes:
        count, _ = grouped.get((n.device_id, n.reason), (0, ""))
        grouped[(n.device_id, n.reason)] = (count + 1, n.error[:500])
    for (device_id, reason), (count, error) in grouped.items():
        RejectCount.insert(device=device_id, reason=reason[:32], count=count, last_ms=now_ms,
                           last_error=error).on_conflict(
            conflict_target=[RejectCount.device, RejectCount.reason],
            update={RejectCount.count: Case(None, [(RejectCount.count < MAX_COUNT - count, RejectCount.count + count)],
                                            MAX_COUNT),
                    RejectCount.last_ms: now_ms, RejectCount.last_error: error},
        ).execute()


class RejectLog:
    """Logs a rejected message at WARNING at most once per (device, reason) per ``interval_s``;
    the next line says how many were left out in between. (Every reject is counted regardless.)

    Args:
        logger: where to log.
        interval_s: seconds between two lines for the same device and reason.
        clock: monotonic clock in seconds (tests pass a fake one).
    """

    MAX_KEYS = 10_000

    def __init__(self, logger: logging.Logger, interval_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._log, self._interval, self._clock = logger, interval_s, clock
        self._seen: dict[tuple[str, str], list[float]] = {}  # key -> [last logged at, suppressed since]

    def __call__(self, note: RejectNote) -> bool:
        """Log ``note`` unless it is rate-limited; returns True when a line was written."""
        now, key = self._clock(), (note.device_id, note.reason)
        entry = self._seen.get(key)
        if entry is not None and now - entry[0] < self._interval:
            entry[1] += 1
            return False
        suppressed = int(entry[1]) if entry else 0
        if entry is None and len(self._seen) >= self.MAX_KEYS:
            self._prune(now)
        self._seen[key] = [now, 0]
        more = f" ({suppressed} more like it in the last {now - entry[0]:.0f} s)" if entry and suppressed else ""
        self._log.warning("rejected a message from %s: %s: %s%s", note.device_id or "(unknown)", note.reason,
                          note.error[:300], more)
        return True

    def _prune(self, now: float) -> None:
        for key in [k for k, v in self._seen.items() if now - v[0] >= self._interval]:
            del self._seen[key]
        if len(self._seen) >= self.MAX_KEYS:  # all recent: forget the oldest half
            for key in sorted(self._seen, key=lambda k: self._seen[k][0])[: self.MAX_KEYS // 2]:
                del self._seen[key]
