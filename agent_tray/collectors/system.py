"""System telemetry from psutil: CPU, memory, system disk, swap, load, uptime, identity.

Works the same on Linux, macOS and Windows (psutil hides the differences); load average is
None where psutil has to emulate it and has no history yet.
"""

from __future__ import annotations

import os
import platform
import socket
import time
from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class SystemSample:
    """One reading of the machine. Units: percent 0-100, bytes, seconds."""

    cpu_pct: float
    mem_used_bytes: int
    mem_total_bytes: int
    mem_pct: float
    disk_used_bytes: int
    disk_total_bytes: int
    disk_pct: float
    swap_pct: float
    load_avg: tuple[float, float, float] | None
    uptime_s: float


@dataclass(frozen=True)
class MachineInfo:
    """What the machine is; changes rarely (sent as retained ``meta``)."""

    hostname: str
    os: str
    os_version: str
    arch: str
    cpu_count: int
    mem_total_bytes: int
    disk_total_bytes: int
    boot_time_ms: int


def system_volume() -> str:
    """Mount point of the system volume: ``/`` on POSIX, the system drive (``C:\\``) on Windows."""
    if os.name == "nt":
        return os.environ.get("SystemDrive", "C:") + "\\"
    return "/"


class SystemCollector:
    """Reads psutil; ``collect()`` returns a :class:`SystemSample`.

    CPU percent is measured between two ``collect()`` calls (psutil's non-blocking mode), so
    the first call primes the counter at construction time and every later call covers the
    interval since the previous one.
    """

    def __init__(self, disk_path: str | None = None) -> None:
        self.disk_path = disk_path or system_volume()
        psutil.cpu_percent(interval=None)  # prime: the next call measures since now

    def collect(self) -> SystemSample:
        """Take one sample. Raises nothing for a missing swap or load average (reported as 0/None)."""
        vm = psutil.virtual_memory()
        du = psutil.disk_usage(self.disk_path)
        try:
            swap_pct = float(psutil.swap_memory().percent)
        except (RuntimeError, OSError):  # no swap accounting on some containers
            swap_pct = 0.0
        mem_used = vm.total - vm.available
        return SystemSample(
            cpu_pct=min(100.0, max(0.0, psutil.cpu_percent(interval=None))),
            mem_used_bytes=mem_used,
            mem_total_bytes=vm.total,
            mem_pct=round(100.0 * mem_used / vm.total, 2) if vm.total else 0.0,
            disk_used_bytes=du.used,
            disk_total_bytes=du.total,
            disk_pct=float(du.percent),
            swap_pct=swap_pct,
            load_avg=_load_avg(),
            uptime_s=max(0.0, time.time() - psutil.boot_time()),
        )

    def machine_info(self) -> MachineInfo:
        """Identity of the machine for the ``meta`` payload."""
        uname = platform.uname()
        return MachineInfo(
            hostname=socket.gethostname(),
            os=uname.system,
            os_version=f"{uname.release} {uname.version}".strip()[:200],
            arch=uname.machine,
            cpu_count=psutil.cpu_count(logical=True) or 1,
            mem_total_bytes=psutil.virtual_memory().total,
            disk_total_bytes=psutil.disk_usage(self.disk_path).total,
            boot_time_ms=int(psutil.boot_time() * 1000),
        )


def _load_avg() -> tuple[float, float, float] | None:
    if not hasattr(os, "getloadavg"):  # Windows: psutil emulates it, zeros until warmed up
        return None
    one, five, fifteen = os.getloadavg()
    return (round(one, 2), round(five, 2), round(fifteen, 2))
