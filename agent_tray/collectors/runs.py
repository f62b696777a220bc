"""Turns (OpenClaw runs) and tool calls from transcript entries, folded one entry at a time.

The entries of one session, in order (``design/openclaw.md``; pi-agent message format)::

    {"type": "message", "id": U, "message": {"role": "user", ...}}                      a turn starts
    {"type": "message", "message": {"role": "assistant", "stopReason": "toolUse",
        "content": [{"type": "toolCall", "id": "call_1", "name": "read", ...}], "usage": ...}}
    {"type": "message", "message": {"role": "toolResult", "toolCallId": "call_1", "toolName": "read",
        "isError": false, "timestamp": <epoch ms>}}
    {"type": "message", "message": {"role": "assistant", "stopReason": "stop" | "error", ...}}
    {"type": "custom", "customType": "openclaw:bootstrap-context:full", "data": {"runId": R, ...}}

What a turn is, as the real gateway writes it (both fixtures):

* OpenClaw writes one ``custom`` entry carrying the run id (``data.runId``) per model-call attempt.
  2026.9 retries a failed call inside one run: ``user, custom(R) x 9, assistant(error)`` -- one turn,
  8 retries, one error message. 2026.7 writes the user message again for every attempt:
  ``[user, assistant(error), custom(R)] x 4`` -- still one turn (same run id), 3 retries, 4 error
  messages. So a turn is a run id: a user message starts a *segment*, and a segment whose run id
  equals the previous turn's joins that turn.
* A turn's state is the stop reason of its newest assistant message: ``error`` -> failed, ``aborted``
  -> aborted, ``toolUse`` or none yet -> running, anything else (``stop``, ``length``) -> ok. A
  failed turn is counted once however many error messages it left (they are ``error_messages``).
* Delivery mirrors (``provider: openclaw``) are not model calls and are skipped, as for usage.

Incremental: the state of each session (its current turn, the previous one while a new segment
waits for its run id, tool calls waiting for their result, and the newest entry folded) is a small
JSON dict the caller keeps in its read positions. Entries at or before the newest folded entry are
skipped, so reading a session again (a rewritten SQLite session, a JSONL file migrated into SQLite)
never counts anything twice. A session's state is dropped once nothing of it was read for
:data:`STATE_TTL_MS`; later entries then start fresh (an assistant message with no user message
before it becomes a turn of its own).

Record ids: a run is ``stable_id(device, "run", agent, session, <id of its first user entry>)``, a
tool call ``stable_id(device, "tool", agent, session, <toolCallId>)`` -- the plugin's
``after_tool_call`` computes the same id, so one call seen both ways is one record.
"""

from __future__ import annotations

from typing import Any

from agent_tray.collectors.result import iso_to_ms, stable_id
from agent_tray.collectors.transcript_entry import MIRROR_MODELS, MIRROR_PROVIDER, cost_usd, normalize_usage
from shared.payloads import (
    MAX_COST_USD,
    MAX_COUNT,
    MAX_DURATION_S,
    MAX_RUN_ERROR,
    MAX_SHORT_STR,
    MAX_TOKENS,
    MAX_TS_MS,
    MIN_TS_MS,
    RunRecord,
    ToolCallRecord,
)

STATE_TTL_MS = 6 * 3_600_000
"""A session's fold state is kept this long after the last call that read an entry of it (ms, the agent's
clock)."""
PENDING_MS = 60_000
"""A segment still waiting for its run id is taken as a turn of its own once it has waited this long (ms,
the agent's clock, from the first call that ended with it waiting): OpenClaw versions that write no run
ids, or a run that died before writing one. Measured from when it was read, not from the entry's time,
so reading old transcripts in pieces never splits a turn."""
MAX_OPEN_CALLS = 200
"""Tool calls waiting for a result that one turn keeps (more are counted but not tracked)."""
_TOKEN_KEYS = ("input", "output", "cache_read", "cache_write")


def run_record_id(device_id: str, agent_id: str, session_id: str, key: str) -> str:
    """Id of a run record: hash(device, "run", agent, session, id of the turn's first entry)."""
    return stable_id(device_id, "run", agent_id, session_id, key)


def tool_call_id(device_id: str, agent_id: str, session_id: str, call_id: str) -> str:
    """Id of a tool call record: hash(device, "tool", agent, session, OpenClaw's toolCallId)."""
    return stable_id(device_id, "tool", agent_id, session_id, call_id)


