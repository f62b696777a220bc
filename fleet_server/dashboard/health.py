"""``GET /healthz`` (public, for load balancers and monitors): 200 ``{"ok": true, "ingest": {...}}``
while the server works, 503 with ``{"ok": false, "reason": "..."}`` when ingest is dead or stuck
(see :meth:`fleet_server.server.FleetServer.health`). It reveals no device, account or data."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.responses import JSONResponse
from nicegui import app

from fleet_server.server import ServerHealth


def install_health(check: Callable[[], ServerHealth]) -> None:
    """Serve ``/healthz`` from ``check`` (replacing the bare "web server answers" route)."""

    async def healthz() -> JSONResponse:
        h = check()
        return JSONResponse(h.as_json(), status_code=200 if h.ok else 503, headers={"Cache-Control": "no-store"})

    app.remove_route("/healthz")
    app.add_api_route("/healthz", healthz, methods=["GET"], include_in_schema=False)
