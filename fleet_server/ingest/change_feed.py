"""Live changes between server processes on one PostgreSQL (``LISTEN/NOTIFY``).

With several processes (ingest workers, a dashboard of its own) each keeps its own latest-state
cache (:class:`fleet_server.state.FleetState`); what one ingest worker stores, the others learn
from the database: the worker's batch transaction sends its cache change with ``pg_notify`` on
:data:`CHANNEL` (delivered only if the batch commits, in commit order), and every process listens
on its own connection and applies the changes of the others to its cache — the dashboard's
overview, the stale check's heard times, which token sums to read again. After a lost listening connection the
cache is reloaded from the tables (changes sent while it was gone are not replayed).

A notification is JSON, at most :data:`MAX_PAYLOAD` bytes (PostgreSQL's limit is 8,000), so a
large change goes as several: ``{"o": origin, "d": {device: fields}, "u": [device whose token
usage grew, …], "r": [[device, reason], …], "m": [device, …]}`` ("m": a meta too large to carry,
read from the devices table). Timestamps epoch ms; telemetry and meta as their ``shared.schemas``
JSON.
"""

from __future__ import annotations

import json
import logging
import select
import threading
from dataclasses import asdict
from typing import Any

from peewee import Database, PostgresqlDatabase
from peewee import PeeweeException as PeeweeError

from fleet_server.ingest.messages import CacheChange
from fleet_server.state import FleetState, LatestError
from fleet_server.store.models import Device
from shared import schemas

log = logging.getLogger("clawfleet.ingest.change_feed")

CHANNEL = "clawfleet_changes"
MAX_PAYLOAD = 7500
"""Bytes per notification (PostgreSQL refuses payloads of 8,000 bytes or more)."""
RECONNECT_S = 2.0


def _field(key: str, value: Any) -> Any:
    if key in ("telemetry", "meta") and value is not None:
        return value.model_dump(mode="json")
    if key == "latest_error" and value is not None:
        return asdict(value)
    return value


def _restore(key: str, value: Any) -> Any:
    if value is None:
        return None
    if key == "telemetry":
        return schemas.Telemetry.model_validate(value)
    if key == "meta":
        return schemas.Meta.model_validate(value)
    if key == "latest_error":
        return LatestError(**value)
    return value


def encode(change: CacheChange, origin: str) -> list[str]:
    """The notifications carrying ``change`` (none when it changes nothing), each under
    :data:`MAX_PAYLOAD` bytes."""
    parts: list[dict[str, Any]] = []
    for device, fields in change.devices.items():
        encoded = {k: _field(k, v) for k, v in fields.items()}
        if len(json.dumps(encoded)) > MAX_PAYLOAD // 2:  # a large meta goes by name: read from the devices table
            if encoded.pop("meta", None) is not None:
                parts.append({"m": [device]})
            err = encoded.get("latest_error")
            if err is not None and len(json.dumps(encoded)) > MAX_PAYLOAD // 2:
                encoded["latest_error"] = {**err, "message": err["message"][:1000]}
        parts.append({"d": {device: encoded}})
    if change.usage:
        parts.append({"u": sorted(change.usage)})
    rejects = [[n.device_id, n.reason] for n in change.rejects if n.device_id]
    for k in range(0, len(rejects), 100):
        parts.append({"r": rejects[k:k + 100]})
    out: list[str] = []
    cur: dict[str, Any] = {"o": origin}
    size = 20 + len(origin)
    for part in parts:
        text = json.dumps(part, separators=(",", ":"))
        if len(text) + size > MAX_PAYLOAD and len(cur) > 1:
            out.append(json.dumps(cur, separators=(",", ":")))
            cur, size = {"o": origin}, 20 + len(origin)
        for key, value in part.items():
            if key in ("r", "m", "u"):
                cur.setdefault(key, []).extend(value)
            else:
                cur.setdefault(key, {}).update(value)
        size += len(text)
    if len(cur) > 1:
        out.append(json.dumps(cur, separators=(",", ":")))
    return out


def apply(payload: str, state: FleetState, origin: str) -> bool:
    """Apply one notification of another process to ``state``; False when it was this process's
    own (``origin``) or not readable."""
    try:
        data = json.loads(payload)
        if data.get("o") == origin:
            return False
        devices = {d: {k: _restore(k, v) for k, v in f.items()} for d, f in data.get("d", {}).items()}
        usage = [str(d) for d in data.get("u", [])]
    except (ValueError, TypeError, AttributeError) as exc:
        log.warning("ignoring an unreadable change notification: %s", str(exc)[:200])
        return False
    for device, fields in devices.items():  # last seen only moves forward, as in ingest's own cache update
        cur = state.get(device)
        if cur is not None and (cur.last_seen_ms or 0) >= (fields.get("last_seen_ms") or 0):
            fields.pop("last_seen_ms", None)
    for device in data.get("m", []):  # meta too large for a notification: from the devices table
        text = Device.select(Device.meta_json).where(Device.id == device).scalar()
        if text:
            devices.setdefault(device, {})["meta"] = schemas.Meta.model_validate_json(text)
    state.upsert_many({d: f for d, f in devices.items() if f})
    if usage:
        state.note_usage(usage)  # token sums are read from the tables; views re-read them
    for device, reason in data.get("r", []):
        state.count_reject(device, reason)
    return True


class ChangePublisher:
    """Sends a committed batch's cache change to the other processes (``publish`` runs inside the
    batch's transaction: PostgreSQL delivers the notifications at commit, never for a rollback)."""

    def __init__(self, database: Database, origin: str) -> None:
        self.database, self.origin = database, origin

    def publish(self, change: CacheChange) -> None:
        """``pg_notify`` each notification of :func:`encode`."""
        for payload in encode(change, self.origin):
            self.database.execute_sql("SELECT pg_notify(%s, %s)", (CHANNEL, payload))


class ChangeListener:
    """Listens on :data:`CHANNEL` with its own connection (a thread) and applies the other
    processes' changes to ``state``; reloads ``state`` from the tables after a reconnect."""

    def __init__(self, database: PostgresqlDatabase, state: FleetState, origin: str) -> None:
        self.database, self.state, self.origin = database, state, origin
        self.applied = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="clawfleet-change-listener", daemon=True)
        self.listening = threading.Event()

    def start(self) -> None:
        """Start the listening thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop listening (within a second)."""
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        with self.database.connection_context():  # meta reads and reloads in this thread
            self._listen()

    def _listen(self) -> None:
        import psycopg2

        first = True
        while not self._stop.is_set():
            try:
                conn = psycopg2.connect(dbname=self.database.database, **self.database.connect_params)
            except psycopg2.Error as exc:
                log.warning("change listener cannot connect (%s); retrying", str(exc).strip()[:200])
                self._stop.wait(RECONNECT_S)
                continue
            try:
                conn.autocommit = True
                conn.cursor().execute(f"LISTEN {CHANNEL}")
                self.listening.set()
                if not first:  # changes sent while the connection was gone are lost: read the tables again
                    self.state.load_from_db()
                first = False
                while not self._stop.is_set():
                    if select.select([conn], [], [], 1.0)[0]:
                        conn.poll()
                        while conn.notifies:
                            if apply(conn.notifies.pop(0).payload, self.state, self.origin):
                                self.applied += 1
            except (psycopg2.Error, OSError, PeeweeError) as exc:
                log.warning("change listener lost its connection (%s); reconnecting", str(exc).strip()[:200])
                self.database.close()  # this thread's peewee connection too; the next query opens a new one
                self._stop.wait(RECONNECT_S)
            finally:
                self.listening.clear()
                conn.close()
