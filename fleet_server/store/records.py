"""Idempotent inserts of device records (usage and log records) whose ids are unique per device."""

from __future__ import annotations

from peewee import Model

from fleet_server.store.bulk import CHUNK, insert_new

__all__ = ["CHUNK", "insert_rows", "new_records"]


def new_records(model: type[Model], rows: list[dict], compare: tuple[str, ...]) -> tuple[list[dict], list[dict]]:
    """Split ``rows`` (dicts with ``device`` and ``id``) into records not stored yet and conflicts.

    A row whose ``(device, id)`` is stored already (or came earlier in ``rows``) with the same
    ``compare`` fields is a redelivery and silently skipped; with different content it is a
    conflict (the first stays). Runs inside the caller's transaction.

    Returns:
        ``(new_rows, conflicting_rows)``, each in the order of ``rows``.
    """
    first: dict[tuple[str, str], dict] = {}
    conflicts: list[dict] = []
    for r in rows:
        key = (r["device"], r["id"])
        seen = first.get(key)
        if seen is None:
            first[key] = r
        elif _content(seen, compare) != _content(r, compare):
            conflicts.append(r)
    by_device: dict[str, list[str]] = {}
    for device, rid in first:
        by_device.setdefault(device, []).append(rid)
    cols = [model.device, model.id] + [getattr(model, c) for c in compare]
    for device, ids in by_device.items():
        for i in range(0, len(ids), CHUNK):
            q = model.select(*cols).where((model.device == device) & model.id.in_(ids[i:i + CHUNK])).dicts()
            for stored in q:
                row = first.pop((device, stored["id"]))
                if _content(stored, compare) != _content(row, compare):
                    conflicts.append(row)
    return list(first.values()), conflicts


def insert_rows(model: type[Model], rows: list[dict]) -> None:
    """INSERT ``rows`` (dicts of field values with the same keys; a missing field gets its default;
    they must be new, see :func:`new_records`) with one prepared statement
    (:func:`fleet_server.store.bulk.insert_new`)."""
    if not rows:
        return
    fields = [f for f in model._meta.sorted_fields if f.name in rows[0] or f.default is not None]
    defaults = {f.name: f.default for f in fields}
    values = [tuple(r[n] if n in r else (d() if callable(d) else d) for n, d in defaults.items()) for r in rows]
    insert_new(model, tuple(f.column_name for f in fields), values)


def _content(row: dict, compare: tuple[str, ...]) -> tuple:
    return tuple(row.get(c) for c in compare)
