"""Log-fingerprint rules: a fingerprint never seen before (on the fleet, or on that device) and a
fingerprint logged too often in the last hour.

Error and fatal records only, never OpenClaw's CLI hint lines (:func:`fleet_server.store.logs.not_hint`).
Fingerprints already seen are kept in :class:`AlertFingerprint` (``device`` ``""`` = anywhere on
the fleet). The first look at a database seeds that table with everything stored so far, so an
upgrade does not announce the whole log history as new. Records are looked at back to
:data:`LOOKBACK_MS` (an agent's outbox can deliver records late); older late records are added to
the seen table without a notification.
"""

from __future__ import annotations

from dataclasses import dataclass

from peewee import fn

from fleet_server.store.alert_models import AlertFingerprint, AlertSetting
from fleet_server.store.bulk import CHUNK
from fleet_server.store.logs import not_hint
from fleet_server.store.models import LogRecord
from fleet_server.store.usage.sums import HOUR_MS

LOOKBACK_MS = 2 * HOUR_MS
ERROR_LEVELS = ("error", "fatal")


@dataclass(frozen=True)
class NewFingerprint:
    """A fingerprint first logged at ``first_ms`` on ``device``: ``fleet_new`` when no device had it
    before, ``device_new`` when that device had not. ``message`` is one of its lines."""

    device: str
    fingerprint: str
    first_ms: int
    message: str
    subsystem: str
    fleet_new: bool
    device_new: bool


def _seeded() -> bool:
    return AlertSetting.get_or_none(AlertSetting.key == "fingerprints_seeded") is not None


def seed_seen() -> int:
    """Mark every stored fingerprint as seen (once per database). Returns the rows added."""
    if _seeded():
        return 0
    q = (LogRecord.select(LogRecord.device, LogRecord.fingerprint, fn.MIN(LogRecord.ts))
         .where(LogRecord.level.in_(ERROR_LEVELS) & (LogRecord.fingerprint != ""))
         .group_by(LogRecord.device, LogRecord.fingerprint).tuples())
    rows: dict[tuple[str, str], int] = {}
    for device, fp, first in q:
        rows[(device, fp)] = int(first)
        rows[("", fp)] = min(rows.get(("", fp), int(first)), int(first))
    _insert_seen([(d, f, ms) for (d, f), ms in rows.items()])
    AlertSetting.insert(key="fingerprints_seeded", value="1").on_conflict_ignore().execute()
    return len(rows)


def _insert_seen(rows: list[tuple[str, str, int]]) -> None:
    for k in range(0, len(rows), CHUNK):
        (AlertFingerprint.insert_many(rows[k:k + CHUNK], fields=[AlertFingerprint.device, AlertFingerprint.fingerprint,
                                                                 AlertFingerprint.first_ms])
         .on_conflict_ignore().execute())


def find_new(now: int) -> tuple[list[NewFingerprint], list[tuple[str, str, int]]]:
    """Fingerprints logged since ``now - LOOKBACK_MS`` that the seen table does not have.

    Returns ``(new ones, seen rows to store)``; store the rows (:func:`store_seen`) in the same
    transaction as the incidents made of them, so a restart never announces one twice.
    """
    if not _seeded():
        seed_seen()
        return [], []
    q = (LogRecord.select(LogRecord.device, LogRecord.fingerprint, fn.MIN(LogRecord.ts), fn.MAX(LogRecord.message),
                          fn.MAX(LogRecord.subsystem))
         .where((LogRecord.ts >= now - LOOKBACK_MS) & LogRecord.level.in_(ERROR_LEVELS)
                & (LogRecord.fingerprint != "") & not_hint())
         .group_by(LogRecord.device, LogRecord.fingerprint).tuples())
    recent = list(q)
    if not recent:
        return [], []
    fps = sorted({r[1] for r in recent})
    seen: set[tuple[str, str]] = set()
    for k in range(0, len(fps), CHUNK):
        seen.update(AlertFingerprint.select(AlertFingerprint.device, AlertFingerprint.fingerprint)
                    .where(AlertFingerprint.fingerprint.in_(fps[k:k + CHUNK])).tuples())
    new, store = [], []
    fleet_seen_now: set[str] = set()
    for device, fp, first, message, subsystem in sorted(recent, key=lambda r: r[2]):
        device_new = (device, fp) not in seen
        if not device_new:
            continue
        fleet_new = ("", fp) not in seen and fp not in fleet_seen_now
        fleet_seen_now.add(fp)
        store.append((device, fp, int(first)))
        if fleet_new:
            store.append(("", fp, int(first)))
        new.append(NewFingerprint(device, fp, int(first), message or "", subsystem or "", fleet_new, device_new))
    return new, store


def store_seen(rows: list[tuple[str, str, int]]) -> None:
    """Remember fingerprints as seen (inside the caller's transaction)."""
    _insert_seen(rows)


def hourly_counts(now: int) -> dict[tuple[str, str], tuple[int, str]]:
    """``{(device, fingerprint): (error records in the last hour, one message)}``."""
    q = (LogRecord.select(LogRecord.device, LogRecord.fingerprint, fn.COUNT(LogRecord.id), fn.MAX(LogRecord.message))
         .where((LogRecord.ts > now - HOUR_MS) & (LogRecord.ts <= now) & LogRecord.level.in_(ERROR_LEVELS)
                & (LogRecord.fingerprint != "") & not_hint())
         .group_by(LogRecord.device, LogRecord.fingerprint).tuples())
    return {(d, fp): (int(n), msg or "") for d, fp, n, msg in q}
