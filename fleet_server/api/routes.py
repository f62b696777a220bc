"""REST API ``/api/v1`` (read-only), served by NiceGUI's FastAPI app; OpenAPI at ``/api/openapi.json``,
interactive docs at ``/api/docs`` (Swagger UI served from a package, no CDN).

Authentication is done by the gate in front of every route (:mod:`fleet_server.auth.gate`):
a dashboard session, or an API token as ``Authorization: Bearer cft_…``. Without either: 401.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, FastAPI, HTTPException, Query
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from fleet_server.api.alerts import add_alert_routes
from fleet_server.api.schemas import (
    DeviceOut,
    FingerprintOut,
    LogPageOut,
    SamplesOut,
    StatusEventOut,
    UsageOut,
)
from fleet_server.api.sessions import add_session_routes
from fleet_server.state import DeviceView, FleetState
from fleet_server.store import logs as log_store
from fleet_server.store.history import queries as history
from fleet_server.store.sessions.queries import session_keys
from fleet_server.store.sql import QueryError
from fleet_server.store.usage import sums
from fleet_server.store.usage.sums import UsageSums
from shared.clock import now_ms
from shared.version import PROTOCOL_VERSION

API_PREFIX = "/api/v1"


def device_json(d: DeviceView, total: UsageSums) -> dict:
    """A device view and its all-time usage as :class:`fleet_server.api.schemas.DeviceOut` data."""
    drop = {"v", "device_id"}
    return {
        "device_id": d.device_id, "name": d.name, "status": d.display_status, "status_reason": d.status_reason,
        "status_ms": d.status_ms, "last_seen_ms": d.last_seen_ms,
        "tags": [t for t in d.tags.split(",") if t], "created_ms": d.created_ms, "revoked_ms": d.revoked_ms,
        "meta": d.meta.model_dump(mode="json", exclude=drop) if d.meta else None,
        "telemetry": d.telemetry.model_dump(mode="json", exclude=drop) if d.telemetry else None,
        "latest_error": ({"ts": d.latest_error.ts, "level": d.latest_error.level,
                          "subsystem": d.latest_error.subsystem, "message": d.latest_error.message}
                         if d.latest_error else None),
        "tokens_total": total.as_json(),
        "rejects": dict(d.rejects),
    }


_current: dict[str, FleetState] = {}


def build_router() -> APIRouter:
    """The ``/api/v1`` routes over the installed state (latest state) and the database (history)."""
    r = APIRouter(prefix=API_PREFIX, tags=["fleet"])

    class _StateProxy:
        def __getattr__(self, name: str) -> object:
            return getattr(_current["state"], name)

    state: FleetState = _StateProxy()  # type: ignore[assignment]

    def _device(device_id: str) -> DeviceView:
        d = state.get(device_id)
        if d is None:
            raise HTTPException(404, f"no device {device_id!r}")
        return d

    @r.get("/devices", response_model=list[DeviceOut], summary="All devices with their latest state")
    def list_devices() -> list[dict]:
        totals = sums.by_device()
        return [device_json(d, totals.get(d.device_id, UsageSums())) for d in state.snapshot()]

    @r.get("/devices/{device_id}", response_model=DeviceOut, summary="One device with its latest state")
    def get_device(device_id: str) -> dict:
        d = _device(device_id)
        return device_json(d, sums.by_device(devices=[device_id]).get(device_id, UsageSums()))

    @r.get("/devices/{device_id}/samples", response_model=SamplesOut, summary="Telemetry samples over a window")
    def get_samples(device_id: str, window: Annotated[str, Query(description="one of " + ", ".join(
            history.WINDOWS_MS))] = "1h") -> dict:
        _device(device_id)
        try:
            return history.samples_window(device_id, window, now_ms())
        except QueryError as exc:
            raise HTTPException(400, str(exc)) from None

    @r.get("/devices/{device_id}/status-events", response_model=list[StatusEventOut],
           summary="Availability changes, newest first")
    def get_status_events(device_id: str, limit: Annotated[int, Query(ge=1, le=1000)] = 200,
                          before_ms: int | None = None) -> list[dict]:
        _device(device_id)
        return history.status_events(device_id, limit, before_ms)

    @r.get("/usage", response_model=UsageOut, summary="Token usage and cost, grouped")
    def get_usage(group_by: Annotated[str, Query(description="comma-separated: device, agent, model, session, day")]
                  = "device", since: Annotated[int | None, Query(description="epoch ms UTC, inclusive")] = None,
                  until: Annotated[int | None, Query(description="epoch ms UTC, exclusive")] = None,
                  device: str | None = None,
                  tz: Annotated[str, Query(description="IANA time zone of 'day' keys")] = "UTC") -> dict:
        """Sums as every dashboard view shows them (:func:`fleet_server.store.usage.sums.usage`);
        grouping by ``agent`` or ``session`` also groups by ``device`` (an agent is a device's agent)."""
        groups = [g.strip() for g in group_by.split(",") if g.strip()]
        try:
            rows = sums.usage(groups, since, until, tz, devices=[device] if device else None)
        except QueryError as exc:
            raise HTTPException(400, str(exc)) from None
        out = [row.as_json() for row in rows]
        if "session" in groups:  # a session id alone says nothing: add the session's key (agent:main:planning)
            keys = session_keys({(r["device"], r["session"]) for r in out})
            for r in out:
                r["session_key"] = keys.get((r["device"], r["session"]), "")
        return {"group_by": groups, "since_ms": since, "until_ms": until, "tz": tz, "rows": out}

    def _filter(device: str | None, level: str | None, since: int | None, until: int | None, q: str | None,
                fingerprint: str | None) -> log_store.LogFilter:
        if level is not None and level not in log_store.LEVELS:
            raise HTTPException(400, f"level must be one of {', '.join(log_store.LEVELS)}")
        return log_store.LogFilter(device=device, min_level=level, since_ms=since, until_ms=until, text=q,
                                   fingerprint=fingerprint)

    @r.get("/logs", response_model=LogPageOut, summary="OpenClaw warnings and errors, newest first (cursor paging)")
    def get_logs(device: str | None = None,
                 level: Annotated[str | None, Query(description="this level and above")] = None,
                 since: int | None = None, until: int | None = None,
                 q: Annotated[str | None, Query(description="text the message contains (case-insensitive)")] = None,
                 fingerprint: str | None = None, cursor: str | None = None,
                 limit: Annotated[int, Query(ge=1, le=log_store.MAX_LIMIT)] = 100) -> dict:
        try:
            page = log_store.logs_page(_filter(device, level, since, until, q, fingerprint), cursor, limit)
        except log_store.LogQueryError as exc:
            raise HTTPException(400, str(exc)) from None
        return {"rows": page.rows, "next_cursor": page.next_cursor}

    @r.get("/fingerprints", response_model=list[FingerprintOut], summary="Logs grouped by fingerprint")
    def get_fingerprints(device: str | None = None, level: str | None = None, since: int | None = None,
                         until: int | None = None, q: str | None = None,
                         limit: Annotated[int, Query(ge=1, le=log_store.MAX_LIMIT)] = 100) -> list[dict]:
        return log_store.fingerprint_groups(_filter(device, level, since, until, q, None), limit)

    add_alert_routes(r)  # alerts: /alerts, /alert-rules
    add_session_routes(r, state)  # /sessions, /runs, /tools, /tools/summary, /versions
    return r


def openapi_document(app: FastAPI) -> dict:
    """The OpenAPI 3 document of the ``/api/v1`` routes."""
    routes = [rt for rt in app.routes if getattr(rt, "path", "").startswith("/api/v1/")]
    return get_openapi(title="ClawFleet API", version=f"v{PROTOCOL_VERSION}", routes=routes,
                       description="Read-only fleet API. Authenticate with a dashboard session or "
                                   "`Authorization: Bearer <API token>` (created by an admin). Times are epoch ms "
                                   "UTC; units are in the field names.")


def install_api(app: FastAPI, state: FleetState) -> None:
    """Add the ``/api/v1`` routes, ``/api/openapi.json`` and ``/api/docs`` to ``app``; a second call
    (tests) only switches the state the routes read."""
    _current["state"] = state
    if any(getattr(rt, "path", "") == f"{API_PREFIX}/devices" for rt in app.routes):
        return
    for rt in build_router().routes:  # one app route each (FastAPI >= 0.141 keeps an included router as one lazy route)
        app.add_api_route(rt.path, rt.endpoint, methods=list(rt.methods), response_model=rt.response_model,
                          summary=rt.summary, tags=rt.tags)

    async def openapi_json() -> JSONResponse:
        return JSONResponse(openapi_document(app))

    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/api/openapi.json", title="ClawFleet API",
                                   swagger_js_url=f"{DOCS_ASSETS_PATH}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{DOCS_ASSETS_PATH}/swagger-ui.css",
                                   swagger_favicon_url=f"{DOCS_ASSETS_PATH}/favicon.png")

    app.add_api_route("/api/openapi.json", openapi_json, methods=["GET"], include_in_schema=False)
    app.add_api_route("/api/docs", docs, methods=["GET"], include_in_schema=False)
    app.mount(DOCS_ASSETS_PATH, StaticFiles(directory=docs_assets_dir()), name="api-docs-assets")


DOCS_ASSETS_PATH = "/api/docs/assets"
"""Where the Swagger UI files are served (behind the same login as the API): no CDN, so the docs
work on a server without internet."""


def docs_assets_dir() -> Path:
    """The Swagger UI 5 files (``swagger-ui-bundle.js``, ``swagger-ui.css``, ``favicon.png``) that the
    ``fastapi-offline`` package ships."""
    import fastapi_offline

    return Path(fastapi_offline.__file__).parent / "static"
