"""The agent's core loop (headless service; the tray is a view over the same object).

Every ``interval_s`` seconds it takes one sample (system, network, OpenClaw gateway state),
stores it in the outbox as retained telemetry, moves new OpenClaw usage and log records into
the outbox, and wakes the publisher. A ``report_now`` command from the server, or a gateway
event from the local bridge, runs a pass at once.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from agent_tray.collectors.network import NetworkCollector
from agent_tray.collectors.runs import plugin_tool_call
from agent_tray.collectors.system import SystemCollector
from agent_tray.config import AgentConfig, ConfigWatch
from agent_tray.openclaw_monitor import OpenClawMonitor
from agent_tray.outbox import Outbox, OutboxFull, OutMessage
from agent_tray.publisher import Publisher
from agent_tray.status import AgentStatus, TokenCounter, record_bridge_port, remove_bridge_record, snapshot
from shared import payloads
from shared.clock import now_ms
from shared.topics import Channel, device_topic
from shared.version import __version__

if TYPE_CHECKING:  # the bridge (http.server) is imported only when it is on
    from agent_tray.bridge import BridgeEvent, LocalBridge, OpenClawInfo

log = logging.getLogger("clawfleet.agent")

FOLLOW_UP_PASSES_S = (1.0, 2.5)
"""After a model-call event from the OpenClaw plugin, passes run at once and again after these delays
(seconds): the hook can fire a moment before OpenClaw writes the transcript row."""
EXIT_WITH_PARENT_ENV = "CLAWFLEET_EXIT_WITH_PARENT"
"""When set to a pid, the agent stops once that process is gone (the server's local agent)."""


CONFIG_CHECK_S = 2.0
"""How often a running agent looks whether its config file was rewritten (``enroll`` with a new key or
another fleet), seconds: it then restarts with the new config."""


def tomorrow_morning_ms(now: datetime | None = None) -> int:
    """Epoch ms of 08:00 local time tomorrow ("snooze until tomorrow")."""
    now = now or datetime.now().astimezone()
    day = (now + timedelta(days=1)).date()
    return int(datetime(day.year, day.month, day.day, 8, 0).astimezone().timestamp() * 1000)


class AgentService:
    """Collect → outbox → publish, until :meth:`stop`.

    Args:
        cfg: validated agent configuration.
        data_dir: where ``outbox.sqlite`` lives (default: ``cfg.resolved_data_dir()``).
        config_path: the file ``cfg`` came from: when it is rewritten with another valid config,
            :meth:`run` returns within :data:`CONFIG_CHECK_S` with :attr:`next_config` set, so
            the caller starts again with the new config (None: not watched).
    """

    def __init__(self, cfg: AgentConfig, data_dir: Path | None = None,
                 openclaw: OpenClawMonitor | None = None, config_path: Path | None = None) -> None:
        self.cfg = cfg
        self.last_sample: payloads.Telemetry | None = None
        self.samples_taken = 0
        self._watch = ConfigWatch(config_path, cfg) if config_path is not None else None
        self.next_config: AgentConfig | None = None
        """Set when :meth:`run` returned because the config file changed (see ``config_path``): run again
        with this one."""
        self.data_dir = data_dir or cfg.resolved_data_dir()
        self.outbox = Outbox(self.data_dir / "outbox.sqlite", max_bytes=cfg.outbox_max_bytes)
        self.system = SystemCollector()
        self.network = NetworkCollector()
        self.openclaw = openclaw or OpenClawMonitor(cfg, self.outbox)
        self.bridge: LocalBridge | None = None
        if cfg.bridge_port:
            from agent_tray.bridge import LocalBridge

            self.bridge = LocalBridge(self, cfg.bridge_port, cfg.bridge_token)
        self._plugin: OpenClawInfo | None = None
        self._meta_key: tuple | None = None
        parent = os.environ.get(EXIT_WITH_PARENT_ENV, "")
        self._parent = int(parent) if parent.isdigit() else None
        self._stop = threading.Event()
        self._report_now = threading.Event()
        self._forced = False
        self.paused = False
        """While True the loop takes no samples and reads no OpenClaw records (read positions stay, so
        nothing is lost: resuming catches up); "report now" still runs one pass."""
        self.tokens = TokenCounter(now_ms())
        self.openclaw.on_usage = self.tokens.add
        self.publisher = Publisher(cfg, self.outbox, meta=self.meta, on_command=self._on_command,
                                   on_connection=self._on_connection)
        self.restart_hook: Callable[[], None] = self.stop
        """How the agent stops for an update's restart (the tray replaces it with its own quit)."""
        from agent_tray.update.apply import Updater

        self.updater = Updater(cfg, self.data_dir, restart=lambda: self.restart_hook(), changed=self._update_changed)
        self.openclaw.on_stored = self.publisher.wake
        self._telemetry_topic = device_topic(cfg.device_id, Channel.TELEMETRY)

    # ---- what gets published -------------------------------------------------------------
    def meta(self) -> payloads.Meta:
        """The retained ``meta`` payload describing this machine."""
        info = self.system.machine_info()
        oc = self.openclaw.last
        version = (oc.version if oc else None) or (self._plugin.openclaw_version if self._plugin else None)
        agents = list(oc.agents) if oc and oc.installed else list((self._plugin and self._plugin.agents) or [])
        return payloads.Meta(
            device_id=self.cfg.device_id, ts=now_ms(), hostname=info.hostname, os=info.os,
            os_version=info.os_version, arch=info.arch, agent_version=__version__, cpu_count=info.cpu_count,
            mem_total_bytes=info.mem_total_bytes, disk_total_bytes=info.disk_total_bytes,
            boot_time_ms=info.boot_time_ms, openclaw_version=version, agents=agents,
            interval_s=self.cfg.interval_s, update=self.updater.state.info() if self.updater.state else None,
        )

    def sample(self) -> payloads.Telemetry:
        """Take one telemetry sample now."""
        s = self.system.collect()
        n = self.network.collect()
        oc = self.openclaw.gateway()
        return payloads.Telemetry(
            device_id=self.cfg.device_id, ts=now_ms(), cpu_pct=s.cpu_pct, mem_used_bytes=s.mem_used_bytes,
            mem_total_bytes=s.mem_total_bytes, mem_pct=s.mem_pct, disk_used_bytes=s.disk_used_bytes,
            disk_total_bytes=s.disk_total_bytes, disk_pct=s.disk_pct, swap_pct=s.swap_pct,
            net_rx_bps=n.rx_bps, net_tx_bps=n.tx_bps, load_avg=s.load_avg, uptime_s=s.uptime_s,
            openclaw=oc.to_state(),
        )

    def report(self) -> payloads.Telemetry:
        """Sample, store the sample in the outbox (retained telemetry, QoS 1), wake the sender."""
        tel = self.sample()
        self.outbox.put([OutMessage("telemetry", self._telemetry_topic, payloads.encode(tel), qos=1, retain=True)])
        self.last_sample = tel
        self.samples_taken += 1
        self._republish_meta_on_change()
        self.publisher.wake()
        return tel

    def _openclaw_key(self) -> tuple | None:
        oc = self.openclaw.last
        return (oc.version, oc.agents) if oc else None

    def _republish_meta_on_change(self) -> None:
        key = self._openclaw_key()
        if key != self._meta_key and self.publisher.connected.is_set():
            log.info("OpenClaw version or agents changed; republishing meta")
            self.publisher.announce()
            self._meta_key = key

    def collect_openclaw(self) -> None:
        """Move new OpenClaw usage and log records into the outbox and wake the sender."""
        try:
            if self.openclaw.collect() != (0, 0) or self.openclaw.queued_activity:
                self.publisher.wake()
        except Exception:  # a parser bug must not stop telemetry
            log.exception("reading OpenClaw transcripts/logs failed; will try again next interval")

    # ---- lifecycle --------------------------------------------------------------------------
    def run(self) -> None:
        """Run until :meth:`stop` is called (from a signal handler or another thread)."""
        log.info("agent %s starting: device %s, broker %s, sample every %.0f s, outbox %s",
                 __version__, self.cfg.device_id, self.cfg.broker_url, self.cfg.interval_s, self.outbox.path)
        if self.bridge:
            self._start_bridge()
        try:
            self.openclaw.gateway()  # so the first meta, sent on connect, already names OpenClaw's version
        except Exception:
            log.exception("probing the OpenClaw gateway failed")
        self._meta_key = self._openclaw_key()
        self.publisher.start()
        while not self._stop.is_set():
            if not self.paused or self._forced:
                self._forced = False
                try:
                    self.report()
                except Exception:  # one bad sample must not stop the agent
                    log.exception("sampling failed; will try again next interval")
                self.collect_openclaw()
            if self._parent_gone():
                log.warning("the process that started this agent (pid %s) is gone; stopping", self._parent)
                break
            self._wait_next_pass()
        if self.bridge:
            self.bridge.stop()
            remove_bridge_record(self.data_dir, self.cfg.device_id)
        self.publisher.stop()
        self.outbox.close()
        log.info("agent stopped")

    def _wait_next_pass(self) -> None:
        """Sleep until the next interval or :meth:`report_now`, looking at the config file meanwhile."""
        deadline = time.monotonic() + self.cfg.interval_s
        while not self._report_now.is_set() and (left := deadline - time.monotonic()) > 0:
            self._report_now.wait(min(left, CONFIG_CHECK_S) if self._watch else left)
            new = self._watch.changed() if self._watch else None
            if new is not None:
                log.info("the agent config changed (device %s, broker %s); restarting with it", new.device_id,
                         new.broker_url)
                self.next_config = new
                self._stop.set()
                break
        self._report_now.clear()

    def _start_bridge(self) -> None:
        """Listen on the configured bridge port; when another agent holds it, on a free port instead.
        The port in use is recorded (:func:`agent_tray.status.record_bridge_port`) for ``status``."""
        assert self.bridge is not None
        try:
            self.bridge.start()
        except OSError as exc:
            if not self.cfg.bridge_port:
                log.error("%s", exc)
                self.bridge = None
                return
            from agent_tray.bridge import LocalBridge

            log.warning("%s; listening on a free port instead (another agent on this machine?)", exc)
            self.bridge = LocalBridge(self, 0, self.cfg.bridge_token)
            try:
                self.bridge.start()
            except OSError as again:
                log.error("%s", again)
                self.bridge = None
                return
            log.warning("the local bridge listens on 127.0.0.1:%d: point this machine's OpenClaw plugin there",
                        self.bridge.port)
        record_bridge_port(self.data_dir, self.cfg.device_id, self.bridge.port)

    def stop(self) -> None:
        """Ask :meth:`run` to finish: it publishes a retained ``shutdown`` status and disconnects."""
        self._stop.set()
        self._report_now.set()

    def _parent_gone(self) -> bool:
        return self._parent is not None and os.getppid() != self._parent

    def report_now(self) -> None:
        """Run a sampling and collection pass at once (instead of at the next interval; also while paused)."""
        self._forced = True
        self._report_now.set()

    def set_paused(self, paused: bool) -> None:
        """Pause or resume reporting (see :attr:`paused`); resuming runs a pass at once. The fleet sees
        a retained ``paused`` status (not offline: alert rules leave a paused device alone)."""
        if paused != self.paused:
            log.info("reporting %s", "paused" if paused else "resumed")
        self.paused = paused
        self.publisher.set_presence(*(("paused", "reporting paused") if paused else ("online", None)))
        if not paused:
            self._report_now.set()

    def snooze_alerts(self, seconds: float | None = None) -> int | None:
        """Ask the server for no alert notifications about this machine for ``seconds``, or (None)
        until tomorrow 08:00 local time. Returns the end (epoch ms), or None when not connected."""
        until = now_ms() + int(seconds * 1000) if seconds is not None else tomorrow_morning_ms()
        if not self.publisher.snooze_alerts(until):
            return None
        log.info("asked the server to snooze alerts for this machine until %s",
                 time.strftime("%Y-%m-%d %H:%M", time.localtime(until / 1000)))
        return until

    def status(self) -> AgentStatus:
        """The agent's state for the tray, ``/health`` and ``clawfleet-agent status``."""
        return snapshot(self)

    # ---- local bridge (called from its HTTP threads: only record and trigger) ------------------
    def bridge_health(self) -> dict:
        """``GET /health`` body: version, device, connection, ``outbox`` (:meth:`Outbox.stats`) and
        ``openclaw_backlog`` (:meth:`OpenClawMonitor.backlog`: records waiting in OpenClaw's files
        for room in a full outbox; ``{}`` when none)."""
        return {"ok": True, "agent_version": __version__, "device_id": self.cfg.device_id,
                "connected": self.publisher.connected.is_set(), "outbox": self.outbox.stats(),
                "openclaw_backlog": self.openclaw.backlog(), "status": self.status().to_dict()}

    def bridge_telemetry(self) -> dict | None:
        """``GET /telemetry`` body: the latest sample, or None before the first."""
        t = self.last_sample
        return payloads.to_dict(t) if t else None

    def bridge_openclaw(self, info: OpenClawInfo) -> None:
        """``POST /openclaw``: remember what the plugin says; republish meta."""
        self._plugin = info
        if self.publisher.connected.is_set():
            self.publisher.announce()

    def bridge_events(self, events: list[BridgeEvent]) -> dict[str, int]:
        """``POST /events``: gateway start/stop, model calls and finished runs trigger an immediate pass;
        ``after_tool_call`` events are stored as tool calls at once.

        Token usage and turns are taken from the transcripts (the only complete source, with stable entry
        ids), so an ``llm_output`` or ``agent_end`` event only makes the agent read them now; nothing is
        counted twice. A tool call has the same record id from both sources.
        """
        calls = [c for e in events if e.type == "after_tool_call" and (c := plugin_tool_call(
            self.cfg.device_id, agent_id=e.agentId or "main", session_id=e.sessionId, call_id=e.toolCallId,
            tool=e.toolName, done_ms=e.ts or now_ms(), error=bool(e.error), duration_ms=e.durationMs)) is not None]
        if calls:
            try:
                self.openclaw.store_tool_calls(calls)
                self.publisher.wake()
            except OutboxFull:
                log.debug("outbox full: %d tool calls from the plugin wait in the transcripts", len(calls))
        kinds = {e.type for e in events}
        if kinds & {"gateway_start", "gateway_stop", "llm_output", "agent_end"}:
            self._report_now.set()  # no pass while paused
            if kinds & {"llm_output", "agent_end"}:  # the hook may fire just before the transcript row is written
                for delay in FOLLOW_UP_PASSES_S:
                    timer = threading.Timer(delay, self._report_now.set)
                    timer.daemon = True
                    timer.start()
        return {"accepted": len(events)}

    def _on_command(self, cmd: payloads.Command) -> None:
        if cmd.command == "report_now":
            log.info("server asked for a report")
            self._report_now.set()
        elif cmd.command == "update" and cmd.version:
            log.info("server asked for an update to %s", cmd.version)
            self.updater.handle(cmd.version, cmd.rollback_after_s)

    def _on_connection(self, up: bool) -> None:
        if up:
            self.updater.confirm_if_pending()  # this version came from an update and reports: it stays

    def _update_changed(self) -> None:
        if self.publisher.connected.is_set():
            self.publisher.announce()  # meta carries the update's state

    def update_status(self) -> dict | None:
        """The last self-update (``{"state", "version", "detail", "ts"}``) for ``status`` and the tray."""
        return self.updater.info()
