"""REST /api/v1/alerts and /api/v1/alert-rules (token or session, read-only) and the
clawfleet_alerts_firing series of /metrics (real SQLite, NiceGUI user simulation)."""

from __future__ import annotations

from alert_helpers import fire_offline, put
from nicegui import app
from nicegui.testing.user_simulation import user_simulation
from prometheus_client.parser import text_string_to_metric_families

from fleet_server.alerts.rules import save_rule
from fleet_server.alerts.silences import acknowledge
from fleet_server.api.metrics import install_metrics
from fleet_server.auth import api_tokens
from fleet_server.dashboard import register_pages


async def test_alerts_api_and_metrics(db, state, clock):
    eng = fire_offline(state, clock, ["a", "b"], name="Device offline")
    save_rule("metric", "fleet", "warning", {"metric": "disk", "value": 90}, name="Disk full")
    eng.request_reload()
    put(state, "b", clock(), "online")
    clock.advance(1)
    eng.tick()
    inc_a = [i for i in eng.open.values() if i.subject == "a"][0]
    acknowledge(inc_a.id, "ops")
    _, token = api_tokens.create_token("script", "test")
    auth = {"Authorization": f"Bearer {token}"}
    async with user_simulation() as user:
        register_pages(state)
        install_metrics(app, state, lambda: None)
        assert (await user.http_client.get("/api/v1/alerts")).status_code == 401
        r = await user.http_client.get("/api/v1/alerts", headers=auth)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["firing"] == {"critical": 1, "warning": 0}
        assert [(i["subject"], i["state"], i["acked_by"]) for i in body["incidents"]] == [("a", "firing", "ops")]
        r = await user.http_client.get("/api/v1/alerts?history=true", headers=auth)
        assert [(i["subject"], i["state"]) for i in r.json()["incidents"]] == [("a", "firing"), ("b", "resolved")]
        assert (await user.http_client.get("/api/v1/alerts?state=nope", headers=auth)).status_code == 400
        r = await user.http_client.get("/api/v1/alert-rules", headers=auth)
        assert [(x["name"], x["kind"], x["settings"]["for_s"]) for x in r.json()] == [
            ("Device offline", "offline", 0), ("Disk full", "metric", 300)]
        assert (await user.http_client.post("/api/v1/alert-rules", headers=auth)).status_code == 403
        r = await user.http_client.get("/metrics", headers=auth)
        assert r.status_code == 200
    fams = {f.name: f for f in text_string_to_metric_families(r.text)}
    firing = {(s.labels["rule"], s.labels["severity"]): s.value for s in fams["clawfleet_alerts_firing"].samples}
    assert firing == {("Device offline", "critical"): 1.0, ("Disk full", "warning"): 0.0}
