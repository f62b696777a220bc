"""Every response carries the security headers and the one Content-Security-Policy: pages, the login,
/healthz, the API (also its 401), NiceGUI's static files, a 404 (NiceGUI user simulation, real SQLite)."""

from __future__ import annotations

from nicegui import __version__ as nicegui_version
from nicegui.testing.user_simulation import user_simulation

from fleet_server.auth.headers import CONTENT_SECURITY_POLICY, SECURITY_HEADERS
from fleet_server.dashboard import register_pages
from fleet_server.state import FleetState


async def test_every_response_has_the_security_headers(db, log_in):
    async with user_simulation() as user:
        register_pages(FleetState())
        get = user.http_client.get
        anonymous = [await get(p, follow_redirects=False) for p in (
            "/login", "/healthz", "/api/v1/devices", "/", "/favicon.ico",
            f"/_nicegui/{nicegui_version}/static/nicegui.js")]
        await log_in(user)
        private = [await get(p, follow_redirects=False) for p in ("/", "/tokens", "/api/v1/devices", "/no/such/page")]
    for r in anonymous + private:
        for name, value in SECURITY_HEADERS.items():
            assert r.headers.get(name) == value, (r.request.url.path, r.status_code, name)
    assert "default-src 'self'" in CONTENT_SECURITY_POLICY and "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY
    assert "http" not in CONTENT_SECURITY_POLICY, "no other site may serve code or receive data"
    assert [r.status_code for r in private] == [200, 200, 200, 404]
