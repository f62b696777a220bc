"""Network throughput from psutil counters: bytes per second received and sent."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class NetworkSample:
    """Throughput over the interval since the previous sample, all NICs but loopback (bytes/s)."""

    rx_bps: float
    tx_bps: float


def _is_loopback(nic: str) -> bool:
    return nic == "lo" or nic.startswith("lo0") or "loopback" in nic.lower()


class NetworkCollector:
    """Turns psutil's cumulative per-NIC byte counters into rates.

    A counter that goes backwards (NIC reset, 32-bit wrap, interface removed) contributes 0 for
    that interval instead of a negative or huge rate. The first ``collect()`` measures since
    construction.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last_t = clock()
        self._last = self._read()

    @staticmethod
    def _read() -> dict[str, tuple[int, int]]:
        counters = psutil.net_io_counters(pernic=True) or {}
        return {nic: (c.bytes_recv, c.bytes_sent) for nic, c in counters.items() if not _is_loopback(nic)}

    def collect(self) -> NetworkSample:
        """Rates since the previous call, in bytes per second."""
        now, cur = self._clock(), self._read()
        dt = max(now - self._last_t, 1e-6)
        rx = tx = 0
        for nic, (r, t) in cur.items():
            pr, pt = self._last.get(nic, (r, t))
            rx += max(0, r - pr)
            tx += max(0, t - pt)
        self._last_t, self._last = now, cur
        return NetworkSample(rx_bps=round(rx / dt, 1), tx_bps=round(tx / dt, 1))
