"""What the sessions, runs and tools views and ``/api/v1/sessions|runs|tools`` read.

Paging is keyset paging as for logs (:mod:`fleet_server.store.logs`): a cursor is the last row's sort
value and key, the next page is what comes strictly after it in index order, so page 1000 costs what
page 1 costs. The sessions list reads the session rows and their kept sums (never the runs), so a device
with 10,000 sessions and a million runs lists as fast as a small one.

Units: tokens; USD (``cost_usd`` of priced turns; ``unpriced_tokens`` have no price, never $0); epoch ms
UTC; seconds for durations; rates 0-100 percent.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from peewee import Case, Tuple, fn

from fleet_server.store.models import AgentRun, AgentSession, ToolCall
from fleet_server.store.sql import QueryError, total

MAX_LIMIT = 500
SESSION_SORTS = {"last": AgentSession.last_ms, "first": AgentSession.first_ms, "cost": AgentSession.cost_usd,
                 "tokens": AgentSession.total_tokens, "turns": AgentSession.turns,
                 "failed": AgentSession.failed_turns}
"""What the sessions list sorts by (newest activity, first activity, cost, tokens, turns, failed turns)."""
SESSION_STATUSES = ("running", "done", "failed", "killed", "timeout")
RUN_STATUSES = ("running", "ok", "failed", "aborted")


def encode_cursor(*values: Any) -> str:
    """Opaque cursor: URL-safe base64 of the JSON list of the last row's sort value and key."""
    return base64.urlsafe_b64encode(json.dumps(list(values), separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, n: int) -> list[Any]:
    """The ``n`` values of a cursor. Raises QueryError when it is not one of ours."""
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except ValueError:
        values = None
    if not isinstance(values, list) or len(values) != n or not all(isinstance(v, (str, int, float)) for v in values):
        raise QueryError("bad cursor; pass the next_cursor of the previous page")
    return values


@dataclass(frozen=True)
class Page:
    """One page of rows; ``next_cursor`` is None on the last page."""

    rows: list[dict]
    next_cursor: str | None


def _limit(limit: int) -> int:
    return max(1, min(MAX_LIMIT, int(limit)))


# ---- sessions --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SessionFilter:
    """Filters of the sessions list. ``status``: OpenClaw's session status, or ``has-failed-turns``;
    ``model``: a ``provider/model`` the session used (substring); ``since_ms``/``until_ms``: sessions active
    in the range (their first to last activity overlaps it); ``text``: in the session key, label or id."""

    device: str | None = None
    agent: str | None = None
    model: str | None = None
    status: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    text: str | None = None

    def where(self):
        """The filter as a peewee condition. Raises QueryError on a bad status."""
        s = AgentSession
        cond = s.device.is_null(False)
        if self.device:
            cond &= s.device == self.device
        if self.agent:
            cond &= s.agent_id == self.agent
        if self.model:
            cond &= s.models.contains(self.model[:200])
        if self.status == "has-failed-turns":
            cond &= s.failed_turns > 0
        elif self.status:
            if self.status not in SESSION_STATUSES:
                raise QueryError(f"status must be has-failed-turns or one of {', '.join(SESSION_STATUSES)}")
            cond &= s.status == self.status
        if self.since_ms is not None:
            cond &= s.last_ms >= self.since_ms
        if self.until_ms is not None:
            cond &= s.first_ms < self.until_ms
        if self.text:
            t = self.text[:200]
            cond &= s.session_key.contains(t) | s.label.contains(t) | s.session_id.contains(t)
        return cond


SESSION_FIELDS = [f for f in AgentSession._meta.sorted_fields]


def sessions_page(f: SessionFilter, sort: str = "last", cursor: str | None = None, limit: int = 100) -> Page:
    """Sessions matching ``f``, highest ``sort`` value first (``SESSION_SORTS``), ``limit`` (1-500) per page.

    Rows: the :class:`~fleet_server.store.models.AgentSession` columns, plus ``cost`` (USD, None when no
    turn was priced but tokens were used). Raises QueryError on a bad sort, filter or cursor.
    """
    if sort not in SESSION_SORTS:
        raise QueryError(f"sort must be one of {', '.join(SESSION_SORTS)}")
    col, s = SESSION_SORTS[sort], AgentSession
    cond = f.where() & col.is_null(False)
    if cursor:
        v, d, a, sid = decode_cursor(cursor, 4)
        cond &= Tuple(col, s.device, s.agent_id, s.session_id) < Tuple(v, d, a, sid)
    rows = list(s.select().where(cond).order_by(col.desc(), s.device.desc(), s.agent_id.desc(),
                                                  s.session_id.desc()).limit(_limit(limit) + 1).dicts())
    more = len(rows) > _limit(limit)
    rows = [_session_out(r) for r in rows[:_limit(limit)]]
    last = rows[-1] if rows else None
    key = SESSION_SORTS[sort].column_name
    return Page(rows, encode_cursor(last[key], last["device"], last["agent_id"], last["session_id"])
                if more and last else None)


def _session_out(r: dict) -> dict:
    r["cost"] = None if not r["priced_turns"] and r["total_tokens"] else r["cost_usd"]
    return r


def session(device: str, agent_id: str, session_id: str) -> dict | None:
    """One session row (as :func:`sessions_page` rows), or None."""
    row = AgentSession.select().where((AgentSession.device == device) & (AgentSession.agent_id == agent_id) & (
        AgentSession.session_id == session_id)).dicts().first()
    return _session_out(row) if row else None


def session_keys(pairs: set[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """``{(device, session id): session key}`` of the sessions among ``pairs`` whose key is known."""
    out: dict[tuple[str, str], str] = {}
    by_device: dict[str, list[str]] = {}
    for device, sid in pairs:
        by_device.setdefault(device, []).append(sid)
    for device, sids in by_device.items():
        for i in range(0, len(sids), 200):
            q = (AgentSession.select(AgentSession.session_id, AgentSession.session_key)
                 .where((AgentSession.device == device) & AgentSession.session_id.in_(sids[i:i + 200])
                        & (AgentSession.session_key != "")))
            out.update({(device, sid): key for sid, key in q.tuples()})
    return out


def top_sessions(since_ms: int, until_ms: int, limit: int = 20, device: str | None = None) -> list[dict]:
    """The fleet's most expensive sessions over ``[since_ms, until_ms)``: runs started in the range, summed
    per session, by cost (then tokens). Rows: ``device, agent_id, session_id, session_key, label, turns,
    failed_turns, total_tokens, cost`` (None: unpriced tokens only), ``unpriced_tokens``."""
    cost = fn.COALESCE(AgentRun.priced_usd, AgentRun.cost_usd)
    usd = total(fn.COALESCE(cost, 0))
    q = (AgentRun.select(AgentRun.device, AgentRun.agent_id, AgentRun.session_id, fn.COUNT(AgentRun.id),
                         total(Case(None, [(AgentRun.status == "failed", 1)], 0)), total(AgentRun.total_tokens),
                         usd.alias("usd"), total(Case(None, [(cost.is_null(False), 1)], 0)),
                         total(Case(None, [(cost.is_null(), AgentRun.total_tokens)], 0)))
         .where((AgentRun.started_ms >= since_ms) & (AgentRun.started_ms < until_ms))
         .group_by(AgentRun.device, AgentRun.agent_id, AgentRun.session_id)
         .order_by(usd.desc(), total(AgentRun.total_tokens).desc()).limit(_limit(limit)))
    if device:
        q = q.where(AgentRun.device == device)
    out = []
    for d, a, s, turns, failed, tokens, usd_v, priced, unpriced in q.tuples():
        info = session(d, a, s) or {}
        out.append({"device": d, "agent_id": a, "session_id": s, "session_key": info.get("session_key", ""),
                    "label": info.get("label", ""), "turns": int(turns), "failed_turns": int(failed or 0),
                    "total_tokens": int(tokens or 0), "cost": float(usd_v or 0) if priced or not tokens else None,
                    "unpriced_tokens": int(unpriced or 0)})
    return out


# ---- runs ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RunFilter:
    """Filters of the runs list: device, agent, session id, model (``provider/model`` or model, exact),
    run status, start time range (epoch ms)."""

    device: str | None = None
    agent: str | None = None
    session: str | None = None
    model: str | None = None
    status: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None

    def where(self):
        """The filter as a peewee condition. Raises QueryError on a bad status."""
        r = AgentRun
        cond = r.started_ms.is_null(False)
        for value, col in ((self.device, r.device), (self.agent, r.agent_id), (self.session, r.session_id)):
            if value:
                cond &= col == value
        if self.model:
            provider, _, model = self.model.rpartition("/")
            cond &= (r.model == model) & (r.provider == provider) if provider else r.model == model
        if self.status:
            if self.status not in RUN_STATUSES:
                raise QueryError(f"status must be one of {', '.join(RUN_STATUSES)}")
            cond &= r.status == self.status
        if self.since_ms is not None:
            cond &= r.started_ms >= self.since_ms
        if self.until_ms is not None:
            cond &= r.started_ms < self.until_ms
        return cond


def _run_out(r: dict) -> dict:
    r["duration_s"] = max(0, r["ended_ms"] - r["started_ms"]) / 1000
    r["cost"] = r["priced_usd"] if r["priced_usd"] is not None else r["cost_usd"]
    return r


def runs_page(f: RunFilter, cursor: str | None = None, limit: int = 100) -> Page:
    """Runs matching ``f``, newest start first (``started_ms``, ``device``, ``id`` descending).

    Rows: the :class:`~fleet_server.store.models.AgentRun` columns plus ``duration_s`` (seconds, start to
    newest entry) and ``cost`` (USD: rule price, else OpenClaw's; None unpriced). Raises QueryError.
    """
    cond = f.where()
    if cursor:
        ts, d, rid = decode_cursor(cursor, 3)
        cond &= Tuple(AgentRun.started_ms, AgentRun.device, AgentRun.id) < Tuple(ts, d, rid)
    rows = list(AgentRun.select().where(cond).order_by(AgentRun.started_ms.desc(), AgentRun.device.desc(),
                                                         AgentRun.id.desc()).limit(_limit(limit) + 1).dicts())
    more = len(rows) > _limit(limit)
    rows = [_run_out(r) for r in rows[:_limit(limit)]]
    last = rows[-1] if rows else None
    return Page(rows, encode_cursor(last["started_ms"], last["device"], last["id"]) if more and last else None)


def session_timeline(device: str, agent_id: str, session_id: str, limit: int = 2000) -> list[dict]:
    """A session's runs, oldest first (at most ``limit``, the newest ones), each with its ``tools``: the
    tool calls of that run, oldest first (``tool, ts, error, duration_s``)."""
    s = AgentRun
    runs = list(s.select().where((s.device == device) & (s.agent_id == agent_id) & (s.session_id == session_id))
                .order_by(s.started_ms.desc()).limit(limit).dicts())
    runs.reverse()
    calls: dict[str, list[dict]] = {}
    t = ToolCall
    q = (t.select(t.run, t.tool, t.ts, t.error, t.duration_s)
         .where((t.device == device) & (t.agent_id == agent_id) & (t.session_id == session_id)).order_by(t.ts))
    for c in q.dicts():
        calls.setdefault(c.pop("run"), []).append(c)
    return [{**_run_out(r), "tools": calls.get(r["id"], [])} for r in runs]


# ---- tool calls ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ToolFilter:
    """Filters of tool calls: device, agent, session id, tool name, only errors, time range (epoch ms)."""

    device: str | None = None
    agent: str | None = None
    session: str | None = None
    tool: str | None = None
    errors: bool = False
    since_ms: int | None = None
    until_ms: int | None = None

    def where(self):
        """The filter as a peewee condition."""
        t = ToolCall
        cond = t.ts.is_null(False)
        for value, col in ((self.device, t.device), (self.agent, t.agent_id), (self.session, t.session_id),
                           (self.tool, t.tool)):
            if value:
                cond &= col == value
        if self.errors:
            cond &= t.error == True  # noqa: E712 - peewee expression
        if self.since_ms is not None:
            cond &= t.ts >= self.since_ms
        if self.until_ms is not None:
            cond &= t.ts < self.until_ms
        return cond


def tool_calls_page(f: ToolFilter, cursor: str | None = None, limit: int = 100) -> Page:
    """Tool calls matching ``f``, newest first (``ts``, ``device``, ``id`` descending). Raises QueryError."""
    cond = f.where()
    if cursor:
        ts, d, cid = decode_cursor(cursor, 3)
        cond &= Tuple(ToolCall.ts, ToolCall.device, ToolCall.id) < Tuple(ts, d, cid)
    rows = list(ToolCall.select().where(cond).order_by(ToolCall.ts.desc(), ToolCall.device.desc(),
                                                         ToolCall.id.desc()).limit(_limit(limit) + 1).dicts())
    more = len(rows) > _limit(limit)
    rows = rows[:_limit(limit)]
    last = rows[-1] if rows else None
    return Page(rows, encode_cursor(last["ts"], last["device"], last["id"]) if more and last else None)


def tool_summary(f: ToolFilter, by: tuple[str, ...] = (), limit: int = 200) -> list[dict]:
    """Tool calls per tool (and per ``device``/``agent`` when asked), the most failing first.

    Rows: ``tool`` (+ ``device``, ``agent_id``), ``calls``, ``errors``, ``unanswered`` (no result seen),
    ``error_pct`` (0-100 of the answered calls), ``avg_duration_s``, ``max_duration_s`` (seconds, None
    when no duration is known), ``last_ms``. Raises QueryError for an unknown ``by`` key.
    """
    bad = set(by) - {"device", "agent"}
    if bad:
        raise QueryError("tools can be grouped by device and agent only")
    t = ToolCall
    keys = [t.tool] + ([t.device] if "device" in by or "agent" in by else []) + ([t.agent_id] if "agent" in by else [])
    errors = total(Case(None, [(t.error == True, 1)], 0))  # noqa: E712 - peewee expression
    q = (t.select(*keys, fn.COUNT(t.id), errors.alias("errs"), total(Case(None, [(t.error.is_null(), 1)], 0)),
                  fn.AVG(t.duration_s), fn.MAX(t.duration_s), fn.MAX(t.ts))
         .where(f.where()).group_by(*keys).order_by(errors.desc(), fn.COUNT(t.id).desc()).limit(_limit(limit)))
    out = []
    for row in q.tuples():
        key = dict(zip([k.name for k in keys], row[:len(keys)], strict=True))
        calls, errs, unanswered, avg, mx, last = row[len(keys):]
        answered = int(calls) - int(unanswered or 0)
        out.append({**key, "calls": int(calls), "errors": int(errs or 0), "unanswered": int(unanswered or 0),
                    "error_pct": round(100 * int(errs or 0) / answered, 2) if answered else None,
                    "avg_duration_s": None if avg is None else float(avg),
                    "max_duration_s": None if mx is None else float(mx), "last_ms": last})
    return out
