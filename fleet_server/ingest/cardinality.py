"""Bounds on the distinct names a device may introduce per period (models, agents, sessions, …).

A device chooses the model, agent and session names in its records. Unbounded, one device can
create thousands of them (20,000 records with 10,000 model names took ``/metrics`` from 937 to
80,537 series and froze the tokens chart). :class:`NameBudget` admits at most ``limit`` distinct
names per device per period (a UTC day of the server's clock); a record with a further name is
kept under :data:`OTHER` — its tokens and cost still count — and counted per device as the reject
reason ``<kind>_over_limit`` (shown on the device page, in ``/metrics`` and the API).

Reuse (sessions, runs, tool names, …)::

    budget = NameBudget("session", limit=1000)
    name = budget.admit(device_id, session_id, now_ms)   # session_id, or OTHER when over the limit

The names admitted in the current period are kept in memory (a set of 64-bit hashes per device
and kind, cleared when the period changes); a server restart starts the count again.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass

from fleet_server.ingest.messages import CacheChange

OTHER = "(other)"
"""The name records are kept under once their device is over a :class:`NameBudget`."""
DAY_MS = 86_400_000


def _key(name: str) -> int:
    return int.from_bytes(hashlib.blake2b(name.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big")


class NameBudget:
    """At most ``limit`` distinct names of one ``kind`` per device per ``period_ms`` (UTC-aligned).

    Thread-safe. ``admit`` is O(1); memory is at most ``limit`` hashes per device that sent names
    this period.

    Args:
        kind: what the names are (``"model"``, ``"agent"``, ``"session"``…), for the reject reason.
        limit: distinct names a device may introduce per period (>= 1).
        period_ms: length of a period, ms (default one UTC day).
    """

    def __init__(self, kind: str, limit: int, period_ms: int = DAY_MS) -> None:
        if limit < 1:
            raise ValueError(f"a {kind} budget needs a limit of at least 1")
        self.kind, self.limit, self.period_ms = kind, limit, period_ms
        self.reason = f"{kind}_over_limit"
        """The reject reason a name over the limit is counted under."""
        self._lock = threading.Lock()
        self._period = -1
        self._seen: dict[str, set[int]] = {}

    def admit(self, device_id: str, name: str, now_ms: int) -> str:
        """``name`` when the device may use it this period (already used, or under the limit),
        else :data:`OTHER`. :data:`OTHER` itself is always admitted."""
        if name == OTHER:
            return name
        period = now_ms // self.period_ms
        key = _key(name)
        with self._lock:
            if period != self._period:
                self._period, self._seen = period, {}
            seen = self._seen.setdefault(device_id, set())
            if key in seen:
                return name
            if len(seen) >= self.limit:
                return OTHER
            seen.add(key)
            return name

    def error(self, name: str) -> str:
        """The reject's error text for a name that was kept as :data:`OTHER`."""
        return (f"more than {self.limit:,} distinct {self.kind} names today: records of {self.kind} "
                f"{name[:100]!r} are kept under {OTHER!r}")


@dataclass(frozen=True)
class UsageLimits:
    """What one device may introduce per day in its usage records (defaults far above a real
    OpenClaw gateway: a handful of models, a few agents, tens of sessions a day)."""

    models: int = 50
    agents: int = 100
    sessions: int = 1000


class UsageNames:
    """The usage channel's budgets: ``model`` (provider/model), ``agent`` and ``session`` names.

    :meth:`bound` rewrites usage record dicts in place (before they are stored) and counts every
    record it rewrote in the batch's :class:`CacheChange` (reason ``<kind>_over_limit``)."""

    def __init__(self, limits: UsageLimits | None = None) -> None:
        lim = limits or UsageLimits()
        self.models = NameBudget("model", lim.models)
        self.agents = NameBudget("agent", lim.agents)
        self.sessions = NameBudget("session", lim.sessions)

    def bound(self, rows: list[dict], change: CacheChange, now_ms: int) -> None:
        """Apply the budgets to ``rows`` (dicts with ``device``, ``provider``, ``model``,
        ``agent_id``, ``session_id``): a model over budget becomes provider ``""`` and model
        :data:`OTHER`; an agent or session over budget becomes :data:`OTHER`."""
        for r in rows:
            device = r["device"]
            full = f"{r['provider']}/{r['model']}" if r.get("provider") else r["model"]
            if self.models.admit(device, full, now_ms) == OTHER and full != OTHER:
                r["provider"], r["model"] = "", OTHER
                change.reject(device, self.models.reason, self.models.error(full))
            self._bound_ids(r, change, now_ms)

    def bound_activity(self, lists: dict[str, list[dict]], change: CacheChange, now_ms: int) -> None:
        """The same agent and session budgets for a batch's sessions, runs and tool calls (dicts with
        ``device``, ``agent_id``, ``session_id``), so a session kept as :data:`OTHER` in the usage
        records is the same ``(other)`` session there."""
        for rows in lists.values():
            for r in rows:
                self._bound_ids(r, change, now_ms)

    def _bound_ids(self, r: dict, change: CacheChange, now_ms: int) -> None:
        device = r["device"]
        for budget, field in ((self.agents, "agent_id"), (self.sessions, "session_id")):
            name = r.get(field)
            if isinstance(name, str) and budget.admit(device, name, now_ms) == OTHER and name != OTHER:
                change.reject(device, budget.reason, budget.error(name))
                r[field] = OTHER


USAGE_NAMES = UsageNames()
"""The budgets ingest applies to every usage batch (:func:`fleet_server.ingest.writers.write_usage`)."""
