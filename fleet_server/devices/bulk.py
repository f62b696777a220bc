"""Enrolling many devices at once (``clawfleet-server device import``): the list format, and the
fast path that writes every account in one step while the managed broker is stopped.

Why two paths: Mosquitto 2.0.11 rewrites its whole dynamic-security file after every command
that changes it, so enrolling through the running broker costs two file rewrites per device,
each growing with the fleet (about 24 ms per 1,000 enrolled devices, measured here). With the
broker stopped, :func:`enroll_offline` adds all accounts to the file and all rows to the
database in one write each: constant time per device.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from broker.config import BrokerAdmin, BrokerConfig, pbkdf2_fields, prepare_dynsec_file
from broker.dynsec_file import add_devices
from fleet_server.devices.keys import generate_api_key, hash_api_key, key_hint
from fleet_server.devices.registry import DeviceError, NewDevice, plan_device
from fleet_server.store import audit
from fleet_server.store.models import AuditEvent, BaseModel, Device, db
from shared.clock import now_ms
from shared.enrollment import Enrollment, encode_token
from shared.private_files import open_private, write_private

MAX_ROWS = 100_000
"""Most devices one import takes."""
HEADER_FIELDS = {"name", "id", "tags"}


@dataclass(frozen=True)
class ImportRow:
    """One device to enroll: ``line`` in the file (1-based), cleaned ``name`` and ``tags``
    (comma-separated), ``device_id`` (derived from the name unless the file gives one)."""

    line: int
    device_id: str
    name: str
    tags: str


@dataclass(frozen=True)
class RowError:
    """A line that cannot be enrolled, and why (plain words)."""

    line: int
    text: str
    error: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.error} ({self.text[:60]!r})"


def parse_import(text: str, extra_tags: str = "") -> tuple[list[ImportRow], list[RowError]]:
    """Read a device list. Two forms, both UTF-8:

    - one device per line: ``name`` or ``name,tag,tag…`` (everything after the first comma is
      tags); ``#`` starts a comment line; blank lines are skipped;
    - CSV with a header row naming the columns ``name`` (required), ``id`` and ``tags`` (quote a
      tags cell that holds commas: ``"prod,eu"``), in any order.

    ``extra_tags`` (comma-separated) are added to every device. Ids repeated in the file are
    errors after their first line. Existing devices are not checked here.

    Returns ``(rows to enroll, errors)``.

    Raises:
        DeviceError: more than :data:`MAX_ROWS` devices, or a header without a ``name`` column.
    """
    lines = [(n, ln) for n, ln in enumerate(text.splitlines(), 1) if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        return [], []
    first = next(csv.reader([lines[0][1]]))
    header = [c.strip().lower() for c in first]
    rows, errors, seen = [], [], set()
    if set(header) & HEADER_FIELDS and set(header) <= HEADER_FIELDS | {""}:
        if "name" not in header:
            raise DeviceError("the header row has no 'name' column (columns: name, id, tags)")
        records = [(n, ln, dict(zip(header, next(csv.reader([ln])), strict=False))) for n, ln in lines[1:]]
    else:
        records = []
        for n, ln in lines:
            name, _, tags = ln.partition(",")
            records.append((n, ln, {"name": name, "tags": tags}))
    if len(records) > MAX_ROWS:
        raise DeviceError(f"{len(records)} devices in one import; at most {MAX_ROWS}: split the file")
    for n, ln, rec in records:
        try:
            tags = ",".join(t for t in (rec.get("tags") or "", extra_tags) if t)
            did, name, tags = plan_device(rec.get("name") or "", tags, (rec.get("id") or "").strip() or None)
        except DeviceError as exc:
            errors.append(RowError(n, ln, str(exc)))
            continue
        if did in seen:
            errors.append(RowError(n, ln, f"device id {did!r} appears earlier in the file"))
            continue
        seen.add(did)
        rows.append(ImportRow(n, did, name, tags))
    return rows, errors


def existing_ids(ids: Iterable[str]) -> set[str]:
    """Which of ``ids`` are enrolled already (one query per 500 ids)."""
    ids, found = list(ids), set()
    for i in range(0, len(ids), 500):
        found |= {d.id for d in Device.select(Device.id).where(Device.id.in_(ids[i:i + 500]))}
    return found


def enroll_offline(cfg: BrokerConfig, rows: list[ImportRow], broker_url: str, ca_pem: str | None, actor: str,
                   source: str, on_device: Callable[[NewDevice], None],
                   token_extra: dict[str, str] | None = None) -> int:
    """Enroll ``rows`` with the managed broker STOPPED: database rows (key hashes only) and one
    ``device.add`` audit row each in one transaction, and every broker account in one write of
    its dynsec file (current layout). ``on_device`` gets each new device with its key and token
    (shown once) before anything is committed, so the caller can write them out first; an
    exception from it aborts the import with nothing enrolled. ``token_extra``: the tokens' optional
    fields (WebSockets URL, fleet URL, update key). Returns how many were enrolled.

    Raises:
        DeviceError: a device of ``rows`` exists already (nothing enrolled; check with
            :func:`existing_ids` first).
        BrokerSetupError: the broker's files cannot be read (it never ran here).
        OSError: the dynsec file cannot be written (nothing enrolled).
    """
    admin = BrokerAdmin.load(cfg.admin_path)
    prepare_dynsec_file(cfg.dynsec_path, admin)  # exists, readable, current layout
    data = json.loads(cfg.dynsec_path.read_text(encoding="utf-8"))
    taken = existing_ids(r.device_id for r in rows)
    if taken:
        raise DeviceError(f"already enrolled: {', '.join(sorted(taken)[:5])}" + (" …" if len(taken) > 5 else ""))
    ts = now_ms()
    with db.atomic():
        accounts, records = [], []
        for row in rows:
            key = generate_api_key()
            records.append({"id": row.device_id, "name": row.name, "tags": row.tags, "key_hash": hash_api_key(key),
                            "key_hint": key_hint(key), "created_ms": ts})
            accounts.append((row.device_id, pbkdf2_fields(key)))
            token = encode_token(Enrollment(url=broker_url, device_id=row.device_id, api_key=key, ca_pem=ca_pem,
                                            **(token_extra or {})))
            on_device(NewDevice(device=Device(**records[-1]), api_key=key, token=token))
        _insert(Device, records)
        _insert(AuditEvent, audit.event_rows(actor, "device.add", [(row.device_id, f"name {row.name!r}" + (
            f", tags {row.tags}" if row.tags else "") + f"; imported from {source}") for row in rows]))
        try:
            add_devices(data, accounts)
        except ValueError as exc:  # an account left on the broker without a device row
            raise DeviceError(f"{exc}; start the server once (it deletes such leftovers) and import again") from None
        write_private(cfg.dynsec_path, json.dumps(data) + "\n")  # compact: the C encoder, 10x faster
    return len(rows)


def _insert(model: type[BaseModel], rows: list[dict[str, object]]) -> None:
    """Insert ``rows`` (dicts of field name -> value, all with the same keys) with one prepared
    statement (DB-API ``executemany``): peewee builds SQL per value, which cost ~1 ms per device row."""
    if not rows:
        return
    fields = model._meta.fields  # peewee's documented metadata
    defaults = {n: f.default() if callable(f.default) else f.default for n, f in fields.items()
                if n not in rows[0] and f.default is not None}  # raw SQL does not apply peewee's defaults
    rows = [{**defaults, **r} for r in rows]
    names = list(rows[0])
    columns = ", ".join(f'"{fields[n].column_name}"' for n in names)
    sql = f'INSERT INTO "{model._meta.table_name}" ({columns}) VALUES ({", ".join([db.param] * len(names))})'  # noqa: S608
    db.cursor().executemany(sql, [tuple(fields[n].db_value(r[n]) for n in names) for r in rows])


def keys_csv_header() -> str:
    """First line of a keys file."""
    return _csv_line(["device_id", "name", "api_key", "enrollment_token"])


def keys_csv_line(new: NewDevice) -> str:
    """One keys-file line for a new device (id, name, API key, enrollment token)."""
    return _csv_line([new.device.id, new.device.name, new.api_key, new.token])


def _csv_line(cells: list[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(cells)
    return buf.getvalue()


def open_keys_file(path: Path) -> io.TextIOWrapper:
    """Create ``path`` for writing, readable by the owner only (0600), refusing to overwrite.

    Raises:
        FileExistsError: it exists.  OSError: it cannot be created.
    """
    return open_private(path, exclusive=True, newline="")
