"""The incident state machine on recorded sequences (real SQLite, a settable clock): each fires and
resolves exactly once; restarts neither lose nor repeat an incident; overrides; silences."""

from __future__ import annotations

from alert_helpers import put, sample

from fleet_server.alerts.engine import AlertEngine
from fleet_server.alerts.rules import ensure_default_rules, save_rule
from fleet_server.alerts.silences import acknowledge, maintenance, snooze
from fleet_server.store.alert_models import AlertEvent, AlertIncident, AlertRule


def engine(state, clock) -> AlertEngine:
    eng = AlertEngine(state, clock=clock, settle_s=0)
    eng.load()
    return eng


def run(eng: AlertEngine, clock, seconds: int, step: float = 1.0, each=None) -> None:
    """Tick once per ``step`` seconds of the test clock for ``seconds``; ``each(t)`` before every tick."""
    t = 0.0
    while t < seconds:
        if each is not None:
            each(t)
        eng.tick()
        clock.advance(step)
        t += step


def kinds() -> list[str]:
    return [e.kind for e in AlertEvent.select().order_by(AlertEvent.id)]


def test_offline_fires_after_its_duration_and_resolves_after_the_clear_hold(db, state, clock):
    save_rule("offline", "fleet", "critical", {"for_s": 300, "clear_s": 30})
    put(state, "web-1", clock(), "online")
    eng = engine(state, clock)
    eng.tick()
    put(state, "web-1", clock(), "offline", status_reason="last-will")
    went = clock()
    run(eng, clock, 299)
    assert kinds() == []
    assert AlertIncident.get().state == "pending"
    run(eng, clock, 3)
    assert kinds() == ["firing"]
    inc = AlertIncident.get()
    assert inc.state == "firing" and inc.started_ms == went and inc.fired_ms - went in range(300_000, 302_000)
    ev = AlertEvent.get()
    assert "web-1" in ev.headline and "offline (last-will)" in ev.headline and ev.severity == "critical"
    assert "/device/web-1" in ev.text and "threshold ≥ 5 min" in ev.text
    run(eng, clock, 60)
    put(state, "web-1", clock(), "online")
    run(eng, clock, 29)
    assert kinds() == ["firing"]
    run(eng, clock, 3)
    assert kinds() == ["firing", "resolved"]
    assert AlertIncident.get().state == "resolved"
    assert "resolved after 6 min" in AlertEvent.select().order_by(AlertEvent.id.desc()).first().headline


def test_flapping_connection_fires_and_resolves_exactly_once(db, state, clock):
    save_rule("offline", "fleet", "critical", {"for_s": 120, "clear_s": 30})
    put(state, "flappy", clock(), "online")
    eng = engine(state, clock)
    # (second, status): short drops (never long enough), one long outage, then flapping back
    sequence = {0: "offline", 40: "online", 50: "offline", 100: "online", 105: "offline", 400: "online",
                410: "offline", 420: "online", 425: "offline", 435: "online"}

    def each(t: float) -> None:
        if int(t) in sequence and t == int(t):
            put(state, "flappy", clock(), sequence[int(t)], status_reason="last-will")

    run(eng, clock, 600, each=each)
    assert kinds() == ["firing", "resolved"]
    assert AlertIncident.select().count() == 1


def test_value_jittering_around_the_threshold_fires_once_with_hysteresis(db, state, clock):
    save_rule("metric", "fleet", "warning", {"metric": "disk", "op": "above", "value": 90, "clear": 85, "for_s": 60})
    values = [50, 89.9, 90.5, 89.5, 91, 89.8, 92] + [93, 94, 95] * 4 + [89, 91, 88, 90.2, 86, 92, 89.9] * 3 + [84, 60]

    put(state, "db-1", clock(), telemetry=sample("db-1", clock(), disk_pct=50.0))
    eng = engine(state, clock)
    for v in values:  # one sample every 10 s
        for _ in range(10):
            put(state, "db-1", clock(), telemetry=sample("db-1", clock(), disk_pct=float(v)))
            eng.tick()
            clock.advance(1)
    assert kinds() == ["firing", "resolved"]
    firing = AlertEvent.get(AlertEvent.kind == "firing")
    assert "disk" in firing.headline and "threshold > 90 % for 1 min" in firing.text


def test_planned_shutdown_and_pause_do_not_fire_unless_asked(db, state, clock):
    save_rule("offline", "fleet", "critical", {"for_s": 60})
    save_rule("offline", "tag:laptops", "warning", {"for_s": 60, "include_planned": True})
    put(state, "server-1", clock(), "online")
    put(state, "laptop-1", clock(), "online", tags="laptops")
    put(state, "paused-1", clock(), "online")
    eng = engine(state, clock)
    eng.tick()
    put(state, "server-1", clock(), "shutdown", status_reason="agent stopped")
    put(state, "laptop-1", clock(), "sleeping")
    put(state, "paused-1", clock(), "paused", status_reason="reporting paused")
    run(eng, clock, 120)
    fired = {e.subject for e in AlertEvent.select()}
    assert fired == {"laptop-1"}


def test_device_rule_overrides_tag_rule_overrides_fleet_rule(db, state, clock):
    save_rule("metric", "fleet", "warning", {"metric": "cpu", "value": 50, "for_s": 0})
    save_rule("metric", "tag:build", "warning", {"metric": "cpu", "value": 80, "for_s": 0})
    save_rule("metric", "device:build-7", "warning", {"metric": "cpu", "value": 99, "for_s": 0})
    for d, tags in (("web-1", ""), ("build-1", "build"), ("build-7", "build")):
        put(state, d, clock(), tags=tags, telemetry=sample(d, clock(), cpu_pct=90.0))
    eng = engine(state, clock)
    eng.tick()
    fired = {e.subject for e in AlertEvent.select()}
    assert fired == {"web-1", "build-1"}  # build-7's own rule (99 %) replaces the tag's and the fleet's


