"""Follow OpenClaw's gateway file log and keep its warnings and errors.

OpenClaw (tslog) writes one JSON object per line to ``openclaw-YYYY-MM-DD.log`` (host-local
date) in ``/tmp/openclaw`` or ``$TMPDIR/openclaw-<uid>`` (or ``logging.file``), rotates at
100 MB to ``….1.log`` … ``….5.log`` and prunes files after 24 h, so it must be read promptly.
A line (``design/openclaw.md`` "Logs")::

    {"0": "{\"subsystem\":\"agent/embedded\"}", "1": {...}, "2": "embedded run agent end",
     "_meta": {"logLevelId": 4, "logLevelName": "WARN", "name": "{\"subsystem\":\"agent/embedded\"}",
               "date": "2026-11-21T04:11:09.382Z", ...},
     "time": "2026-11-21T04:11:09.382+00:00", "message": "embedded run agent end", ...}

Parsed with OpenClaw's own rules: level = ``_meta.logLevelName`` lower-cased (``logLevelId``
when the name is missing), subsystem = ``json.loads(_meta.name)["subsystem"]``, message =
``message`` or the positional args joined (objects as JSON), time = ``time`` or
``_meta.date``. One addition: OpenClaw leaves a leading object argument out of ``message``
(``embedded run agent end`` keeps the error and provider only in ``"1"``); such objects are
appended to the message as compact JSON so the record says what failed.

**Positions** ``{"v": 1, "files": {<identity>: {"off", "tail", "name", "seen" (day number)}}}``: identity is
the first-line hash (see :mod:`agent_tray.collectors.follow`), which survives rotation renames,
restarts and copy-truncate; a truncated or replaced file is a new identity read from byte 0.

**Record ids** ``stable_id(device, "log", identity, byte offset of the line)``: the same line
gets the same id whichever name the file has when read (``x.log`` or ``x.1.log``) and however
often it is re-read, and two identical lines at different offsets stay distinct.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent_tray.collectors import follow
from agent_tray.collectors.log_owner import FOREIGN, OURS, Line, Ownership, cli_blocks, line_marks
from agent_tray.collectors.result import CollectResult, iso_to_ms, short_hash, stable_id
from shared.payloads import MAX_LOG_MESSAGE, MAX_SHORT_STR, MAX_TS_MS, MIN_TS_MS, LogRecord

log = logging.getLogger(__name__)

MAX_MESSAGE_CHARS = MAX_LOG_MESSAGE
LEVELS = {"trace": 1, "debug": 2, "info": 3, "warn": 4, "error": 5, "fatal": 6}
_LEVEL_ALIASES = {"silly": "trace", "warning": "warn", "err": "error", "critical": "fatal"}
_LEVEL_BY_ID = {0: "trace", 1: "trace", 2: "debug", 3: "info", 4: "warn", 5: "error", 6: "fatal"}
LOG_NAME_RE = re.compile(r"^openclaw-\d{4}-\d{2}-\d{2}(?:\.\d{1,2})?\.log$")
DEFAULT_MAX_BYTES = 4 << 20
FORGET_AFTER_DAYS = 7
"""A position whose file has not been seen for this many days is dropped."""
HOLD_MS = 120_000
"""A shared file's line that names no instance yet waits this long for its trace to be decided (ms)."""
TRACE_KEEP_MS = 3_600_000
"""Trace owners are remembered this long after their newest line (ms)."""
MAX_TRACES = 2000
"""Trace owners remembered at most."""


@dataclass(frozen=True)
class LogLine:
    """One parsed log line: level name, subsystem ('' if none), message, time (epoch ms)."""

    level: str
    subsystem: str
    message: str
    ts_ms: int | None