def run_status(stop_reason: str) -> str:
    """``running`` / ``ok`` / ``failed`` / ``aborted`` from the newest assistant stop reason."""
    if stop_reason == "error":
        return "failed"
    if stop_reason == "aborted":
        return "aborted"
    return "running" if stop_reason in ("", "toolUse", "tool_use") else "ok"


def _ms(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    ms = int(value)
    return ms if MIN_TS_MS <= ms < MAX_TS_MS else None


def entry_ms(obj: dict[str, Any], fallback: int | None = None) -> int | None:
    """An entry's time (epoch ms): the line's ISO ``timestamp``, else the message's epoch-ms one, else
    ``fallback``. The line time is what orders a session's entries."""
    ts = iso_to_ms(obj.get("timestamp"))
    if ts is not None and MIN_TS_MS <= ts < MAX_TS_MS:
        return ts
    msg = obj.get("message")
    ts = _ms(msg.get("timestamp")) if isinstance(msg, dict) else None
    return ts if ts is not None else _ms(fallback)


def _new_run(key: str, ts: int) -> dict[str, Any]:
    return {"key": key, "rid": "", "t0": ts, "t1": ts, "pend": True, "att": 0, "msgs": 0, "errs": 0, "calls": 0,
            "terrs": 0, "tok": [0, 0, 0, 0], "cost": None, "stop": "", "prov": "", "model": "", "err": "",
            "rev": 0, "open": {}, "dirty": True}


def _absorb(into: dict[str, Any], seg: dict[str, Any]) -> None:
    """Fold a retry segment (same run id) into the turn it repeats."""
    for k in ("msgs", "errs", "calls", "terrs", "rev"):
        into[k] += seg[k]
    into["tok"] = [a + b for a, b in zip(into["tok"], seg["tok"], strict=True)]
    if seg["cost"] is not None:
        into["cost"] = (into["cost"] or 0.0) + seg["cost"]
    for k in ("stop", "prov", "model", "err"):
        if seg[k]:
            into[k] = seg[k]
    into["t1"] = max(into["t1"], seg["t1"])
    into["open"].update(seg["open"])
    into["dirty"] = True


class RunTracker:
    """Folds one agent's transcript entries into run and tool call records.

    Args:
        device_id: part of every record id.
        agent_id: the OpenClaw agent whose transcripts are folded.
        state: ``{session id: fold state}`` from the previous call's positions (updated in place).

    Feed entries with :meth:`feed` (in transcript order per session), then call :meth:`finish` once:
    it returns the records to send and leaves the state to persist in :attr:`state`.
    """

    def __init__(self, device_id: str, agent_id: str, state: dict[str, Any]) -> None:
        self.device_id = device_id
        self.agent_id = agent_id
        self.state = state
        self.tool_calls: list[ToolCallRecord] = []
        self._closed: list[tuple[str, dict[str, Any]]] = []
        self._fed: set[str] = set()

    # ---- folding ----------------------------------------------------------------------------
    def feed(self, session_id: str, obj: dict[str, Any], entry_key: str, fallback_ts: int | None) -> None:
        """Fold one decoded transcript line of ``session_id`` (any type; irrelevant ones are ignored).

        ``entry_key`` is the entry id (or the caller's stand-in for a line without one).
        """
        kind = obj.get("type")
        msg = obj.get("message")
        role = msg.get("role") if kind == "message" and isinstance(msg, dict) else None
        run_id = None
        if kind == "custom" and isinstance(obj.get("data"), dict):
            rid = obj["data"].get("runId")
            run_id = rid[:MAX_SHORT_STR] if isinstance(rid, str) and rid else None
        if role not in ("user", "assistant", "toolResult") and run_id is None:
            return
        ts = entry_ms(obj, fallback_ts)
        if ts is None:
            return
        st = self.state.setdefault(session_id, {"last": [0, []], "run": None, "prev": None})
        self._fed.add(session_id)
        last_ts, last_ids = st["last"]
        if ts < last_ts or (ts == last_ts and entry_key in last_ids):
            return  # folded before (a re-read)
        st["last"] = [ts, [*last_ids, entry_key][-20:]] if ts == last_ts else [ts, [entry_key]]
        if role == "user":
            self._user(session_id, st, entry_key, ts)
        elif run_id is not None:
            self._run_id(session_id, st, entry_key, ts, run_id)
        elif role == "assistant":
            self._assistant(session_id, st, entry_key, ts, msg)
        else:
            self._tool_result(session_id, st, entry_key, ts, msg)

    def _current(self, session_id: str, st: dict[str, Any], key: str, ts: int) -> dict[str, Any]:
        run = st["run"]
        if run is None:  # an entry with no turn before it (state expired, or a run started by the gateway)
            run = st["run"] = _new_run(key, ts)
        return run

    def _close(self, session_id: str, run: dict[str, Any] | None) -> None:
        if run is None:
            return
        for call_id, (name, call_ts) in run["open"].items():  # asked for, never answered
            self._tool(session_id, run, call_id, name, call_ts, None, None)
        run["open"] = {}
        run["pend"] = False
        self._closed.append((session_id, run))

    def _user(self, session_id: str, st: dict[str, Any], key: str, ts: int) -> None:
        run = st["run"]
        if run is not None and run["pend"]:
            run["pend"] = False  # a segment that never got a run id is a turn of its own
        self._close(session_id, st["prev"])
        st["prev"] = run
        st["run"] = new = _new_run(key, ts)
        new["rev"] = 1

    def _run_id(self, session_id: str, st: dict[str, Any], key: str, ts: int, rid: str) -> None:
        run = self._current(session_id, st, key, ts)
        prev = st["prev"]
        if run["pend"] and prev is not None and prev["rid"] == rid:
            _absorb(prev, run)  # 2026.7: the same run wrote the user message again for this attempt
            st["run"], st["prev"] = prev, None
            run = prev
        elif run["rid"] and run["rid"] != rid:  # a new run without a user message (cron, heartbeat …)
            self._close(session_id, st["prev"])
            st["prev"] = run
            run = st["run"] = _new_run(key, ts)
        if run["pend"] or not run["rid"]:
            run["rid"], run["pend"] = rid, False
            if st["prev"] is not None and st["prev"] is not run:
                self._close(session_id, st["prev"])
                st["prev"] = None
        run["att"] += 1
        run["rev"] += 1
        if not run["msgs"]:  # the end of a turn is its newest message; attempts only show it is still going
            run["t1"] = max(run["t1"], ts)
        run["dirty"] = True

    def _assistant(self, session_id: str, st: dict[str, Any], key: str, ts: int, msg: dict[str, Any]) -> None:
        provider, model = msg.get("provider"), msg.get("model")
        if provider == MIRROR_PROVIDER and model in MIRROR_MODELS:
            return
        run = self._current(session_id, st, key, ts)
        stop = msg.get("stopReason")
        stop = stop[:MAX_SHORT_STR] if isinstance(stop, str) else ""
        run["msgs"] += 1
        run["rev"] += 1
        run["t1"] = max(run["t1"], ts)
        run["stop"] = stop
        run["prov"] = provider[:MAX_SHORT_STR] if isinstance(provider, str) else run["prov"]
        run["model"] = model[:MAX_SHORT_STR] if isinstance(model, str) else run["model"]
        usage = msg.get("usage")
        tokens = normalize_usage(usage)
        if tokens is not None:
            run["tok"] = [min(MAX_TOKENS, a + b) for a, b in zip(
                run["tok"], (tokens.input, tokens.output, tokens.cache_read, tokens.cache_write), strict=True)]
            cost = cost_usd(usage, tokens)
            if cost is not None:
                run["cost"] = min(MAX_COST_USD, (run["cost"] or 0.0) + cost)
        if stop == "error":
            run["errs"] += 1
            text = msg.get("errorMessage") or msg.get("errorType") or msg.get("errorCode") or "model call failed"
            run["err"] = str(text)[:MAX_RUN_ERROR]
        content = msg.get("content")
        for part in content if isinstance(content, list) else ():
            if isinstance(part, dict) and part.get("type") in ("toolCall", "tool_use", "toolUse"):
                run["calls"] += 1
                call_id, name = part.get("id"), part.get("name")
                if isinstance(call_id, str) and call_id and len(run["open"]) < MAX_OPEN_CALLS:
                    run["open"][call_id[:MAX_SHORT_STR]] = [str(name or "?")[:MAX_SHORT_STR], ts]
        run["dirty"] = True

    def _tool_result(self, session_id: str, st: dict[str, Any], key: str, ts: int, msg: dict[str, Any]) -> None:
        run = self._current(session_id, st, key, ts)
        call_id = msg.get("toolCallId")
        call_id = call_id[:MAX_SHORT_STR] if isinstance(call_id, str) and call_id else key
        is_error = msg.get("isError") is True
        name, call_ts = run["open"].pop(call_id, [None, None])
        if name is None:  # its call was folded before this state existed
            name = msg.get("toolName")
            name = str(name)[:MAX_SHORT_STR] if name else "?"
        done = _ms(msg.get("timestamp")) or ts
        self._tool(session_id, run, call_id, name, call_ts if call_ts is not None else done, is_error,
                   None if call_ts is None else max(0.0, (done - call_ts) / 1000))
        run["terrs"] += int(is_error)
        run["rev"] += 1
        run["t1"] = max(run["t1"], ts)
        run["dirty"] = True

    def _tool(self, session_id: str, run: dict[str, Any], call_id: str, name: str, ts: int, error: bool | None,
              duration_s: float | None) -> None:
        self.tool_calls.append(ToolCallRecord(
            id=tool_call_id(self.device_id, self.agent_id, session_id, call_id), agent_id=self.agent_id[:MAX_SHORT_STR],
            session_id=session_id[:MAX_SHORT_STR], run=run_record_id(self.device_id, self.agent_id, session_id,
                                                                      run["key"]),
            ts=ts, tool=name or "?", error=error,
            duration_s=None if duration_s is None else min(duration_s, MAX_DURATION_S)))

    # ---- output -------------------------------------------------------------------------------
    def finish(self, now_ms: int) -> tuple[list[RunRecord], list[ToolCallRecord]]:
        """Records of every turn that changed since the last call, and the tool calls seen; updates
        :attr:`state` (pending segments older than :data:`PENDING_MS` are resolved, stale sessions dropped)."""
        out: dict[str, RunRecord] = {}
        for session_id, run in self._closed:
            if run.get("dirty"):
                out[run["key"] + "\x1f" + session_id] = self._record(session_id, run)
                run["dirty"] = False
        for session_id, st in list(self.state.items()):
            run = st["run"]
            if run is not None and run["pend"]:
                waiting = run.setdefault("ps", now_ms)  # when a call first ended with it still waiting
                if now_ms - waiting > PENDING_MS:
                    run["pend"] = False
                    self._close(session_id, st["prev"])
                    st["prev"] = None
            for r in (st["prev"], run):
                if r is not None and r["dirty"] and not r["pend"]:
                    out[r["key"] + "\x1f" + session_id] = self._record(session_id, r)
                    r["dirty"] = False
            if session_id in self._fed:
                st["at"] = now_ms
            elif now_ms - int(st.get("at", now_ms)) > STATE_TTL_MS:
                del self.state[session_id]
        self._closed = []
        self._fed = set()
        calls, self.tool_calls = self.tool_calls, []
        return list(out.values()), calls

    def _record(self, session_id: str, run: dict[str, Any]) -> RunRecord:
        stop = run["stop"]
        return RunRecord(
            id=run_record_id(self.device_id, self.agent_id, session_id, run["key"]),
            agent_id=self.agent_id[:MAX_SHORT_STR], session_id=session_id[:MAX_SHORT_STR], run_id=run["rid"],
            started_ms=run["t0"], ended_ms=max(run["t0"], run["t1"]), status=run_status(stop), stop_reason=stop,
            provider=run["prov"], model=run["model"], messages=min(run["msgs"], MAX_COUNT),
            error_messages=min(run["errs"], MAX_COUNT),
            retries=min(MAX_COUNT, max(run["att"] - 1, run["errs"] - 1, 0)), tool_calls=min(run["calls"], MAX_COUNT),
            tool_errors=min(run["terrs"], MAX_COUNT), input_tokens=run["tok"][0], output_tokens=run["tok"][1],
            cache_read_tokens=run["tok"][2], cache_write_tokens=run["tok"][3], cost_usd=run["cost"],
            error=run["err"], rev=min(run["rev"], MAX_COUNT))


def plugin_tool_call(device_id: str, *, agent_id: str, session_id: str, call_id: str, tool: str, done_ms: int,
                     error: bool, duration_ms: float | None) -> ToolCallRecord | None:
    """The record of a tool call reported by the plugin's ``after_tool_call`` hook (``done_ms``: when it
    returned, epoch ms), or None without a call id or session. Its id is the transcript record's, so the
    call is one record whichever arrives first (the server fills in what the other lacks)."""
    if not call_id or not session_id:
        return None
    duration_s = None if duration_ms is None else min(max(0.0, duration_ms / 1000), MAX_DURATION_S)
    start = done_ms - int((duration_s or 0) * 1000)
    if not MIN_TS_MS <= start < MAX_TS_MS:
        return None
    return ToolCallRecord(id=tool_call_id(device_id, agent_id, session_id, call_id[:MAX_SHORT_STR]),
                          agent_id=agent_id[:MAX_SHORT_STR], session_id=session_id[:MAX_SHORT_STR], ts=start,
                          tool=(tool or "?")[:MAX_SHORT_STR], error=error, duration_s=duration_s, source="plugin")
