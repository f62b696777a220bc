"""Read new transcript lines from legacy JSONL session files (OpenClaw up to 2026.7).

Files in ``<state>/agents/<id>/sessions/`` counted by OpenClaw's own usage-cost (its
``isUsageCountedSessionTranscriptFileName``): ``<sessionId>.jsonl`` and the archives a reset or
delete leaves, ``<sessionId>.jsonl.reset.<ISO ts with - for :>`` /
``<sessionId>.jsonl.deleted.<ts>``, optionally zstd-compressed with a ``.zst`` suffix. Not
read: ``sessions.json`` (its token fields are context snapshots, not usage),
``*.trajectory.jsonl``, ``*.trajectory-path.json``, ``*.checkpoint.<uuid>.jsonl`` (compaction
twins holding copies of entries) and ``sessions.json.bak.*``.

Each file is followed by its first-line identity (the session header line
``{"type":"session","id":…,"timestamp":…}``) and a byte offset -- see
:mod:`agent_tray.collectors.follow`. A reset/delete rename keeps the header, so the archive
continues at the stored offset instead of being counted again; a ``.zst`` archive is read
through the decompressor with the same offsets (new bytes only, if any). When a live file and
an archive with the same identity exist together, the live file is read.

Positions (per agent): ``{<identity>: {"off", "tail", "name", "sid", "seen" (day number),
"sz", "mt", "eof"}}``; a file whose name, size and mtime (ns) are unchanged since it was read
to the end is skipped without being opened, so thousands of idle sessions cost one ``stat``
each per call.
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent_tray.collectors import follow
from agent_tray.collectors.transcripts_sqlite import RawEvent, Sink

log = logging.getLogger(__name__)

_ARCHIVE_TS = r"\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}(?:\.\d{3})?Z"
ARCHIVE_RE = re.compile(rf"^(?P<sid>.+)\.jsonl\.(?:reset|deleted)\.{_ARCHIVE_TS}(?P<zst>\.zst)?$")
CHECKPOINT_RE = re.compile(r"\.checkpoint\.[0-9a-f]{8}-[0-9a-f]{4}-[1-5][0-9a-f]{3}-[89ab][0-9a-f]{3}-"
                           r"[0-9a-f]{12}\.jsonl$", re.I)
FORGET_AFTER_DAYS = 7
"""A position whose file has not been seen for this many days is dropped."""


@dataclass(frozen=True)
class TranscriptFile:
    """A usage-counted transcript file: path, session id (from the name), immutable archive?"""

    path: Path
    session_id: str
    archive: bool


def classify(name: str) -> tuple[str, bool] | None:
    """``(session id, is_archive)`` for a usage-counted transcript file name, else ``None``."""
    m = ARCHIVE_RE.match(name)
    if m:
        return m.group("sid"), True
    if (not name.endswith(".jsonl") or name.endswith(".trajectory.jsonl") or CHECKPOINT_RE.search(name)
            or name == ".jsonl"):
        return None
    return name[: -len(".jsonl")], False


def list_transcript_files(sessions_dir: Path) -> list[TranscriptFile]:
    """Usage-counted transcript files in one agent's ``sessions/`` dir (empty if none)."""
    out = []
    try:
        entries = list(sessions_dir.iterdir())
    except OSError:
        return []
    for p in entries:
        kind = classify(p.name)
        if kind and p.is_file():
            out.append(TranscriptFile(p, kind[0], kind[1]))
    return out


class SessionsDirReader:
    """Incremental reader of one agent's JSONL ``sessions/`` dir; see the module docstring.

    ``read(pos, max_bytes, sink)`` hands every new complete line to ``sink`` and returns
    ``(new_pos, bytes_read)``.
    """

    def __init__(self, sessions_dir: Path) -> None:
        self.sessions_dir = sessions_dir

    def read(self, pos: dict[str, Any], max_bytes: int, sink: Sink) -> tuple[dict[str, Any], int]:
        """Read new complete lines of every transcript file, up to about ``max_bytes``."""
        files = {k: dict(v) for k, v in pos.items() if isinstance(v, dict)}
        today = int(time.time() // 86400)
        chosen: dict[str, tuple[tuple[int, int], TranscriptFile, os.stat_result]] = {}
        by_name = {v.get("name"): k for k, v in files.items()}
        for tf in list_transcript_files(self.sessions_dir):
            st = follow.stat_or_none(tf.path)
            known = files.get(by_name.get(tf.path.name, ""))
            if st and known and known.get("eof") and (known.get("sz"), known.get("mt")) == (st.st_size,
                                                                                           st.st_mtime_ns):
                known["seen"] = today  # unchanged since it was read to the end: skip without opening
                continue
            first = follow.read_first_line(tf.path) if st else None
            if st is None or first is None:
                continue
            key = follow.identity(first)
            # prefer the live file, then a plain archive, then a .zst; then the larger one
            rank = (0 if not tf.archive else 1 if not tf.path.name.endswith(".zst") else 2, -st.st_size)
            if key not in chosen or rank < chosen[key][0]:
                chosen[key] = (rank, tf, st)
        used = 0
        for key, (_, tf, st) in sorted(chosen.items(), key=lambda kv: kv[1][1].path.name):
            old = files.get(key, {})
            entry = {"off": int(old.get("off", 0)), "tail": str(old.get("tail", "")), "name": tf.path.name,
                     "sid": tf.session_id, "seen": today, "sz": st.st_size, "mt": st.st_mtime_ns, "eof": False}
            files[key] = entry
            if used >= max_bytes:
                continue
            try:
                chunk = follow.read_lines(tf.path, entry["off"], entry["tail"], max_bytes - used,
                                          final=tf.archive)
            except (OSError, follow.zstd_error()) as exc:
                log.debug("cannot read %s: %s", tf.path, exc)
                continue
            if chunk.restarted:
                log.info("%s changed under its position; reading it again from the start", tf.path)
            used += max(0, chunk.end - (0 if chunk.restarted else entry["off"]))
            entry.update(off=chunk.end, tail=chunk.tail, eof=chunk.eof)
            fallback = int(st.st_mtime * 1000)
            for _, raw in chunk.lines:
                if raw.strip():
                    sink(RawEvent(tf.session_id, raw, fallback))
        for key in [k for k, v in files.items() if today - int(v.get("seen", 0)) > FORGET_AFTER_DAYS]:
            del files[key]
        return files, used
