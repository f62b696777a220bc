"""Store sessions, runs and tool calls (inside the ingest writer's transaction), and version changes.

- **Runs** are keyed by ``(device, id)``. An agent sends a run again as it progresses; the stored row is
  replaced by a record with an equal or higher ``rev`` (a lower one is a late resend: ignored).
- **Sessions** are keyed by ``(device, agent_id, session_id)``. Their index fields (key, channel, label,
  OpenClaw's status) come from session records, newest ``updated_ms`` wins; their sums (turns, failed
  turns, error messages, retries, tool calls, tokens, cost) move by the difference between a run's stored
  and new revision, so they always equal the sum of the session's stored runs without re-reading them.
- **Tool calls** are keyed by ``(device, id)``; the transcript and the plugin give the same id, and the
  second one only fills in what the first lacked (its run, outcome or duration).

Units: tokens; USD; epoch ms UTC; seconds for durations.

TODO(cardinality): bound the distinct sessions/runs one device may introduce per day with the
per-device cardinality bounds (models/agents/sessions) once they are on main; until then the schema's
per-message bounds (500 records of 256 KiB) are the only limit.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fleet_server.store.bulk import CHUNK, executemany, insert_new
from fleet_server.store.models import AgentRun, AgentSession, ToolCall, VersionChange
from fleet_server.store.sessions.costs import run_cost
from fleet_server.store.usage.prices import price_rows

RUN_COLS = ("device", "id", "agent_id", "session_id", "run_id", "started_ms", "ended_ms", "status", "stop_reason",
            "provider", "model", "messages", "error_messages", "retries", "tool_calls", "tool_errors",
            "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "total_tokens", "cost_usd",
            "priced_usd", "error", "rev")
SUMS = ("error_messages", "retries", "tool_calls", "tool_errors", "input_tokens", "output_tokens",
        "cache_read_tokens", "cache_write_tokens", "total_tokens")
"""Run fields a session sums as they are."""
INDEX_FIELDS = ("session_key", "channel", "chat_type", "label", "status", "started_ms", "updated_ms")
SESSION_COLS = tuple(f.column_name for f in AgentSession._meta.sorted_fields)
TOOL_COLS = ("device", "id", "agent_id", "session_id", "run", "ts", "tool", "error", "duration_s", "source")
MAX_MODELS_TEXT = 500


def _zero_run() -> dict[str, Any]:
    return {"status": "", "cost": None, **{k: 0 for k in SUMS}}


def _new_session(device: str, agent_id: str, session_id: str) -> dict[str, Any]:
    row = {c: f.default for c, f in zip(SESSION_COLS, AgentSession._meta.sorted_fields, strict=True)}
    row.update(device=device, agent_id=agent_id, session_id=session_id)
    return row


def _select(model: Any, keys: list[tuple], key_fields: tuple[str, ...]) -> dict[tuple, dict]:
    """Stored rows of ``model`` for ``keys`` (tuples of ``key_fields``), one query per device chunk."""
    out: dict[tuple, dict] = {}
    by_device: dict[str, list[tuple]] = {}
    for k in keys:
        by_device.setdefault(k[0], []).append(k)
    last = key_fields[-1]
    for device, ks in by_device.items():
        for i in range(0, len(ks), CHUNK):
            part = set(ks[i:i + CHUNK])
            q = model.select().where((model.device == device) & getattr(model, last).in_([k[-1] for k in part]))
            for row in q.dicts():
                key = tuple(row[f] for f in key_fields)
                if key in part:
                    out[key] = row
    return out


def store_activity(sessions: list[dict], runs: list[dict], tool_calls: list[dict]) -> dict[str, int]:
    """Store one batch's session, run and tool call records (dicts of the schema fields plus ``device``).

    Must run inside the caller's transaction. Returns ``{"runs": n, "sessions": n, "tool_calls": n}`` rows
    written (new or changed).
    """
    changed_runs = _runs(runs)
    written_sessions = _sessions(sessions, changed_runs)
    return {"runs": len(changed_runs), "sessions": written_sessions, "tool_calls": _tool_calls(tool_calls)}


def _runs(runs: list[dict]) -> list[tuple[dict | None, dict]]:
    """Upsert runs; returns ``(stored before or None, new)`` for each run that changed."""
    latest: dict[tuple, dict] = {}
    for r in runs:  # the newest revision of each run in the batch
        key = (r["device"], r["id"])
        if key not in latest or r["rev"] >= latest[key]["rev"]:
            latest[key] = r
    stored = _select(AgentRun, list(latest), ("device", "id"))
    rows = [{**r, "ts": r["started_ms"]} for r in latest.values()]
    price_rows(rows)
    changed = []
    for r in rows:
        del r["ts"]
        old = stored.get((r["device"], r["id"]))
        if old is not None and (old["rev"] > r["rev"] or all(old[c] == r.get(c) for c in RUN_COLS)):
            continue
        changed.append((old, r))
    new = [tuple(r[c] for c in RUN_COLS) for old, r in changed if old is None]
    insert_new(AgentRun, RUN_COLS, new)
    sets = ", ".join(f'"{c}" = ?' for c in RUN_COLS[2:])
    executemany(f'UPDATE "agent_run" SET {sets} WHERE "device" = ? AND "id" = ?',  # noqa: S608 - model columns
                [tuple(r[c] for c in RUN_COLS[2:]) + (r["device"], r["id"]) for old, r in changed if old is not None])
    return changed


def _sessions(index: list[dict], changed_runs: list[tuple[dict | None, dict]]) -> int:
    """Apply session index records and run changes to the session rows; returns rows written."""
    keys = {(s["device"], s["agent_id"], s["session_id"]) for s in index}
    keys |= {(r["device"], r["agent_id"], r["session_id"]) for _, r in changed_runs}
    stored = _select(AgentSession, sorted(keys), ("device", "agent_id", "session_id"))
    rows = {k: dict(stored[k]) if k in stored else _new_session(*k) for k in keys}
    for s in sorted(index, key=lambda s: s["updated_ms"]):
        row = rows[(s["device"], s["agent_id"], s["session_id"])]
        if row["updated_ms"] is None or s["updated_ms"] >= row["updated_ms"]:
            row.update({f: s[f] for f in INDEX_FIELDS if f in s})
    for old, new in changed_runs:
        _apply_run(rows[(new["device"], new["agent_id"], new["session_id"])], old, new)
    for row in rows.values():  # a session known only from its index entry: active when it was updated
        if row["last_ms"] is None and row["updated_ms"] is not None:
            row["last_ms"] = row["updated_ms"]
        if row["first_ms"] is None and row["last_ms"] is not None:
            row["first_ms"] = row["started_ms"] or row["last_ms"]
    fresh = [k for k in keys if k not in stored]
    insert_new(AgentSession, SESSION_COLS, [tuple(rows[k][c] for c in SESSION_COLS) for k in fresh])
    sets = ", ".join(f'"{c}" = ?' for c in SESSION_COLS[3:])
    executemany(f'UPDATE "agent_session" SET {sets} WHERE "device" = ? AND "agent_id" = ? AND "session_id" = ?',  # noqa: S608
                [tuple(rows[k][c] for c in SESSION_COLS[3:]) + k for k in keys if k in stored and rows[k] != stored[k]])
    return len(fresh) + sum(1 for k in keys if k in stored and rows[k] != stored[k])


def _apply_run(row: dict, old: dict | None, new: dict) -> None:
    """Move a session row's sums by the difference between a run's stored and new revision."""
    before = old or _zero_run()
    for k in SUMS:
        row[k] += new[k] - before[k]
    row["turns"] += 0 if old else 1
    row["failed_turns"] += int(new["status"] == "failed") - int(before["status"] == "failed")
    was, now = (run_cost(old) if old else None), run_cost(new)
    row["cost_usd"] += (now or 0.0) - (was or 0.0)
    row["priced_turns"] += int(now is not None) - int(old is not None and was is not None)
    row["unpriced_tokens"] += (new["total_tokens"] if now is None else 0) - (
        before["total_tokens"] if old is not None and was is None else 0)
    row["first_ms"] = new["started_ms"] if row["first_ms"] is None else min(row["first_ms"], new["started_ms"])
    row["last_ms"] = new["ended_ms"] if row["last_ms"] is None else max(row["last_ms"], new["ended_ms"])
    model = f"{new['provider']}/{new['model']}" if new["provider"] else new["model"]
    models = [m for m in row["models"].split(",") if m]
    if model and model not in models and len(",".join([*models, model])) <= MAX_MODELS_TEXT:
        row["models"] = ",".join([*models, model])
    if new["error"] and (row["latest_error_ms"] is None or new["ended_ms"] >= row["latest_error_ms"]):
        row["latest_error"], row["latest_error_ms"] = new["error"], new["ended_ms"]


def _tool_calls(calls: list[dict]) -> int:
    """Insert new tool calls; fill in the run, outcome or duration a stored one lacks. Returns rows written."""
    first: dict[tuple, dict] = {}
    for c in calls:
        first.setdefault((c["device"], c["id"]), c)
    stored = _select(ToolCall, list(first), ("device", "id"))
    new = [tuple(c[k] for k in TOOL_COLS) for key, c in first.items() if key not in stored]
    insert_new(ToolCall, TOOL_COLS, new)
    fills = []
    for key, c in first.items():
        old = stored.get(key)
        if old is None:
            continue
        merged = (old["run"] or c["run"], old["error"] if old["error"] is not None else c["error"],
                  old["duration_s"] if old["duration_s"] is not None else c["duration_s"])
        if merged != (old["run"], old["error"], old["duration_s"]):
            fills.append((*merged, *key))
    executemany('UPDATE "tool_call" SET "run" = ?, "error" = ?, "duration_s" = ? WHERE "device" = ? AND "id" = ?',
                fills)
    return len(new) + len(fills)


def record_versions(seen: Iterable[tuple[str, int, str, str | None, str | None]]) -> int:
    """Store version changes ``(device, ts, kind, old version, new version)`` where new differs from old
    (a first report has old None). Returns rows stored."""
    rows = [(d, ts, kind, old, new) for d, ts, kind, old, new in seen if new and new != old]
    insert_new(VersionChange, ("device", "ts", "kind", "old_version", "new_version"), rows)
    return len(rows)
