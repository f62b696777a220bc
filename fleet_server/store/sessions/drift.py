"""Version drift: which OpenClaw and agent versions the fleet runs, when each device changed, and whether
the change made things worse.

For each change (a device reporting a new version, :class:`~fleet_server.store.models.VersionChange`) the
same figures are taken over a window before it and after it (default 7 days each, the after-window ending
at the device's next change of that kind or now):

- **failed-turn rate**: failed turns / turns, percent 0-100 (runs started in the window);
- **error-fingerprint rate**: distinct error fingerprints (error and fatal log records grouped by their
  message with numbers and ids removed) per 100 turns -- new kinds of errors, not repeats of one;
- **tokens per turn**: total tokens / turns.

:func:`transitions` adds the windows of every device that made the same change (``old -> new``), so a
version is judged on the whole fleet, not one machine.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from peewee import Case, fn

from fleet_server.store.models import AgentRun, LogRecord, VersionChange
from fleet_server.store.sql import QueryError, total

DAY_MS = 86_400_000
KINDS = ("openclaw", "agent")
MAX_CHANGES = 200


@dataclass
class Window:
    """Figures of one device over one time window (turns and tokens counts; errors are log records)."""

    turns: int = 0
    failed_turns: int = 0
    total_tokens: int = 0
    errors: int = 0
    fingerprints: int = 0

    def add(self, other: Window) -> Window:
        """Add another window's counts (in place); returns self. (Distinct fingerprints add per device.)"""
        for k, v in asdict(other).items():
            setattr(self, k, getattr(self, k) + v)
        return self

    def rates(self) -> dict:
        """The counts plus ``failed_pct`` (0-100), ``fingerprints_per_100_turns`` and ``tokens_per_turn``
        (None without turns)."""
        d = asdict(self)
        n = self.turns
        d.update(failed_pct=round(100 * self.failed_turns / n, 2) if n else None,
                 fingerprints_per_100_turns=round(100 * self.fingerprints / n, 2) if n else None,
                 tokens_per_turn=round(self.total_tokens / n, 1) if n else None)
        return d


def window(device: str, start_ms: int, end_ms: int) -> Window:
    """A device's figures over ``[start_ms, end_ms)`` (two indexed range queries)."""
    if end_ms <= start_ms:
        return Window()
    r = AgentRun
    turns, failed, tokens = (r.select(fn.COUNT(r.id), total(Case(None, [(r.status == "failed", 1)], 0)),
                                      total(r.total_tokens))
                             .where((r.device == device) & (r.started_ms >= start_ms) & (r.started_ms < end_ms))
                             .tuples().get())
    lg = LogRecord
    errors, fps = (lg.select(fn.COUNT(lg.id), fn.COUNT(lg.fingerprint.distinct()))
                   .where((lg.device == device) & (lg.ts >= start_ms) & (lg.ts < end_ms)
                          & lg.level.in_(("error", "fatal"))).tuples().get())
    return Window(int(turns or 0), int(failed or 0), int(tokens or 0), int(errors or 0), int(fps or 0))


def changes(kind: str = "openclaw", now_ms: int = 0, window_days: int = 7, device: str | None = None,
            limit: int = 50) -> list[dict]:
    """The newest version changes of ``kind`` (``openclaw`` or ``agent``), each with its before/after figures.

    Rows: ``device, ts, old_version, new_version, before, after`` (:meth:`Window.rates` dicts); a first
    report (no old version) has no before-window. Raises QueryError for an unknown kind.
    """
    if kind not in KINDS:
        raise QueryError(f"kind must be one of {', '.join(KINDS)}")
    span = max(1, min(90, int(window_days))) * DAY_MS
    q = VersionChange.select().where(VersionChange.kind == kind)
    if device:
        q = q.where(VersionChange.device == device)
    rows = list(q.order_by(VersionChange.ts.desc()).limit(max(1, min(MAX_CHANGES, limit))).dicts())
    out = []
    for c in rows:
        nxt = (VersionChange.select(fn.MIN(VersionChange.ts)).where(
            (VersionChange.device == c["device"]) & (VersionChange.kind == kind) & (VersionChange.ts > c["ts"]))
            .scalar())
        end = min(c["ts"] + span, nxt or now_ms or c["ts"] + span)
        before = window(c["device"], c["ts"] - span, c["ts"]) if c["old_version"] else Window()
        after = window(c["device"], c["ts"], max(end, c["ts"]))
        out.append({"device": c["device"], "ts": c["ts"], "old_version": c["old_version"],
                    "new_version": c["new_version"], "before": before.rates(), "after": after.rates()})
    return out


def transitions(kind: str = "openclaw", now_ms: int = 0, window_days: int = 7) -> list[dict]:
    """Changes of ``kind`` grouped by ``old_version -> new_version`` over the newest changes: ``old_version,
    new_version, devices, first_ms, last_ms, before, after`` (summed windows, :meth:`Window.rates`)."""
    groups: dict[tuple, dict] = {}
    for c in changes(kind, now_ms, window_days, limit=MAX_CHANGES):
        if c["old_version"] is None:
            continue
        g = groups.setdefault((c["old_version"], c["new_version"]), {
            "old_version": c["old_version"], "new_version": c["new_version"], "devices": set(),
            "first_ms": c["ts"], "last_ms": c["ts"], "before": Window(), "after": Window()})
        g["devices"].add(c["device"])
        g["first_ms"], g["last_ms"] = min(g["first_ms"], c["ts"]), max(g["last_ms"], c["ts"])
        for side in ("before", "after"):
            g[side].add(Window(**{k: c[side][k] for k in asdict(Window())}))
    return [{**g, "devices": len(g["devices"]), "before": g["before"].rates(), "after": g["after"].rates()}
            for g in sorted(groups.values(), key=lambda g: -g["last_ms"])]


def fleet_versions(metas: list[tuple[str, str | None, str | None]]) -> dict[str, list[dict]]:
    """Devices per version now, from ``(device, openclaw version, agent version)`` of the latest meta:
    ``{"openclaw": [{"version", "devices"}], "agent": [...]}``, most devices first (None: not reported)."""
    out: dict[str, dict[str | None, int]] = {"openclaw": {}, "agent": {}}
    for _, oc, agent in metas:
        out["openclaw"][oc] = out["openclaw"].get(oc, 0) + 1
        out["agent"][agent] = out["agent"].get(agent, 0) + 1
    return {k: [{"version": v, "devices": n} for v, n in sorted(d.items(), key=lambda kv: (-kv[1], str(kv[0])))]
            for k, d in out.items()}
