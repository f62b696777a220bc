"""The agent's core loop (headless service; the tray is a view over the same object).

Every ``interval_s`` seconds it takes one sample (system, network, OpenClaw gateway state),
stores it in the outbox as retained telemetry, and wakes the publisher. A ``report_now``
command from the server takes a sample at once.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from agent_tray.collectors.network import NetworkCollector
from agent_tray.collectors.system import SystemCollector
from agent_tray.config import AgentConfig
from agent_tray.outbox import Outbox, OutMessage
from agent_tray.publisher import Publisher, now_ms
from shared import schemas
from shared.topics import Channel, device_topic
from shared.version import __version__

log = logging.getLogger("clawfleet.agent")


@dataclass
class AgentState:
    """What the agent shows locally (tray tooltip, bridge ``/health``)."""

    connected: bool = False
    last_sample: schemas.Telemetry | None = None
    last_error: str | None = None
    samples_taken: int = 0
    extra: dict = field(default_factory=dict)


class AgentService:
    """Collect → outbox → publish, until :meth:`stop`.

    Args:
        cfg: validated agent configuration.
        data_dir: where ``outbox.sqlite`` lives (default: ``cfg.resolved_data_dir()``).
    """

    def __init__(self, cfg: AgentConfig, data_dir: Path | None = None) -> None:
        self.cfg = cfg
        self.state = AgentState()
        self.data_dir = data_dir or cfg.resolved_data_dir()
        self.outbox = Outbox(self.data_dir / "outbox.sqlite", max_bytes=cfg.outbox_max_bytes)
        self.system = SystemCollector()
        self.network = NetworkCollector()
        self._stop = threading.Event()
        self._report_now = threading.Event()
        self.publisher = Publisher(cfg, self.outbox, meta=self.meta,
                                   on_command=self._on_command, on_connection=self._on_connection)
        self._telemetry_topic = device_topic(cfg.device_id, Channel.TELEMETRY)

    # ---- what gets published -------------------------------------------------------------
    def meta(self) -> schemas.Meta:
        """The retained ``meta`` payload describing this machine."""
        info = self.system.machine_info()
        return schemas.Meta(
            device_id=self.cfg.device_id, ts=now_ms(), hostname=info.hostname, os=info.os,
            os_version=info.os_version, arch=info.arch, agent_version=__version__, cpu_count=info.cpu_count,
            mem_total_bytes=info.mem_total_bytes, disk_total_bytes=info.disk_total_bytes,
            boot_time_ms=info.boot_time_ms,
        )

    def sample(self) -> schemas.Telemetry:
        """Take one telemetry sample now."""
        s = self.system.collect()
        n = self.network.collect()
        return schemas.Telemetry(
            device_id=self.cfg.device_id, ts=now_ms(), cpu_pct=s.cpu_pct, mem_used_bytes=s.mem_used_bytes,
            mem_total_bytes=s.mem_total_bytes, mem_pct=s.mem_pct, disk_used_bytes=s.disk_used_bytes,
            disk_total_bytes=s.disk_total_bytes, disk_pct=s.disk_pct, swap_pct=s.swap_pct,
            net_rx_bps=n.rx_bps, net_tx_bps=n.tx_bps, load_avg=s.load_avg, uptime_s=s.uptime_s,
        )

    def report(self) -> schemas.Telemetry:
        """Sample, store the sample in the outbox (retained telemetry, QoS 1), wake the sender."""
        tel = self.sample()
        self.outbox.put([OutMessage("telemetry", self._telemetry_topic, schemas.encode(tel), qos=1, retain=True)])
        self.state.last_sample = tel
        self.state.samples_taken += 1
        self.publisher.wake()
        return tel

    # ---- lifecycle --------------------------------------------------------------------------
    def run(self) -> None:
        """Run until :meth:`stop` is called (from a signal handler or another thread)."""
        log.info("agent %s starting: device %s, broker %s, sample every %.0f s, outbox %s",
                 __version__, self.cfg.device_id, self.cfg.broker_url, self.cfg.interval_s, self.outbox.path)
        self.publisher.start()
        while not self._stop.is_set():
            try:
                self.report()
            except Exception:  # one bad sample must not stop the agent
                log.exception("sampling failed; will try again next interval")
            self._report_now.wait(timeout=self.cfg.interval_s)
            self._report_now.clear()
        self.publisher.stop()
        self.outbox.close()
        log.info("agent stopped")

    def stop(self) -> None:
        """Ask :meth:`run` to finish: it publishes a retained ``shutdown`` status and disconnects."""
        self._stop.set()
        self._report_now.set()

    def _on_command(self, cmd: schemas.Command) -> None:
        if cmd.command == "report_now":
            log.info("server asked for a report")
            self._report_now.set()

    def _on_connection(self, up: bool) -> None:
        self.state.connected = up
        self.state.last_error = self.publisher.last_error
