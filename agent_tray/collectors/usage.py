"""Token usage (and failed model calls) from OpenClaw transcripts, both storage eras.

For every agent under ``<state>/agents/<id>/`` it reads, incrementally:

* the SQLite store ``agent/openclaw-agent.sqlite`` (2026.8+), table ``transcript_events``
  -- :mod:`agent_tray.collectors.transcripts_sqlite`;
* legacy JSONL ``sessions/<sessionId>.jsonl`` and their ``.reset``/``.deleted`` archives
  (up to 2026.7; a migrated machine may hold both) -- :mod:`agent_tray.collectors.transcripts_jsonl`.

Each assistant message becomes one :class:`UsageRecord` and each failed model call one error
:class:`LogRecord` (rules in :mod:`agent_tray.collectors.transcript_entry`); the same lines are
folded into turns and tool calls (:mod:`agent_tray.collectors.runs`). Record ids hash
(device, agent, session, transcript entry id), so the same entry read twice -- after a
restart without positions, from a JSONL file and again from the SQLite store it was migrated
into, or from a reset archive -- is the same record, and the server's idempotent insert keeps
one. Within one call, duplicates are dropped here.

Positions::

    {"v": 1, "agents": {<agent id>: {"sqlite": <transcripts_sqlite positions>,
                                     "jsonl": <transcripts_jsonl positions>,
                                     "runs": <runs.RunTracker state>}}}
"""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from agent_tray.collectors.openclaw import OpenClawPaths, locate_openclaw
from agent_tray.collectors.result import CollectResult
from agent_tray.collectors.runs import RunTracker
from agent_tray.collectors.transcript_entry import entry_records, parse_entry
from agent_tray.collectors.transcripts_jsonl import SessionsDirReader
from agent_tray.collectors.transcripts_sqlite import AgentDbReader, RawEvent
from shared.payloads import LogRecord, RunRecord, UsageRecord

log = logging.getLogger(__name__)

_MARKS = ('"role"', '"runId"')
_MARKS_B = tuple(m.encode() for m in _MARKS)
RECENT_RUNS = 5000
DEFAULT_MAX_ROWS = 20_000
DEFAULT_MAX_BYTES = 8 << 20