_FP_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`|“[^”]*”'), "<q>"),
    (re.compile(r"\b[a-z][a-z0-9+.-]*://\S+", re.I), "<url>"),
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I), "<uuid>"),
    (re.compile(r"(?:\b[A-Za-z]:|~|\.{1,2})?(?:[\\/][\w.@%+~-]+){2,}[\\/]?"), "<path>"),
    (re.compile(r"\b0x[0-9a-f]+\b|\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{6,}\b", re.I), "<hex>"),
    (re.compile(r"\b\d+(?:\.\d+)?\s?(?:ns|us|µs|ms|s|sec|secs|seconds?|m|min|mins|minutes?|h|hrs?|"
                r"hours?|d|days?)\b", re.I), "<dur>"),
    (re.compile(r"\d+(?:\.\d+)?"), "<n>"),
    (re.compile(r"\s+"), " "),
]


def fingerprint(message: str) -> str:
    """Group key of a message: hash of it with the variable parts replaced.

    Quoted values, URLs, UUIDs, paths, hex ids (6+ hex chars with a digit and a letter, or
    ``0x…``), durations (``84648ms``, ``2 s``) and remaining numbers are replaced by
    placeholders, whitespace is collapsed, then the first 4000 characters are hashed (32 hex
    chars). ``"retry 3/8 delayMs=754"`` and ``"retry 4/8 delayMs=1357"`` share a fingerprint.
    """
    text = message[:MAX_MESSAGE_CHARS]
    for pattern, repl in _FP_RULES:
        text = pattern.sub(repl, text)
    return short_hash(text.strip().encode("utf-8", "replace"), 32)


def _level(meta: dict[str, Any]) -> str | None:
    name = meta.get("logLevelName")
    if isinstance(name, str) and name:
        lowered = name.lower()
        lowered = _LEVEL_ALIASES.get(lowered, lowered)
        if lowered in LEVELS:
            return lowered
    level_id = meta.get("logLevelId")
    return _LEVEL_BY_ID.get(level_id) if isinstance(level_id, int) else None


def _subsystem(meta: dict[str, Any]) -> str:
    name = meta.get("name")
    if isinstance(name, str) and name.startswith("{"):
        try:
            parsed = json.loads(name)
        except ValueError:
            return ""
        sub = parsed.get("subsystem") if isinstance(parsed, dict) else None
        return sub if isinstance(sub, str) else ""
    return ""


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def parse_log_line(line: str | bytes) -> LogLine | None:
    """Parse one gateway log line with OpenClaw's rules; ``None`` for a non-JSON line.

    Reads ``_meta.logLevelName``/``logLevelId``, ``_meta.name`` (subsystem), ``message`` or
    the positional keys ``"0"``, ``"1"``, …, and ``time``/``_meta.date`` (ISO -> epoch ms).
    """
    try:
        obj = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(obj, dict):
        return None
    meta = obj.get("_meta") if isinstance(obj.get("_meta"), dict) else {}
    level = _level(meta)
    if level is None:
        return None
    positional = sorted((int(k), v) for k, v in obj.items() if k.isdigit())
    args = [v for _, v in positional]
    if args and isinstance(args[0], str) and args[0].startswith('{"subsystem"'):
        args = args[1:]  # the subsystem marker a child logger puts in "0"
    message = obj.get("message")
    if isinstance(message, str):
        extra = [t for t in (_as_text(a) for a in args if isinstance(a, (dict, list))) if t not in message]
        if extra:
            message = " ".join([message, *extra]).strip()
    else:
        message = " ".join(_as_text(a) for a in args)
    ts = iso_to_ms(obj.get("time"))
    if ts is None:
        ts = iso_to_ms(meta.get("date"))
    return LogLine(level=level, subsystem=_subsystem(meta), message=message[:MAX_MESSAGE_CHARS], ts_ms=ts)


def _name_re(names: Iterable[str]) -> re.Pattern[str]:
    alts = "|".join(re.escape(n) for n in names)
    return re.compile(rf"^(?:{alts})-\d{{4}}-\d{{2}}-\d{{2}}(?:\.\d{{1,2}})?\.log$")


def _candidate_files(sources: Iterable[Path], names: Iterable[str] = ("openclaw",)) -> list[tuple[Path, bool]]:
    """Log files in the candidate dirs, and explicit ``logging.file`` paths with their rotations, each with
    True when it lies in a machine-wide dir (shared by every instance) rather than being a named file.

    A path that does not exist counts as a file path only when it has a suffix (``x.log``);
    an absent dir (``/tmp/openclaw`` before the gateway's first start) yields nothing.
    """
    found: dict[str, tuple[Path, bool]] = {}
    name_re = _name_re(names)
    for src in sources:
        try:
            if src.is_dir():
                for p in src.iterdir():
                    if name_re.match(p.name) and p.is_file():
                        found[str(p)] = (p, True)
            elif (src.is_file() or src.suffix) and src.parent.is_dir():  # a logging.file path
                stem, suffix = src.stem, src.suffix
                rotated = re.compile(rf"^{re.escape(stem)}(?:\.\d{{1,2}})?{re.escape(suffix)}$")
                for p in src.parent.iterdir():
                    if rotated.match(p.name) and p.is_file():
                        found[str(p)] = (p, False)
        except OSError:
            continue
    return list(found.values())


class LogCollector:
    """Follows OpenClaw gateway logs and returns this instance's warnings/errors as :class:`LogRecord`.

    Args:
        log_dirs: candidate log directories (``OpenClawPaths.log_dirs``); a path to a file
            (``logging.file``) follows that file and its numbered rotations.
        device_id: this device's id, part of every record id.
        min_level: lowest level kept: ``trace``, ``debug``, ``info``, ``warn`` (default),
            ``error`` or ``fatal``.
        max_bytes: read budget per ``collect`` call (bytes, default 4 MiB); the rest is read
            on the next call.
        names: file-name stems in the dirs (``OpenClawPaths.log_names``).
        ownership: tells this instance's lines from other instances' (:mod:`agent_tray.collectors.log_owner`);
            None keeps every line (no attribution, tests of the parser).

    With ``ownership``, a line is kept when it is this instance's: in a file of a machine-wide dir only
    when it names this instance (its sessions, runs, gateway pid, state-dir paths) or shares its trace
    with a line that does; in a named ``logging.file`` unless it names another instance. Never a line
    older than the state dir. A line of a shared file that names nothing yet and was written less than
    :data:`HOLD_MS` ago is read again on the next call (its trace may still be decided).

    ``stats`` counts, over the collector's life, ``lines`` read, ``non_json`` lines skipped
    (not JSON, or no level), ``bad_time`` lines at/above the threshold without a usable time,
    ``kept`` records, and of the lines at/above the threshold ``foreign`` (another instance's),
    ``unattributed`` (a shared file's lines that name no instance) and ``before_state_dir``.
    """

    def __init__(self, log_dirs: Iterable[Path | str], device_id: str, min_level: str = "warn",
                 max_bytes: int = DEFAULT_MAX_BYTES, *, names: Iterable[str] = ("openclaw",),
                 ownership: Ownership | None = None) -> None:
        level = _LEVEL_ALIASES.get(min_level.lower(), min_level.lower())
        if level not in LEVELS:
            raise ValueError(f"min_level must be one of {', '.join(LEVELS)}, not {min_level!r}")
        self.log_dirs = [Path(d) for d in log_dirs]
        self.device_id = device_id
        self.min_level = LEVELS[level]
        self.max_bytes = max_bytes
        self.names = tuple(names)
        self.ownership = ownership
        self.stats = {"lines": 0, "non_json": 0, "bad_time": 0, "kept": 0, "foreign": 0, "unattributed": 0,
                      "before_state_dir": 0}

    def collect(self, positions: dict[str, Any]) -> CollectResult:
        """Read new complete lines of every log file; return kept records and new positions.

        Files are read oldest first (by mtime, then name) until the byte budget is spent.
        """
        ok = positions.get("v") == 1
        old = positions.get("files", {}) if ok else {}
        files: dict[str, dict[str, Any]] = {k: dict(v) for k, v in old.items() if isinstance(v, dict)}
        traces: dict[str, list[Any]] = dict(positions.get("traces", {})) if ok else {}
        if self.ownership is not None:
            for pid, first in (positions.get("pids", {}) if ok else {}).items():
                self.ownership.pids.setdefault(int(pid), int(first))
            self.ownership.note_gateway()
        today = int(time.time() // 86400)
        budget = self.max_bytes
        records: list[LogRecord] = []
        by_identity: dict[str, tuple[float, str, int, Path, bool]] = {}
        for path, shared in _candidate_files(self.log_dirs, self.names):
            st = follow.stat_or_none(path)
            first = follow.read_first_line(path) if st else None
            if st is None or first is None:
                continue
            key = follow.identity(first)
            best = by_identity.get(key)
            if best is None or st.st_size > best[2]:  # a copy (copy-truncate): read the larger
                by_identity[key] = (st.st_mtime, path.name, st.st_size, path, shared)
        for key, (_, _, _, path, shared) in sorted(by_identity.items(), key=lambda kv: kv[1][:2]):
            pos = files.get(key, {})
            entry = {"off": int(pos.get("off", 0)), "tail": str(pos.get("tail", "")), "name": path.name,
                     "seen": today}
            files[key] = entry
            if budget <= 0:
                continue
            try:
                chunk = follow.read_lines(path, entry["off"], entry["tail"], budget)
            except OSError as exc:
                log.debug("cannot read %s: %s", path, exc)
                continue
            if chunk.restarted:
                log.info("log file %s changed under its position; reading it again from the start", path)
            budget -= max(0, chunk.end - (0 if chunk.restarted else entry["off"]))
            kept, cut = self._records(key, chunk.lines, shared, traces)
            records.extend(kept)
            if cut is None:
                entry["off"], entry["tail"] = chunk.end, chunk.tail
            elif cut != (0 if chunk.restarted else entry["off"]):
                try:
                    entry["off"], entry["tail"] = cut, follow.tail_at(path, cut)
                except OSError:
                    pass
            elif chunk.restarted:
                entry["off"], entry["tail"] = 0, ""
        for key in [k for k, v in files.items() if today - int(v.get("seen", 0)) > FORGET_AFTER_DAYS]:
            del files[key]
        out: dict[str, Any] = {"v": 1, "files": files}
        if self.ownership is not None:
            horizon = int(time.time() * 1000) - TRACE_KEEP_MS
            out["traces"] = dict(sorted(((t, v) for t, v in traces.items() if v[5] >= horizon),
                                        key=lambda kv: kv[1][5])[-MAX_TRACES:])
            out["pids"] = {str(p): ms for p, ms in self.ownership.pids.items()}
        return CollectResult(usage=[], logs=records, positions=out)

    def _parse(self, lines: list[tuple[int, bytes]]) -> list[Line]:
        out = []
        for offset, raw in lines:
            if not raw.strip():
                continue
            self.stats["lines"] += 1
            try:
                obj = json.loads(raw)
            except (ValueError, UnicodeDecodeError):
                obj = None
            parsed = parse_log_line(raw) if isinstance(obj, dict) else None
            if parsed is None:
                self.stats["non_json"] += 1
            marks = line_marks(obj, raw.decode("utf-8", "replace")) if (
                parsed is not None and self.ownership is not None) else None
            out.append(Line(offset, raw, parsed, marks))
        return out

    def _attribute(self, lines: list[Line], shared: bool, traces: dict[str, list[Any]]) -> int | None:
        """Decide each line's owner (and what it is about); returns the offset of the first line of a
        shared file that must wait for more context, or None."""
        own = self.ownership
        assert own is not None
        now = int(time.time() * 1000)
        own.check_sessions({s for ln in lines if ln.marks for s in ln.marks.sessions})
        for ln in lines:
            if ln.marks is None:
                continue
            young = ln.parsed is not None and ln.parsed.ts_ms is not None and now - ln.parsed.ts_ms < HOLD_MS
            ln.owner = own.decide(ln.marks, young)
            own.learn(ln.marks, ln.owner)
            if ln.owner is not None:
                ln.about = own.about(ln.marks) if ln.owner == OURS else ln.about
                t = ln.marks.trace
                if t and (t not in traces or traces[t][0] != OURS or ln.owner == OURS):
                    prev = traces.get(t)
                    about = [a or (prev[i + 1] if prev and prev[0] == ln.owner else None)
                             for i, a in enumerate(ln.about)]
                    traces[t] = [ln.owner, *about, ln.parsed.ts_ms or now if ln.parsed else now]
        for ln in lines:
            if ln.owner is None and ln.marks is not None and ln.marks.trace in traces:
                ln.owner = traces[ln.marks.trace][0]
        cli_blocks(lines)
        cut = None
        for ln in lines:
            if ln.marks is None or ln.parsed is None:
                continue
            t = ln.marks.trace
            if ln.owner == OURS:
                mine = own.about(ln.marks)
                trace = traces[t][1:5] if t in traces and traces[t][0] == OURS else (None,) * 4
                ln.about = tuple(a or b or c for a, b, c in zip(mine, ln.about, trace, strict=True))  # type: ignore[assignment]
            waits = (shared and ln.owner is None and LEVELS[ln.parsed.level] >= self.min_level
                     and ln.parsed.ts_ms is not None and now - ln.parsed.ts_ms < HOLD_MS)
            if waits and cut is None:
                cut = ln.offset
        return cut

    def _records(self, key: str, raw_lines: list[tuple[int, bytes]], shared: bool,
                 traces: dict[str, list[Any]]) -> tuple[list[LogRecord], int | None]:
        lines = self._parse(raw_lines)
        cut = self._attribute(lines, shared, traces) if self.ownership is not None else None
        born = self.ownership.born_ms() if self.ownership is not None else None
        out: list[LogRecord] = []
        for ln in lines:
            if cut is not None and ln.offset >= cut:
                break
            parsed = ln.parsed
            if parsed is None or LEVELS[parsed.level] < self.min_level:
                continue
            if parsed.ts_ms is None or not MIN_TS_MS <= parsed.ts_ms < MAX_TS_MS:
                self.stats["bad_time"] += 1
                continue
            if self.ownership is not None:
                if born is not None and parsed.ts_ms < born:
                    self.stats["before_state_dir"] += 1
                    continue
                if ln.owner == FOREIGN:
                    self.stats["foreign"] += 1
                    continue
                if ln.owner is None and shared:
                    self.stats["unattributed"] += 1
                    continue
            self.stats["kept"] += 1
            agent, session, session_key, run = ln.about
            out.append(LogRecord(
                id=stable_id(self.device_id, "log", key, ln.offset), ts=parsed.ts_ms, level=parsed.level,
                subsystem=parsed.subsystem[:MAX_SHORT_STR], message=parsed.message,
                fingerprint=fingerprint(parsed.message), source="gateway-log", agent_id=agent, session_id=session,
                session_key=session_key, run_id=run,
            ))
        return out, cut
