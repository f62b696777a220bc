"""REST API /api/v1: every route refuses without a session or token and answers with either; a revoked
token is refused at once; tokens are read-only; the OpenAPI document lists every route (real SQLite,
NiceGUI user simulation, the fixtures' usage and logs)."""

from __future__ import annotations

from nicegui.testing.user_simulation import user_simulation
from typer.testing import CliRunner
from usage_seed import expected_by_agent

from fleet_server.auth import api_tokens
from fleet_server.cli.main import app as cli_app
from fleet_server.dashboard import register_pages
from fleet_server.store.models import AuditEvent

ROUTES = ["/api/v1/devices", "/api/v1/devices/oc-latest", "/api/v1/devices/oc-latest/samples?window=24h",
          "/api/v1/devices/oc-latest/status-events", "/api/v1/usage?group_by=agent", "/api/v1/logs?limit=5",
          "/api/v1/fingerprints", "/api/v1/whoami", "/api/v1/sessions", "/api/v1/runs", "/api/v1/tools",
          "/api/v1/tools/summary", "/api/v1/versions"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_every_route_needs_a_session_or_a_token(fleet_state, log_in):
    _, token = api_tokens.create_token("script", "test")
    async with user_simulation() as user:
        register_pages(fleet_state)
        for path in ROUTES + ["/metrics"]:
            r = await user.http_client.get(path)
            assert r.status_code == 401, path
            r = await user.http_client.get(path, headers=bearer("cft_not-a-real-token"))
            assert r.status_code == 401 and r.json() == {"error": "invalid or revoked API token"}, path
        for path in ROUTES:
            r = await user.http_client.get(path, headers=bearer(token))
            assert r.status_code == 200, (path, r.text)
        r = await user.http_client.get("/api/v1/whoami", headers=bearer(token))
        assert r.json() == {"username": "token:script", "role": "api"}
        # a token is no dashboard login
        r = await user.http_client.get("/tokens", headers=bearer(token), follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login")
        # read-only
        r = await user.http_client.post("/api/v1/devices", headers=bearer(token))
        assert r.status_code == 403 and r.json() == {"error": "API tokens are read-only"}
        await log_in(user)
        for path in ROUTES:
            r = await user.http_client.get(path)
            assert r.status_code == 200, (path, r.text)


async def test_revoked_token_is_refused_at_once(fleet_state):
    row, token = api_tokens.create_token("grafana", "test")
    async with user_simulation() as user:
        register_pages(fleet_state)
        assert (await user.http_client.get("/api/v1/devices", headers=bearer(token))).status_code == 200
        api_tokens.revoke_token(row.id)
        assert (await user.http_client.get("/api/v1/devices", headers=bearer(token))).status_code == 401


async def test_payloads_use_the_schema_names_and_units(fleet_state):
    _, token = api_tokens.create_token("script", "test")
    async with user_simulation() as user:
        register_pages(fleet_state)
        get = user.http_client.get
        devices = (await get("/api/v1/devices", headers=bearer(token))).json()
        assert {d["device_id"] for d in devices} == {"oc-latest", "oc-legacy"}
        dev = (await get("/api/v1/devices/oc-latest", headers=bearer(token))).json()
        assert dev["tokens_total"]["total_tokens"] == 87124 and dev["tokens_total"]["cost_usd"] is not None
        assert dev["tokens_total"]["unpriced_tokens"] == 87124
        assert "Help: openclaw --help" not in dev["latest_error"]["message"]  # the line that says what failed
        assert (await get("/api/v1/devices/nope", headers=bearer(token))).status_code == 404
        usage = (await get("/api/v1/usage?group_by=agent", headers=bearer(token))).json()
        got = {r["agent"]: {k: r[k] for k in expected_by_agent()["main"]} for r in usage["rows"]}
        assert got == expected_by_agent()
        r = (await get("/api/v1/usage?group_by=day&tz=America/Los_Angeles", headers=bearer(token))).json()
        assert [row["day"] for row in r["rows"]] == ["2026-11-20"]
        assert (await get("/api/v1/usage?group_by=colour", headers=bearer(token))).status_code == 400
        # cursor paging walks every record exactly once, newest first
        seen, cursor = [], None
        while True:
            page = (await get("/api/v1/logs", params={"limit": 7, **({"cursor": cursor} if cursor else {})},
                              headers=bearer(token))).json()
            seen += page["rows"]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert len(seen) == len({(r["device"], r["id"]) for r in seen}) > 20
        assert [r["ts"] for r in seen] == sorted((r["ts"] for r in seen), reverse=True)
        failed = [r for r in seen if r["source"] == "transcript"]
        assert failed and all(r["agent_id"] in ("main", "research") and r["session_id"] for r in failed)
        assert (await get("/api/v1/logs?cursor=!!", headers=bearer(token))).status_code == 400
        fps = (await get("/api/v1/fingerprints?level=error", headers=bearer(token))).json()
        assert fps and all(f["count"] >= 1 and f["devices"] >= 1 for f in fps)
        assert sum(f["count"] for f in fps) == len([r for r in seen if r["level"] in ("error", "fatal")])
        # sessions: keys, turns and failed turns counted per run (the legacy 429 left 4 error messages)
        sessions = (await get("/api/v1/sessions?device=oc-legacy&sort=failed", headers=bearer(token))).json()
        keys = {r["session_key"]: r for r in sessions["rows"]}
        assert set(keys) == {"agent:main:legacy-a", "agent:main:legacy-b", "agent:main:legacy-c"}
        assert (keys["agent:main:legacy-a"]["failed_turns"], keys["agent:main:legacy-a"]["error_messages"]) \
            == (1, 4)
        assert sum(r["failed_turns"] for r in sessions["rows"]) == 3
        seen_runs, cursor = [], None
        while True:
            page = (await get("/api/v1/runs", params={"limit": 4, **({"cursor": cursor} if cursor else {})},
                              headers=bearer(token))).json()
            seen_runs += page["rows"]
            if (cursor := page["next_cursor"]) is None:
                break
        assert len(seen_runs) == len({r["id"] for r in seen_runs}) == 18
        assert sum(r["status"] == "failed" for r in seen_runs) == 6
        by_session = (await get("/api/v1/usage?group_by=session", headers=bearer(token))).json()["rows"]
        assert {r["session_key"] for r in by_session if r["device"] == "oc-legacy"} == set(keys)  # not bare UUIDs
        assert (await get("/api/v1/sessions?sort=colour", headers=bearer(token))).status_code == 400
        assert (await get("/api/v1/runs?status=weird", headers=bearer(token))).status_code == 400
        assert (await get("/api/v1/tools/summary?by=colour", headers=bearer(token))).status_code == 400
        samples = (await get("/api/v1/devices/oc-latest/samples?window=7d", headers=bearer(token))).json()
        assert samples["tier"] == "1h" and samples["samples"] == []  # a 7-day window reads the 1-hour tier
        assert (await get("/api/v1/devices/oc-latest/samples?window=2y", headers=bearer(token))).status_code == 400


async def test_openapi_lists_every_route(fleet_state, log_in):
    async with user_simulation() as user:
        register_pages(fleet_state)
        await log_in(user)
        doc = (await user.http_client.get("/api/openapi.json")).json()
        paths = set(doc["paths"])
        assert paths == {"/api/v1/devices", "/api/v1/devices/{device_id}", "/api/v1/devices/{device_id}/samples",
                         "/api/v1/devices/{device_id}/status-events", "/api/v1/usage", "/api/v1/logs",
                         "/api/v1/fingerprints", "/api/v1/whoami", "/api/v1/alerts", "/api/v1/alert-rules",
                         "/api/v1/sessions", "/api/v1/runs", "/api/v1/tools", "/api/v1/tools/summary",
                         "/api/v1/versions"}
        assert "failed_turns" in doc["components"]["schemas"]["UsageRowOut"]["properties"]
        r = await user.http_client.get("/api/docs")
        assert r.status_code == 200 and "/api/openapi.json" in r.text


def test_cli_creates_lists_and_revokes_tokens(tmp_path):
    runner = CliRunner()
    data = ["--data-dir", str(tmp_path)]
    r = runner.invoke(cli_app, ["api-token", "create", "grafana", *data])
    assert r.exit_code == 0, r.output
    token = next(w for w in r.output.split() if w.startswith("cft_"))
    listing = runner.invoke(cli_app, ["api-token", "list", *data]).output
    assert "grafana" in listing and token not in listing and f"…{token[-4:]}" in listing and "active" in listing
    assert api_tokens.user_for_token(token) is not None
    assert runner.invoke(cli_app, ["api-token", "revoke", "1", *data]).exit_code == 0
    assert api_tokens.user_for_token(token) is None
    assert "revoked" in runner.invoke(cli_app, ["api-token", "list", *data]).output
    r = runner.invoke(cli_app, ["api-token", "revoke", "99", *data])
    assert r.exit_code == 2 and "no API token 99" in r.output
    actions = [e.action for e in AuditEvent.select().order_by(AuditEvent.id)]
    assert actions == ["api_token.create", "api_token.revoke"]
    assert all(token not in (e.detail + e.target) for e in AuditEvent.select())


async def test_hostile_parameters_get_400_not_500(fleet_state):
    """Integers the database cannot hold and a group_by repeated 2,000 times: a 400 naming the field,
    never a traceback."""
    import base64

    _, token = api_tokens.create_token("fuzzer", "test")
    huge = str(2**63)
    bad_cursor = base64.urlsafe_b64encode(f"{2**64}:oc-latest:x".encode()).decode()
    async with user_simulation() as user:
        register_pages(fleet_state)
        get = user.http_client.get
        for path, params in (("/api/v1/usage", {"since": huge}), ("/api/v1/usage", {"until": huge}),
                             ("/api/v1/logs", {"since": huge}), ("/api/v1/logs", {"until": "-1"}),
                             ("/api/v1/logs", {"cursor": bad_cursor}), ("/api/v1/fingerprints", {"until": huge}),
                             ("/api/v1/devices/oc-latest/status-events", {"before_ms": huge}),
                             ("/api/v1/usage", {"group_by": ",".join(["device"] * 2000)}),
                             ("/api/v1/usage", {"cursor": "!!"}), ("/api/v1/logs", {"limit": "0"})):
            r = await get(path, params=params, headers=bearer(token))
            assert r.status_code == 400, (path, params, r.status_code, r.text[:200])
            assert "Traceback" not in r.text and r.json()
        r = await get("/api/v1/usage", params={"group_by": "device,device,agent"}, headers=bearer(token))
        assert r.status_code == 200 and r.json()["group_by"] == ["device", "agent"]


async def test_usage_is_paged_by_cursor(fleet_state):
    _, token = api_tokens.create_token("script", "test")
    async with user_simulation() as user:
        register_pages(fleet_state)
        get = user.http_client.get
        everything = (await get("/api/v1/usage", params={"group_by": "device,agent,model,session"},
                                headers=bearer(token))).json()
        assert everything["next_cursor"] is None and len(everything["rows"]) > 3
        seen, cursor = [], None
        while True:
            params = {"group_by": "device,agent,model,session", "limit": 2, **({"cursor": cursor} if cursor else {})}
            page = (await get("/api/v1/usage", params=params, headers=bearer(token))).json()
            assert len(page["rows"]) <= 2
            seen += page["rows"]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == everything["rows"]