class UsageCollector:
    """Collects token usage records from all OpenClaw agents' transcripts.

    Args:
        paths_or_state_dir: :class:`OpenClawPaths` from :func:`locate_openclaw`, or a state
            dir (``~/.openclaw``); with a bare dir, agents are its ``agents/<id>/`` dirs.
        device_id: this device's id, part of every record id.
        max_rows: SQLite rows read per ``collect`` call, all agents together.
        max_bytes: JSONL bytes read per ``collect`` call, all agents together.

    ``stats`` counts, over the collector's life: assistant ``entries`` parsed, ``usage`` and
    ``errors`` records, ``mirrors`` skipped, ``bad`` lines/rows that were not JSON.
    """

    def __init__(self, paths_or_state_dir: OpenClawPaths | Path | str, device_id: str, *,
                 max_rows: int = DEFAULT_MAX_ROWS, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if isinstance(paths_or_state_dir, OpenClawPaths):
            self.paths = paths_or_state_dir
        else:
            self.paths = locate_openclaw({"OPENCLAW_STATE_DIR": str(Path(paths_or_state_dir).absolute()),
                                          "PATH": ""})
        self.device_id = device_id
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self.stats = {"entries": 0, "usage": 0, "errors": 0, "mirrors": 0, "bad": 0}
        self.recent_runs: OrderedDict[str, tuple[str, str]] = OrderedDict()
        """OpenClaw run id -> (agent id, session id) of the runs read lately (at most :data:`RECENT_RUNS`);
        the log collector uses it to tell this instance's log lines."""

    def collect(self, positions: dict[str, Any]) -> CollectResult:
        """Read what is new since ``positions``; return records and the positions to persist.

        A first call (``{}``) reads everything. When a call stops at its budget the positions
        change but records may remain: call again until the positions stop changing.
        """
        old_agents = positions.get("agents", {}) if positions.get("v") == 1 else {}
        agents: dict[str, Any] = {}
        usage: list[UsageRecord] = []
        logs: list[LogRecord] = []
        result = CollectResult(usage=usage, logs=logs)
        seen: set[str] = set()
        rows_left, bytes_left = self.max_rows, self.max_bytes
        now = int(time.time() * 1000)
        for agent_id in self.paths.discover_agent_ids():
            old = old_agents.get(agent_id, {}) if isinstance(old_agents.get(agent_id), dict) else {}
            runs = RunTracker(self.device_id, agent_id, json.loads(json.dumps(old.get("runs", {}))))

            def sink(ev: RawEvent, agent_id: str = agent_id, runs: RunTracker = runs) -> None:
                self._record(agent_id, ev, usage, logs, seen, runs)

            sqlite_reader = AgentDbReader(self.paths.agent_db(agent_id))
            sqlite_pos, rows = sqlite_reader.read(dict(old.get("sqlite", {})), max(rows_left, 0), sink)
            rows_left -= rows
            jsonl_pos, used = SessionsDirReader(self.paths.sessions_dir(agent_id)).read(
                dict(old.get("jsonl", {})), max(bytes_left, 0), sink)
            bytes_left -= used
            self.stats["bad"] += sqlite_reader.bad_rows
            run_records, tool_calls = runs.finish(now)
            result.runs += run_records
            result.tool_calls += tool_calls
            self._remember_runs(agent_id, runs.state, run_records)
            agents[agent_id] = {"sqlite": sqlite_pos, "jsonl": jsonl_pos, "runs": runs.state}
        for agent_id, old in old_agents.items():  # an agent dir that vanished keeps its positions
            agents.setdefault(agent_id, old)
        result.positions = {"v": 1, "agents": agents}
        return result

    def _remember_runs(self, agent_id: str, state: dict[str, Any], records: list[RunRecord]) -> None:
        pairs = [(r.run_id, r.session_id) for r in records]
        pairs += [(run["rid"], sid) for sid, st in state.items() for run in (st.get("prev"), st.get("run"))
                  if run and run.get("rid")]
        for rid, session_id in pairs:
            if rid:
                self.recent_runs[rid.lower()] = (agent_id, session_id)
                self.recent_runs.move_to_end(rid.lower())
        while len(self.recent_runs) > RECENT_RUNS:
            self.recent_runs.popitem(last=False)

    def _record(self, agent_id: str, ev: RawEvent, usage: list[UsageRecord], logs: list[LogRecord],
                seen: set[str], runs: RunTracker) -> None:
        text = ev.text
        if not any(m in text for m in (_MARKS if isinstance(text, str) else _MARKS_B)):  # type: ignore[operator]
            return  # cheap pre-filter: only messages and run markers matter
        try:
            obj = json.loads(text)
        except (ValueError, UnicodeDecodeError):
            self.stats["bad"] += 1
            return
        if not isinstance(obj, dict):
            return
        key = obj.get("id") if isinstance(obj.get("id"), str) and obj.get("id") else ev.raw_key
        runs.feed(ev.session_id, obj, key, ev.fallback_ts_ms)
        entry = parse_entry(obj)
        if entry is None:
            return
        self.stats["entries"] += 1
        if entry.is_mirror:
            self.stats["mirrors"] += 1
            return
        rec, err = entry_records(entry, device_id=self.device_id, agent_id=agent_id, session_id=ev.session_id,
                                 entry_key=entry.entry_id or ev.raw_key, fallback_ts_ms=ev.fallback_ts_ms)
        if rec is not None and rec.id not in seen:
            seen.add(rec.id)
            usage.append(rec)
            self.stats["usage"] += 1
        if err is not None and err.id not in seen:
            seen.add(err.id)
            logs.append(err)
            self.stats["errors"] += 1
