"""Open incidents in memory and the database: the engine's in-memory mirror (:class:`Open`), the
changes of one evaluation pass (:class:`Batch`) and their commit in one transaction, with the
events the dispatcher turns into notifications (so a change and its notification commit together).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from peewee import Database

from fleet_server.alerts.errors import store_seen
from fleet_server.alerts.messages import EventText
from fleet_server.store.alert_models import AlertEvent, AlertIncident
from fleet_server.store.bulk import CHUNK
from fleet_server.store.locks import write_transaction

log = logging.getLogger("clawfleet.alerts")

EVENT_CHUNK = 100
"""Events per multi-row INSERT (9 columns each: under SQLite's oldest limit of 999 variables)."""


@dataclass(eq=False)
class Open:
    """An incident as the engine holds it (``state`` pending or firing; resolved ones leave memory).
    ``clear_since`` (memory only) is when a firing offline/gateway condition last cleared, for the
    rule's ``clear_s`` hold."""

    id: int
    rule: int
    subject: str
    state: str
    severity: str
    started_ms: int
    fired_ms: int | None = None
    resolved_ms: int | None = None
    notified: bool = False
    last_notified_ms: int | None = None
    acked: bool = False
    silenced: bool = False
    level: int = 0
    period: str = ""
    value: float | None = None
    threshold: float | None = None
    summary: str = ""
    clear_since: int | None = None

    def row(self) -> dict:
        """The stored columns."""
        return {"rule": self.rule, "subject": self.subject[:120], "state": self.state, "severity": self.severity,
                "started_ms": self.started_ms, "fired_ms": self.fired_ms, "resolved_ms": self.resolved_ms,
                "value": self.value, "threshold": self.threshold, "summary": self.summary[:500],
                "period": self.period, "level": self.level, "notified": self.notified,
                "last_notified_ms": self.last_notified_ms, "silenced": self.silenced}


def load_open() -> list[Open]:
    """Pending and firing incidents from the database."""
    out = []
    for r in AlertIncident.select().where(AlertIncident.state.in_(("pending", "firing"))):
        out.append(Open(r.id, r.rule, r.subject, r.state, r.severity, r.started_ms, r.fired_ms, None, r.notified,
                        r.last_notified_ms, r.acked_ms is not None, r.silenced, r.level, r.period, r.value,
                        r.threshold, r.summary))
    return out


@dataclass
class Batch:
    """What one pass changes: incidents added, changed, deleted (pending that cleared), events to
    notify, and log fingerprints to remember as seen."""

    new: list[Open] = field(default_factory=list)
    changed: dict[int, Open] = field(default_factory=dict)  # id(Open) -> Open
    deleted: list[int] = field(default_factory=list)
    events: list[tuple[Open, str, str, EventText, tuple[int, ...], int]] = field(default_factory=list)
    seen: list[tuple[str, str, int]] = field(default_factory=list)

    def add(self, inc: Open) -> None:
        """A new incident (stored at commit, which gives it its id)."""
        self.new.append(inc)

    def mark(self, inc: Open) -> None:
        """An incident whose stored columns changed."""
        self.changed[id(inc)] = inc

    def drop(self, inc: Open) -> None:
        """A pending incident that cleared: forget it (it never fired)."""
        if inc in self.new:
            self.new.remove(inc)
            self.changed.pop(id(inc), None)
        else:
            self.deleted.append(inc.id)
            self.changed.pop(id(inc), None)

    def event(self, inc: Open, kind: str, severity: str, text: EventText, channels: tuple[int, ...],
              now: int) -> None:
        """Queue a notification about ``inc`` (``kind`` firing, resolved, reminder or budget)."""
        self.events.append((inc, kind, severity, text, channels, now))

    def empty(self) -> bool:
        """Nothing to store."""
        return not (self.new or self.changed or self.deleted or self.events or self.seen)


def commit(database: Database, batch: Batch) -> None:
    """Store a pass's changes and events in one transaction (new incidents get their ids)."""
    if batch.empty():
        return
    with write_transaction(database):
        for inc in batch.new:
            inc.id = AlertIncident.insert(**inc.row()).execute()
        new = {id(i) for i in batch.new}
        for inc in batch.changed.values():
            if id(inc) not in new:
                AlertIncident.update(**inc.row()).where(AlertIncident.id == inc.id).execute()
        for k in range(0, len(batch.deleted), CHUNK):
            AlertIncident.delete().where(AlertIncident.id.in_(batch.deleted[k:k + CHUNK])).execute()
        rows = [{"incident": inc.id, "rule": inc.rule, "kind": kind, "severity": sev, "created_ms": now,
                 "subject": t.subject[:200], "headline": t.headline[:300], "text": t.text[:1500],
                 "channels": ",".join(str(c) for c in channels)}
                for inc, kind, sev, t, channels, now in batch.events]
        for k in range(0, len(rows), EVENT_CHUNK):
            AlertEvent.insert_many(rows[k:k + EVENT_CHUNK]).execute()
        if batch.seen:
            store_seen(batch.seen)
    if batch.events:
        log.info("alerts: %d notification event(s) queued (%s)", len(batch.events),
                 ", ".join(sorted({f"{k} {t.subject}" for _, k, _, t, _, _ in batch.events}))[:300])
