"""Log-fingerprint rules on stored log records (real SQLite, the real insert path)."""

from __future__ import annotations

import uuid

from alert_helpers import put

from fleet_server.alerts.engine import AlertEngine
from fleet_server.alerts.rules import save_rule
from fleet_server.store.alert_models import AlertEvent, AlertIncident
from fleet_server.store.locks import write_transaction
from fleet_server.store.logs import insert_logs
from fleet_server.store.models import db


def log(device: str, ts: int, fp: str, message: str = "model call failed: 529", level: str = "error") -> None:
    row = {"device": device, "id": uuid.uuid4().hex, "ts": ts, "level": level, "subsystem": "gateway",
           "message": message, "fingerprint": fp, "source": "gateway-log", "agent_id": None, "session_id": None}
    with write_transaction(db.obj):
        insert_logs([row])


def test_a_fingerprint_new_to_the_fleet_fires_once_old_ones_and_hints_never(any_db, state, clock):
    put(state, "a", clock(), "online")
    put(state, "b", clock(), "online")
    log("a", clock() - 86400_000, "old0000000000000")  # stored before alerting looked: seeded as seen
    save_rule("error_new", "fleet", "warning", {})
    save_rule("error_new", "fleet", "warning", {"per_device": True}, name="new on a device")
    eng = AlertEngine(state, clock=clock, settle_s=0)
    eng.load()
    eng.tick()
    log("a", clock(), "old0000000000000")
    log("a", clock(), "new1111111111111", "provider anthropic: 401 invalid x-api-key")
    log("a", clock(), "hint222222222222", "[openclaw] Try: openclaw doctor")
    clock.advance(31)
    eng.tick()
    log("b", clock(), "new1111111111111", "provider anthropic: 401 invalid x-api-key")
    clock.advance(31)
    eng.tick()
    clock.advance(31)
    eng.tick()
    got = [(e.rule, e.subject, e.headline) for e in AlertEvent.select().order_by(AlertEvent.id)]
    assert [(r, s) for r, s, _ in got] == [(1, "a"), (2, "a"), (2, "b")]
    assert "new error (first on the fleet): provider anthropic: 401 invalid x-api-key" in got[0][2]
    assert AlertIncident.select().where(AlertIncident.state != "resolved").count() == 0


def test_a_fingerprint_over_its_hourly_rate_fires_and_resolves_once(any_db, state, clock):
    put(state, "a", clock(), "online")
    save_rule("error_rate", "fleet", "critical", {"per_hour": 10, "clear": 5})
    eng = AlertEngine(state, clock=clock, settle_s=0)
    eng.load()
    for minute in range(90):  # 20 per hour for 90 minutes, then none
        if minute < 60 and minute % 3 == 0:
            log("a", clock(), "loop555555555555", "agent loop: tool call failed")
        clock.advance(30)
        eng.tick()
        clock.advance(30)
        eng.tick()
    for _ in range(120):
        clock.advance(30)
        eng.tick()
    kinds = [e.kind for e in AlertEvent.select().order_by(AlertEvent.id)]
    assert kinds == ["firing", "resolved"]
    assert "occurrences" not in AlertEvent.get(AlertEvent.kind == "firing").headline
