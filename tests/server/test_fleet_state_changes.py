"""FleetState.changes_since: which devices changed after a version (what a live page redraws)."""

from __future__ import annotations

from fleet_server.state import FleetState


def test_changes_since_names_the_changed_devices_and_asks_for_a_full_redraw_after_a_removal():
    state = FleetState()
    state.upsert_many({"a": {"status": "online"}, "b": {"status": "online"}, "c": {}})
    v0, changed = state.changes_since(0)
    assert changed == {"a", "b", "c"}
    assert state.changes_since(v0) == (v0, set())  # nothing since: an empty set, not None

    state.upsert("b", status="offline", status_reason="last-will")
    v1, changed = state.changes_since(v0)
    assert v1 > v0 and changed == {"b"}
    state.count_reject("c", "schema")
    state.upsert("a", last_seen_ms=1)
    v2, changed = state.changes_since(v1)
    assert changed == {"a", "c"}
    assert state.changes_since(v0)[1] == {"a", "b", "c"}  # an older reader gets everything since its version

    state.remove("c")
    v3, changed = state.changes_since(v2)
    assert changed is None and v3 > v2  # removed: redraw all
    assert state.changes_since(v3) == (v3, set())
    state.upsert("a", status="online")
    assert state.changes_since(v3)[1] == {"a"}


def test_stored_usage_changes_the_device_and_the_usage_version():
    state = FleetState()
    state.upsert_many({"a": {}, "b": {}})
    v, _ = state.changes_since(0)
    before, view = state.usage_version, state.get("a")
    state.note_usage({"a", "unknown"})
    assert state.changes_since(v)[1] == {"a"} and state.usage_version == before + 1
    assert state.get("a") is not view and state.get("a").usage_ms  # a new view: its overview row is rebuilt
    state.note_usage(None)  # re-priced: every device
    assert state.changes_since(v)[1] == {"a", "b"}
