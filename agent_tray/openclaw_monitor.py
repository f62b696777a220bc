"""OpenClaw side of the agent: gateway state for telemetry/meta, and usage, log, session, run and tool
call records into the outbox together with the read positions that produced them (one transaction each).
Sessions, runs and tool calls travel on the ``usage`` topic in messages of their own (a server that
predates them ignores the lists; a bad one never costs usage records).

When the outbox is full (broker unreachable for long), records are not dropped: the read
positions simply stop advancing, the records wait in OpenClaw's own files, and reading goes on
from the same place once the outbox has room. :meth:`OpenClawMonitor.backlog` says how far
behind the agent is (the bridge's ``/health`` shows it; the agent log says when it starts and
ends).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from agent_tray.collectors.log_owner import Ownership
from agent_tray.collectors.logs import LogCollector
from agent_tray.collectors.openclaw import GatewayInfo, GatewayProbe, OpenClawPaths, locate_openclaw
from agent_tray.collectors.result import CollectResult
from agent_tray.collectors.sessions import SessionIndexCollector
from agent_tray.collectors.usage import UsageCollector
from agent_tray.config import AgentConfig
from agent_tray.outbox import Outbox, OutboxFull, OutMessage
from shared import payloads
from shared.clock import now_ms
from shared.topics import Channel, device_topic

log = logging.getLogger("clawfleet.agent.openclaw")

BATCH_BYTES = 192 * 1024
"""Target size of one usage/logs payload (the server accepts up to 256 KiB)."""
MAX_PASSES = 50
"""Collector calls per :meth:`OpenClawMonitor.collect` (each call reads a bounded amount)."""
STILL_BEHIND_LOG_S = 600.0
"""While records wait for room in the outbox, the agent log repeats how far behind it is this often (s)."""


@dataclass
class Behind:
    """Records of one collector (``usage`` or ``logs``) waiting in OpenClaw's files because the
    outbox is full. Times are epoch ms UTC."""

    since_ms: int
    """When the first pass found no room."""
    oldest_waiting_ms: int
    """Timestamp of the oldest record not yet in the outbox."""
    waiting_records: int
    """Records the last deferred pass read (a lower bound of what waits)."""
    logged_at: float = 0.0  # time.monotonic() of the last log line about it

    def as_dict(self) -> dict[str, int]:
        """``{"waiting_since_ms", "oldest_waiting_ms", "waiting_records_at_least"}`` for ``/health``."""
        return {"waiting_since_ms": self.since_ms, "oldest_waiting_ms": self.oldest_waiting_ms,
                "waiting_records_at_least": self.waiting_records}


def paths_for(cfg: AgentConfig, env: dict[str, str] | None = None) -> OpenClawPaths:
    """Locate OpenClaw as configured (``openclaw_state_dir`` / ``openclaw_profile`` override the env)."""
    env = dict(os.environ if env is None else env)
    if cfg.openclaw_state_dir:
        env["OPENCLAW_STATE_DIR"] = cfg.openclaw_state_dir
    return locate_openclaw(env, profile=cfg.openclaw_profile)


def batches(device_id: str, channel: Channel, records: list, max_bytes: int = BATCH_BYTES,
            field: str = "records") -> Iterator[bytes]:
    """Encode records into ``usage``/``logs`` payloads of at most ``max_bytes`` (and 500 records) each;
    ``field`` is the batch list they go in (``records``, or ``sessions``/``runs``/``tool_calls`` of a usage
    batch, which then carries no usage records)."""
    batch = payloads.UsageBatch if channel is Channel.USAGE else payloads.LogBatch
    chunk: list = []
    size = 0

    def encode(items: list) -> bytes:
        if field == "records":
            return payloads.encode(batch(device_id=device_id, ts=now_ms(), records=items))
        return payloads.encode(payloads.UsageBatch(device_id=device_id, ts=now_ms(), records=[], **{field: items}))

    for rec in records:
        rec_size = len(payloads.encode(rec)) + 1
        if chunk and (size + rec_size > max_bytes or len(chunk) >= payloads.MAX_BATCH_RECORDS):
            yield encode(chunk)
            chunk, size = [], 0
        chunk.append(rec)
        size += rec_size
    if chunk:
        yield encode(chunk)


def _canonical(positions: dict) -> str:
    return json.dumps(positions, sort_keys=True, separators=(",", ":"))


class OpenClawMonitor:
    """Probes the gateway and moves new usage/log records into the outbox.

    OpenClaw's config and the ``openclaw`` command are looked up again (``locate``) whenever the
    state dir appears or disappears, the config file changes (mtime, size, inode) or the gateway
    restarts (its lock file's pid/start time), so a later install or a port change shows at the next
    sample instead of the defaults.

    Args:
        cfg: agent config (device id, OpenClaw overrides, log threshold).
        outbox: where records and positions are committed together.
        paths: pre-resolved OpenClaw paths (tests); then ``locate`` defaults to returning them.
        locate: how to (re-)resolve the paths (default: :func:`paths_for` with ``cfg``).
    """

    def __init__(self, cfg: AgentConfig, outbox: Outbox, paths: OpenClawPaths | None = None,
                 locate: Callable[[], OpenClawPaths] | None = None) -> None:
        self.cfg = cfg
        self.outbox = outbox
        self._locate = locate or ((lambda: paths) if paths is not None else (lambda: paths_for(cfg)))
        self.last: GatewayInfo | None = None
        self.relocations = 0
        self._lock = threading.Lock()
        self._topics = {ch: device_topic(cfg.device_id, ch) for ch in (Channel.USAGE, Channel.LOGS)}
        self._said_missing = False
        self.on_usage: Callable[[list[payloads.UsageRecord]], None] | None = None
        """Called with the usage records of each stored batch (the tray's "tokens today")."""
        self.on_stored: Callable[[], None] | None = None
        """Called after each batch of records went into the outbox (the agent wakes its sender: a turn's
        usage leaves before the pass has also read the session index and the log)."""
        self._behind: dict[str, Behind] = {}
        self.queued_activity = 0
        """Session, run and tool call records the last :meth:`collect` queued."""
        self._positions: dict[str, str] = {}  # last stored read positions per collector (canonical JSON)
        self._use(paths or self._locate())
        self._gateway_key: tuple | None = None

    def _use(self, paths: OpenClawPaths) -> None:
        self.paths = paths
        self.probe = GatewayProbe(paths)
        self.usage = UsageCollector(paths, self.cfg.device_id)
        self.sessions = SessionIndexCollector(paths)
        self.ownership = Ownership(paths, gateway_pid=lambda: self.last.pid if self.last else None,
                                   known_runs=self.usage.recent_runs)
        self.logs = LogCollector(paths.log_dirs, self.cfg.device_id, min_level=self.cfg.log_min_level,
                                 names=paths.log_names, ownership=self.ownership)
        self._watch = self._watch_key()
        self._fit_budgets(self.outbox.max_bytes)

    def _watch_key(self) -> tuple:
        p = self.paths
        try:
            st = p.config_path.stat()
            config = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            config = None
        return p.state_dir.is_dir(), config

    def relocate(self, reason: str) -> None:
        """Resolve OpenClaw's paths, config and command again (positions are kept in the outbox)."""
        with self._lock:
            old = self.paths
            self._use(self._locate())
            self.relocations += 1
        p = self.paths
        log.info("OpenClaw %s: re-read %s (port %d, agents %s, command %s, logs %s)", reason, p.config_path, p.port,
                 ", ".join(p.discover_agent_ids()), p.cli_path or "not found",
                 ", ".join(map(str, p.log_dirs)) or "none")
        if old.log_dirs != p.log_dirs:
            log.info("OpenClaw log sources changed from %s", ", ".join(map(str, old.log_dirs)) or "none")

    def _fit_budgets(self, bound: int) -> None:
        """Read at most about a quarter of the outbox bound per collector call, so one call's records
        always fit into an outbox that has drained (usage records are ~400 bytes each)."""
        self.usage.max_rows = max(1, min(self.usage.max_rows, bound // 4 // 400))
        self.usage.max_bytes = max(4096, min(self.usage.max_bytes, bound // 4))
        self.logs.max_bytes = max(4096, min(self.logs.max_bytes, bound // 4))

    def gateway(self) -> GatewayInfo:
        """Probe the gateway now (HTTP on loopback; the version is cached). Re-reads OpenClaw's
        config first when its state dir or config changed, and again when the gateway started or restarted."""
        watch = self._watch_key()
        if watch != self._watch:
            self.relocate("state dir appeared" if watch[0] and not self._watch[0] else
                          "state dir is gone" if not watch[0] and self._watch[0] else "config changed")
        info = self.probe.collect()
        key = (info.pid, info.start_time)
        if self._gateway_key is not None and info.pid is not None and key != self._gateway_key:
            self.relocate("gateway restarted")
            info = self.probe.collect()
            key = (info.pid, info.start_time)
        self._gateway_key = key
        if not info.installed and not self._said_missing:
            log.info("OpenClaw not found on this machine (looked in %s); reporting system telemetry only",
                     self.paths.state_dir)
            self._said_missing = True
        elif info.installed:
            self._said_missing = False
        self.last = info
        return info

    def collect(self) -> tuple[int, int]:
        """Move everything new into the outbox; returns ``(usage records, log records)`` added
        (:attr:`queued_activity` counts the session, run and tool call records).

        Stops a collector's pass at the first result that does not fit into the outbox (its
        positions stay where they were, see :meth:`backlog`).
        """
        with self._lock:  # the loop and a bridge-triggered pass must not interleave
            n_usage = n_logs = 0
            self.queued_activity = 0
            for name, collector in (("usage", self.usage), ("sessions", self.sessions), ("logs", self.logs)):
                if name not in self._positions:  # this object is the positions' only writer: read them once
                    self._positions[name] = _canonical(self.outbox.position(name))
                pos = json.loads(self._positions[name])  # a fresh copy: collectors may reuse its parts
                for _ in range(MAX_PASSES):
                    res = collector.collect(pos)
                    if res.empty() and _canonical(res.positions) == self._positions[name]:
                        self._caught_up(name)
                        break  # nothing new: an idle tick writes nothing
                    try:
                        self._store(name, res)
                    except OutboxFull as exc:
                        self._defer(name, res, exc)
                        break
                    self._caught_up(name)
                    n_usage += len(res.usage)
                    n_logs += len(res.logs)
                    self.queued_activity += len(res.runs) + len(res.tool_calls) + len(res.sessions)
                    if res.positions == pos:
                        break
                    pos = res.positions
            if n_usage or n_logs or self.queued_activity:
                log.info("queued %d usage, %d log and %d session/run/tool-call records from OpenClaw", n_usage,
                         n_logs, self.queued_activity)
            return n_usage, n_logs

    def store_tool_calls(self, calls: list[payloads.ToolCallRecord]) -> None:
        """Queue tool calls the plugin reported (on the ``usage`` topic, like those of the transcripts).

        Raises:
            OutboxFull: no room; the transcripts hold the same calls, so nothing is lost.
        """
        if calls:
            self.outbox.put(list(self._messages(Channel.USAGE, calls, "tool_calls")))

    def backlog(self) -> dict[str, dict[str, int]]:
        """``{"usage"|"logs": Behind.as_dict()}`` for each collector whose records wait for room in
        the outbox; ``{}`` when nothing waits."""
        return {name: b.as_dict() for name, b in self._behind.items()}

    def _defer(self, name: str, res: CollectResult, exc: OutboxFull) -> None:
        records = list(res.usage) + list(res.logs)
        oldest = min((r.ts for r in records), default=now_ms())
        records += list(res.runs) + list(res.tool_calls) + list(res.sessions)
        behind = self._behind.get(name)
        if behind is None:
            behind = self._behind[name] = Behind(since_ms=now_ms(), oldest_waiting_ms=oldest,
                                                 waiting_records=len(records))
        else:
            behind.oldest_waiting_ms, behind.waiting_records = oldest, len(records)
        if exc.needed > exc.bound // 2:  # this one result can hardly ever fit: read less per call
            self._fit_budgets(exc.bound // 2)
        now = time.monotonic()
        if behind.logged_at and now - behind.logged_at < STILL_BEHIND_LOG_S:
            return
        first = not behind.logged_at
        behind.logged_at = now
        age_s = max(0, (now_ms() - oldest) // 1000)
        log.warning("%s: OpenClaw %s records wait in OpenClaw's files (%d+ records, the oldest from %d s ago); "
                    "nothing is dropped, reading resumes once the broker takes messages off the outbox",
                    "outbox is full" if first else "still behind", name, len(records), age_s)

    def _caught_up(self, name: str) -> None:
        behind = self._behind.pop(name, None)
        if behind is not None:
            log.info("outbox has room again: reading OpenClaw %s records again after %d s", name,
                     (now_ms() - behind.since_ms) // 1000)

    def _store(self, name: str, res: CollectResult) -> None:
        messages = list(self._messages(Channel.USAGE, res.usage)) + list(self._messages(Channel.LOGS, res.logs))
        for field in ("sessions", "runs", "tool_calls"):
            messages += self._messages(Channel.USAGE, getattr(res, field), field)
        self.outbox.put(messages, positions={name: res.positions})
        self._positions[name] = _canonical(res.positions)
        if res.usage and self.on_usage:
            self.on_usage(list(res.usage))
        if self.on_stored and not res.empty():
            self.on_stored()

    def _messages(self, channel: Channel, records: Iterable, field: str = "records") -> Iterator[OutMessage]:
        records = list(records)
        for payload in batches(self.cfg.device_id, channel, records, field=field):
            yield OutMessage(channel.value, self._topics[channel], payload, qos=1, retain=False)

    def state_dir(self) -> Path:
        """The OpenClaw state dir in use."""
        return self.paths.state_dir
