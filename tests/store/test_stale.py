"""Stale-device decisions on SQLite and PostgreSQL: server clock, 3 × the device's interval."""

from __future__ import annotations

from history_helpers import add_device

from fleet_server.jobs.stale import RESUMED_REASON, STALE_REASON, StaleDetector
from fleet_server.state import FleetState
from fleet_server.store.history.availability import status_periods, uptime_pct
from fleet_server.store.models import Device, StatusEvent
from shared import schemas

T0 = 1_767_225_600_000


def _meta(device_id: str, interval_s: float | None) -> schemas.Meta:
    return schemas.Meta(device_id=device_id, ts=T0, hostname="h", os="Linux", agent_version="t", cpu_count=1,
                        mem_total_bytes=1, disk_total_bytes=1, boot_time_ms=T0, interval_s=interval_s)


def test_silent_device_goes_offline_after_3_intervals_and_back_when_data_resumes(store):
    clock = {"now": T0}
    add_device("fast")  # 10 s interval: stale after 30 s
    add_device("old-agent")  # no interval_s in meta: 30 s assumed, stale after 90 s
    Device.update(status="online", status_ms=T0).execute()
    state = FleetState()
    state.load_from_db()
    state.upsert("fast", meta=_meta("fast", 10), last_seen_ms=T0 + 3_600_000)  # device clock an hour ahead
    state.upsert("old-agent", meta=_meta("old-agent", None), last_seen_ms=T0)
    detector = StaleDetector(state, clock=lambda: clock["now"])
    # heard times are the server's: set them as ingest would have, at T0
    state.upsert("fast", heard_ms=T0)
    state.upsert("old-agent", heard_ms=T0)
    clock["now"] = T0 + 30_000
    assert detector.check() == []
    clock["now"] = T0 + 30_001
    assert detector.check() == [("fast", "offline")]
    view = state.get("fast")
    assert (view.status, view.status_reason, view.status_since_ms) == ("offline", STALE_REASON, T0 + 30_001)
    assert Device.get_by_id("fast").status == "offline"
    clock["now"] = T0 + 90_001
    assert detector.check() == [("old-agent", "offline")]
    # data resumes
    clock["now"] = T0 + 120_000
    state.upsert("fast", heard_ms=T0 + 119_000, last_seen_ms=T0 + 3_720_000)
    assert detector.check() == [("fast", "online")]
    assert (state.get("fast").status, state.get("fast").status_reason) == ("online", RESUMED_REASON)
    events = [(e.state, e.reason, e.ts) for e in StatusEvent.select().where(StatusEvent.device == "fast")
              .order_by(StatusEvent.ts)]
    assert events == [("offline", STALE_REASON, T0 + 30_001), ("online", RESUMED_REASON, T0 + 120_000)]
    assert detector.check() == []


def test_startup_check_marks_devices_silent_while_the_server_was_down(store):
    add_device("quiet")
    add_device("fresh")
    Device.update(status="online", status_ms=T0, last_seen_ms=T0).where(Device.id == "quiet").execute()
    Device.update(status="online", status_ms=T0, last_seen_ms=T0 + 170_000).where(Device.id == "fresh").execute()
    state = FleetState()
    state.load_from_db()
    detector = StaleDetector(state, clock=lambda: T0 + 180_000)  # the server starts 3 minutes later
    assert detector.check() == [("quiet", "offline")]  # 180 s > 90 s; "fresh" is 10 s old


def test_status_since_is_the_transition_not_the_reannouncement(store):
    add_device("dev")
    state = FleetState()
    state.load_from_db()
    state.upsert("dev", status="online", status_ms=T0)
    state.upsert("dev", status="online", status_ms=T0 + 60_000)  # re-announced after a reconnect
    assert state.get("dev").status_since_ms == T0
    state.upsert("dev", status="offline", status_reason="last-will", status_ms=T0 + 90_000)
    assert state.get("dev").status_since_ms == T0 + 90_000
    # after a restart the transition time comes from the status events
    StatusEvent.create(device="dev", ts=T0, state="online")
    StatusEvent.create(device="dev", ts=T0 + 90_000, state="offline", reason="last-will")
    Device.update(status="offline", status_ms=T0 + 95_000).execute()
    state.load_from_db()
    assert state.get("dev").status_since_ms == T0 + 90_000


def test_status_periods_and_uptime(store):
    add_device("dev")
    for ts, st, reason in ((T0, "online", None), (T0 + 600_000, "offline", "last-will"),
                           (T0 + 900_000, "online", None)):
        StatusEvent.create(device="dev", ts=ts, state=st, reason=reason)
    periods = status_periods("dev", T0 + 300_000, T0 + 1_200_000)
    assert [(p.state, p.start_ms, p.end_ms, p.reason) for p in periods] == [
        ("online", T0 + 300_000, T0 + 600_000, None), ("offline", T0 + 600_000, T0 + 900_000, "last-will"),
        ("online", T0 + 900_000, None, None)]
    assert uptime_pct(periods, T0 + 300_000, T0 + 1_200_000) == 100 * 600 / 900
    assert uptime_pct([], T0, T0 + 1) is None


class _CountingState(FleetState):
    """The real cache, counting how many device views a stale pass reads."""

    def __init__(self) -> None:
        super().__init__()
        self.read = 0

    def views(self):
        out = super().views()
        self.read += len(out)
        return out

    def get(self, device_id: str):
        self.read += 1
        return super().get(device_id)


def test_a_pass_reads_only_devices_that_are_due_or_changed(store):
    clock = {"now": T0}
    for i in range(200):
        add_device(f"d{i:03d}")
    Device.update(status="online", status_ms=T0).execute()
    state = _CountingState()
    state.load_from_db()
    state.upsert_many({f"d{i:03d}": {"heard_ms": T0 + i * 100} for i in range(200)})  # deadlines T0+90 s+i*0.1 s
    detector = StaleDetector(state, clock=lambda: clock["now"])
    assert detector.check() == []  # the first pass looks at everyone
    state.read = 0
    for _ in range(5):
        clock["now"] += 2000
        assert detector.check() == []
    assert state.read == 0  # nothing due, nothing changed: no device looked at
    state.upsert("d000", heard_ms=T0 + 30_000)  # new data from one device
    clock["now"] = T0 + 90_000 + 1050  # d001..d010 are past their deadline (d000 heard again)
    changed = detector.check()
    assert sorted(changed) == [(f"d{i:03d}", "offline") for i in range(1, 11)]
    assert state.read == 11


def test_no_device_goes_stale_while_ingest_has_no_broker_and_each_gets_its_grace_after(store):
    clock = {"now": T0}
    connected = {"up": True}
    add_device("dev")
    Device.update(status="online", status_ms=T0).execute()
    state = FleetState()
    state.load_from_db()
    state.upsert("dev", heard_ms=T0)
    detector = StaleDetector(state, clock=lambda: clock["now"], broker_connected=lambda: connected["up"])
    assert detector.check() == []
    connected["up"] = False  # the broker is gone: nobody can be heard
    for t in range(10):
        clock["now"] = T0 + 60_000 + t * 30_000
        assert detector.check() == []
    assert state.get("dev").status == "online" and Device.get_by_id("dev").status == "online"
    connected["up"] = True
    clock["now"] = reconnected = T0 + 400_000
    assert detector.check() == []  # back: the device gets 3 intervals from now to be heard
    clock["now"] = reconnected + 90_000
    assert detector.check() == []
    clock["now"] = reconnected + 90_001
    assert detector.check() == [("dev", "offline")]
