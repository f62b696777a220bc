"""``/api/v1/sessions``, ``/runs``, ``/tools``, ``/tools/summary`` and ``/versions``: OpenClaw sessions, turns,
tool calls and version drift, with the same filters (device, time range epoch ms UTC) and cursor paging as
``/api/v1/logs``. Read-only; authentication as every ``/api/v1`` route."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from fleet_server.api.schemas import RunPageOut, SessionPageOut, ToolPageOut, ToolSummaryOut
from fleet_server.state import FleetState
from fleet_server.store.sessions import drift, queries
from fleet_server.store.sql import QueryError

Since = Annotated[int | None, Query(description="epoch ms UTC, inclusive")]
Until = Annotated[int | None, Query(description="epoch ms UTC, exclusive")]
Limit = Annotated[int, Query(ge=1, le=queries.MAX_LIMIT)]


def add_session_routes(r: APIRouter, state: FleetState) -> None:
    """Add the routes to ``r`` (the ``/api/v1`` router); ``state`` gives the devices' current versions."""

    def _page(call):
        try:
            page = call()
        except QueryError as exc:
            raise HTTPException(400, str(exc)) from None
        return {"rows": page.rows, "next_cursor": page.next_cursor}

    @r.get("/sessions", response_model=SessionPageOut, summary="OpenClaw sessions per device and agent (cursor paging)")
    def get_sessions(device: str | None = None, agent: str | None = None,
                     model: Annotated[str | None, Query(description="provider/model the session used")] = None,
                     status: Annotated[str | None, Query(description="has-failed-turns, or OpenClaw's status: "
                                                                     + ", ".join(queries.SESSION_STATUSES))] = None,
                     since: Since = None, until: Until = None,
                     q: Annotated[str | None, Query(description="text in the session key, label or id")] = None,
                     sort: Annotated[str, Query(description="highest first: " + ", ".join(queries.SESSION_SORTS))]
                     = "last", cursor: str | None = None, limit: Limit = 100) -> dict:
        f = queries.SessionFilter(device, agent, model, status, since, until, q)
        return _page(lambda: queries.sessions_page(f, sort, cursor, limit))

    @r.get("/runs", response_model=RunPageOut, summary="Turns (OpenClaw runs), newest first (cursor paging)")
    def get_runs(device: str | None = None, agent: str | None = None, session: str | None = None,
                 model: str | None = None,
                 status: Annotated[str | None, Query(description=", ".join(queries.RUN_STATUSES))] = None,
                 since: Since = None, until: Until = None, cursor: str | None = None, limit: Limit = 100) -> dict:
        f = queries.RunFilter(device, agent, session, model, status, since, until)
        return _page(lambda: queries.runs_page(f, cursor, limit))

    @r.get("/tools", response_model=ToolPageOut, summary="Tool calls, newest first (cursor paging)")
    def get_tools(device: str | None = None, agent: str | None = None, session: str | None = None,
                  tool: str | None = None, errors: Annotated[bool, Query(description="only failed calls")] = False,
                  since: Since = None, until: Until = None, cursor: str | None = None, limit: Limit = 100) -> dict:
        f = queries.ToolFilter(device, agent, session, tool, errors, since, until)
        return _page(lambda: queries.tool_calls_page(f, cursor, limit))

    @r.get("/tools/summary", response_model=list[ToolSummaryOut], summary="Tool calls per tool, most failing first")
    def get_tool_summary(device: str | None = None, agent: str | None = None, since: Since = None,
                         until: Until = None,
                         by: Annotated[str, Query(description="also group by: device, agent (comma-separated)")] = "",
                         limit: Limit = 200) -> list[dict]:
        try:
            return queries.tool_summary(queries.ToolFilter(device, agent, None, None, False, since, until),
                                        tuple(b.strip() for b in by.split(",") if b.strip()), limit)
        except QueryError as exc:
            raise HTTPException(400, str(exc)) from None

    @r.get("/versions", summary="OpenClaw and agent versions across the fleet, and what each change did")
    def get_versions(kind: Annotated[str, Query(description="openclaw or agent")] = "openclaw",
                     window_days: Annotated[int, Query(ge=1, le=90)] = 7, device: str | None = None,
                     limit: Annotated[int, Query(ge=1, le=drift.MAX_CHANGES)] = 50) -> dict:
        now = int(time.time() * 1000)
        metas = [(d.device_id, d.meta.openclaw_version if d.meta else None, d.meta.agent_version if d.meta else None)
                 for d in state.snapshot()]
        try:
            return {"now": drift.fleet_versions(metas), "changes": drift.changes(kind, now, window_days, device, limit),
                    "transitions": drift.transitions(kind, now, window_days) if device is None else []}
        except QueryError as exc:
            raise HTTPException(400, str(exc)) from None
