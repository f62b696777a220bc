"""REST ``/api/v1/alerts`` (incidents: firing now, then history) and ``/api/v1/alert-rules``, read-only
like the rest of the API (rules are changed on the Alerts page or with ``clawfleet-server alerts``).
Times epoch ms UTC; durations seconds."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field

from fleet_server.alerts.views import firing_counts, incident_rows, rule_rows


class IncidentOut(BaseModel):
    """One incident: a rule × subject episode (pending → firing → resolved)."""

    id: int
    rule_id: int
    rule_name: str
    kind: str = Field(description="offline | metric | gateway | error_new | error_rate | budget | server")
    severity: str = Field(description="warning | critical")
    state: str = Field(description="pending | firing | resolved")
    subject: str = Field(description="a device id, 'fleet', 'tag:<tag>', 'server' or '<device>|<fingerprint>'")
    device_id: str | None
    started_ms: int = Field(description="when the condition began")
    fired_ms: int | None
    resolved_ms: int | None
    duration_s: int = Field(description="seconds from start to end (or to now)")
    value: float | None = Field(description="in the rule's unit; offline/gateway: seconds")
    threshold: float | None
    summary: str
    period: str | None = Field(description="budgets: the day (YYYY-MM-DD) or month (YYYY-MM)")
    level_pct: int | None = Field(description="budgets: the highest step passed, percent")
    acked_by: str | None
    acked_ms: int | None
    silenced: bool = Field(description="a snooze or maintenance window held its notification back")
    notifications: int = Field(description="messages sent about it")


class AlertsOut(BaseModel):
    """Firing counts by severity, and the incidents asked for."""

    firing: dict[str, int]
    incidents: list[IncidentOut]


class AlertRuleOut(BaseModel):
    """A rule and its settings (see docs/alerts.md)."""

    id: int
    name: str
    kind: str
    scope: str = Field(description="fleet | tag:<tag> | device:<id>")
    severity: str
    settings: dict[str, Any]
    describe: str
    channels: list[int] = Field(description="channel ids; empty: every channel")
    reminder_s: int = Field(description="0: no reminders")
    enabled: bool
    created_ms: int
    updated_ms: int


def add_alert_routes(r: APIRouter) -> None:
    """Add ``GET /alerts`` and ``GET /alert-rules`` to the ``/api/v1`` router."""

    @r.get("/alerts", response_model=AlertsOut, summary="Alert incidents: firing now, optionally history")
    def get_alerts(state: Annotated[str | None, Query(description="pending, firing or resolved")] = None,
                   history: Annotated[bool, Query(description="also resolved incidents")] = False,
                   subject: str | None = None,
                   before_ms: Annotated[int | None, Query(description="resolved before this (paging)")] = None,
                   limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict:
        if state is not None and state not in ("pending", "firing", "resolved"):
            raise HTTPException(400, "state must be pending, firing or resolved")
        return {"firing": firing_counts(), "incidents": incident_rows(history=history, limit=limit, subject=subject,
                                                                      state=state, before_ms=before_ms)}

    @r.get("/alert-rules", response_model=list[AlertRuleOut], summary="Alert rules and their settings")
    def get_alert_rules() -> list[dict]:
        return rule_rows()
