"""``GET /healthz`` (public, for load balancers and monitors): 200 ``{"ok": true, "ingest": {...}}``
while the server works, 503 with ``{"ok": false, "reason": "..."}`` when ingest is dead or stuck
(see :meth:`fleet_server.server.FleetServer.health`). It reveals no device, account or data."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.responses import JSONResponse
from nicegui import app

from fleet_server.server import ServerHealth


def _web_only() -> ServerHealth:
    return ServerHealth(True)


def install_health(check: Callable[[], ServerHealth] | None = None) -> None:
    """Serve ``/healthz`` from ``check`` (None: ``{"ok": true}`` whenever the web server answers, for
    a dashboard without ingest). Registering again replaces the route (tests register pages often)."""
    check = check or _web_only

    async def healthz() -> JSONResponse:
        h = check()
        return JSONResponse(h.as_json(), status_code=200 if h.ok else 503, headers={"Cache-Control": "no-store"})

    app.remove_route("/healthz")
    app.add_api_route("/healthz", healthz, methods=["GET"], include_in_schema=False)
