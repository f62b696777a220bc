"""The wall clock as the whole project writes timestamps: epoch milliseconds UTC."""

from __future__ import annotations

import time


def now_ms() -> int:
    """Current time in epoch milliseconds UTC (``time.time()``; may step with the system clock)."""
    return int(time.time() * 1000)