def test_a_restart_in_the_middle_neither_loses_nor_repeats_an_incident(any_db, state, clock):
    save_rule("offline", "fleet", "critical", {"for_s": 60, "clear_s": 0})
    put(state, "a", clock(), "online")
    put(state, "b", clock(), "online")
    eng = engine(state, clock)
    eng.tick()
    put(state, "a", clock(), "offline")
    put(state, "b", clock(), "offline")
    run(eng, clock, 70)  # a and b fire
    put(state, "c", clock(), "offline")
    run(eng, clock, 30)  # c is pending
    assert kinds() == ["firing", "firing"]
    eng2 = engine(state, clock)  # the "restarted" server: everything from the database
    run(eng2, clock, 40)  # c fires on time, a and b are not notified again
    assert kinds() == ["firing", "firing", "firing"]
    put(state, "a", clock(), "online")
    run(eng2, clock, 5)
    assert kinds() == ["firing", "firing", "firing", "resolved"]
    assert {(i.subject, i.state) for i in AlertIncident.select()} == {("a", "resolved"), ("b", "firing"),
                                                                      ("c", "firing")}


def test_snooze_holds_back_and_releases_when_it_ends_ack_stops_reminders(any_db, state, clock):
    save_rule("offline", "fleet", "critical", {"for_s": 0, "clear_s": 0}, reminder_s=600)
    put(state, "a", clock(), "online")
    put(state, "b", clock(), "online", tags="lab")
    eng = engine(state, clock)
    eng.tick()
    snooze("device:a", 3600, "tester", now=clock())
    maintenance("tag:lab", "tester", start_ms=clock(), end_ms=clock() + 1800_000)
    put(state, "a", clock(), "offline")
    put(state, "b", clock(), "offline")
    run(eng, clock, 60)
    assert kinds() == []
    assert AlertIncident.select().where(AlertIncident.silenced == True).count() == 2  # noqa: E712
    run(eng, clock, 1800, step=30)  # the maintenance window of b ended: notified now
    assert [e.subject for e in AlertEvent.select()] == ["b"]
    acknowledge(AlertIncident.get(AlertIncident.subject == "b").id, "tester")
    run(eng, clock, 1900, step=30)  # a's snooze ended (firing); b acknowledged: no reminder
    assert [(e.subject, e.kind) for e in AlertEvent.select()] == [("b", "firing"), ("a", "firing")]
    run(eng, clock, 700, step=30)
    assert [(e.subject, e.kind) for e in AlertEvent.select()][-1] == ("a", "reminder")
    assert ("b", "reminder") not in [(e.subject, e.kind) for e in AlertEvent.select()]


def test_recurring_maintenance_window_in_a_zone(db, state, clock):
    from fleet_server.alerts.silences import active_until
    from fleet_server.store.alert_models import AlertSilence

    # every Friday 10:00-11:00 Europe/Berlin; T0 is Friday 2026-03-20 10:46 CET (09:46 UTC)
    row = maintenance("fleet", "tester", weekdays=[4], at="10:00", duration_s=3600, zone="Europe/Berlin")
    assert active_until(AlertSilence.get_by_id(row.id), clock()) is not None
    assert active_until(AlertSilence.get_by_id(row.id), clock() + 3600_000) is None
    assert active_until(AlertSilence.get_by_id(row.id), clock() + 7 * 86400_000) is not None


def test_rules_deleted_or_disabled_close_their_incidents_quietly(db, state, clock):
    rule = save_rule("offline", "fleet", "critical", {"for_s": 0, "clear_s": 0})
    put(state, "a", clock(), "online")
    eng = engine(state, clock)
    eng.tick()
    put(state, "a", clock(), "offline")
    run(eng, clock, 5)
    assert kinds() == ["firing"]
    AlertRule.delete_by_id(rule.id)
    eng.request_reload()
    run(eng, clock, 5)
    assert kinds() == ["firing"] and AlertIncident.get().state == "resolved"


def test_fresh_install_has_default_rules_once(db):
    assert ensure_default_rules() == 6
    kinds_ = sorted(r.kind for r in AlertRule.select())
    assert kinds_ == ["gateway", "metric", "offline", "server", "server", "server"]
    AlertRule.delete().execute()
    assert ensure_default_rules() == 0 and AlertRule.select().count() == 0


def test_server_rules_broker_lost_and_data_disk(db, state, clock):
    save_rule("server", "fleet", "critical", {"check": "broker", "for_s": 60})
    save_rule("server", "fleet", "warning", {"check": "disk", "value": 90, "for_s": 0})
    status = {"broker_connected": True, "broker_down_since_ms": None, "ingest_ok": True, "disk_pct": 50.0}
    eng = AlertEngine(state, clock=clock, settle_s=0, server_status=lambda: status)
    eng.load()
    eng.tick()
    status.update(broker_connected=False, broker_down_since_ms=clock(), disk_pct=95.0)
    run(eng, clock, 59)
    assert [e.headline for e in AlertEvent.select()] == ["fleet server: data dir disk 95.0 % used for 0 s"]
    run(eng, clock, 3)
    assert "broker connection lost" in AlertEvent.select().order_by(AlertEvent.id.desc()).first().headline
    status.update(broker_connected=True, disk_pct=89.5)  # inside the 1-point hysteresis band
    run(eng, clock, 5)
    assert kinds() == ["firing", "firing", "resolved"]
    status.update(disk_pct=80.0)
    run(eng, clock, 5)
    assert kinds() == ["firing", "firing", "resolved", "resolved"]
