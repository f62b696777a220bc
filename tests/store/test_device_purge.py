"""Deleting a device purges its rows from every table that has a ``device`` column — the list is
derived from the models here, so a table added later cannot be forgotten (SQLite and PostgreSQL)."""

from __future__ import annotations

from peewee import BigIntegerField, BooleanField, CharField, FloatField, IntegerField, TextField

from fleet_server.devices.registry import DEVICE_DATA_MODELS, purge_device_data
from fleet_server.store.models import ALL_MODELS, Device

VALUES = {BigIntegerField: 7, IntegerField: 7, FloatField: 1.5, BooleanField: False, TextField: "x", CharField: "x"}


def _row(model, device: str) -> dict:
    """A row of ``model`` for ``device``: a plain value of its type in every other column."""
    out = {}
    for name, f in model._meta.fields.items():
        if f.primary_key and not isinstance(f, CharField) and name != "device" and not model._meta.composite_key:
            continue  # an auto id
        out[name] = device if name == "device" else next(v for t, v in VALUES.items() if isinstance(f, t))
    return out


def test_every_table_with_a_device_column_is_purged(store):
    with_device = [m for m in ALL_MODELS if m is not Device and "device" in m._meta.fields]
    assert set(with_device) == set(DEVICE_DATA_MODELS)
    assert {"sample_rollup5m", "sample_rollup1h", "usage_total", "usage_hourly"} <= {
        m._meta.table_name for m in with_device}  # the tables the old, copied list missed
    for device in ("doomed", "kept"):
        Device.create(id=device, name=device, key_hash="x", key_hint="abcd", created_ms=1)
        for model in with_device:
            model.insert(_row(model, device)).execute()
    deleted = purge_device_data("doomed")
    assert deleted == {m._meta.table_name: 1 for m in with_device}
    for model in with_device:
        assert not model.select().where(model.device == "doomed").exists(), model.__name__
        assert model.select().where(model.device == "kept").count() == 1, model.__name__
