"""The 7-day preview replays a rule's state machine over stored history (real SQLite)."""

from __future__ import annotations

from alert_helpers import put

from fleet_server.alerts.preview import preview as run_preview
from fleet_server.alerts.preview import replay
from fleet_server.alerts.rules import RuleDef, parse_scope, validate
from fleet_server.store.models import SampleRollup5m, StatusEvent

MIN = 60_000


def rule(kind: str, params: dict, scope: str = "fleet") -> RuleDef:
    sc, model = validate(kind, scope, "warning", params)
    return RuleDef(0, "r", kind, parse_scope(scope), "warning", model)


def test_replay_holds_the_duration_the_clear_hold_and_hysteresis():
    pts = [(0, "offline"), (4 * MIN, "online"), (5 * MIN, "offline"), (20 * MIN, "online"), (20 * MIN + 10_000,
           "offline"), (20 * MIN + 20_000, "online")]
    fired = replay(pts, lambda v, _f: v == "offline", 5 * MIN, 30_000, 60 * MIN)
    assert fired == [(10 * MIN, 20 * MIN + 50_000)]


def test_offline_and_metric_previews_over_the_last_seven_days(any_db, state, clock):
    now = clock()
    for d in ("a", "b", "c"):
        put(state, d, now, "online", tags="web" if d != "c" else "")
    day = 86_400_000
    StatusEvent.insert_many([
        {"device": "a", "ts": now - 9 * day, "state": "online"},
        {"device": "a", "ts": now - 3 * day, "state": "offline", "reason": "last-will"},
        {"device": "a", "ts": now - 3 * day + 20 * MIN, "state": "online"},
        {"device": "b", "ts": now - 2 * day, "state": "offline"},
        {"device": "b", "ts": now - 2 * day + 2 * MIN, "state": "online"},  # too short
        {"device": "c", "ts": now - day, "state": "shutdown"},
        {"device": "c", "ts": now - day + 60 * MIN, "state": "online"},
    ]).execute()
    p = run_preview(rule("offline", {"for_s": 300}), state.views(), now)
    assert (p.fires, p.subjects, p.firing_ms) == (1, 1, 15 * MIN + 30_000)
    assert p.per_day == [0, 0, 0, 0, 1, 0, 0] and p.examples[0][0] == "a"
    assert "would have fired once for 1 subject(s)" in p.summary()
    assert run_preview(rule("offline", {"for_s": 300, "include_planned": True}), state.views(), now).fires == 2

    rows = []
    for i in range(12 * 24):  # one day of 5-minute averages for "a": disk 95 % from 10:00 to 12:00
        ts = now - 2 * day + i * 5 * MIN
        v = 95.0 if 120 <= i < 144 else 70.0
        rows.append({"device": "a", "bucket_ms": ts, "n": 10, **{f"{m}_{k}": 1.0 for m in (
            "cpu_pct", "mem_pct", "swap_pct", "net_rx_bps", "net_tx_bps", "load1") for k in ("avg", "max")},
            "disk_pct_avg": v, "disk_pct_max": v})
    SampleRollup5m.insert_many(rows).execute()
    p = run_preview(rule("metric", {"metric": "disk", "value": 90, "for_s": 600}, scope="tag:web"), state.views(), now)
    assert (p.fires, p.subjects) == (1, 1) and p.firing_ms == 110 * MIN and "5-minute" in p.note
