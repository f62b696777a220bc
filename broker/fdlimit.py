"""File-descriptor limits for a broker that holds thousands of device connections.

Every MQTT connection is one open socket in Mosquitto, so the broker can hold at most its
``RLIMIT_NOFILE`` soft limit minus the files it keeps open itself. Linux distributions start
processes with a soft limit of 1024 (systemd: 1024 soft / 524288 hard), which caps a fleet at
about 1,000 devices. :func:`raise_nofile_limit` lifts the soft limit to the hard limit for the
current process; the managed Mosquitto, started afterwards, inherits it.
:func:`broker_max_connections` turns the limit into Mosquitto's ``max_connections``, so the broker
refuses a connection it cannot hold instead of running out of descriptors.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass

log = logging.getLogger("clawfleet.broker")

MACOS_OPEN_MAX = 10_240
"""macOS refuses a soft limit above ``OPEN_MAX`` (10,240) even when the hard limit is unlimited."""
UNLIMITED_CAP = 1_048_576
"""Soft limit used when the hard limit is unlimited (Linux's default ``fs.nr_open``)."""
RESERVED_FDS = 64
"""Descriptors the broker keeps for itself: listeners, persistence and dynsec files, logs, pipes."""
RECOMMENDED_NOFILE = 65_536
"""What the systemd unit sets (``LimitNOFILE=``): room for 10,000+ devices."""
LOW_NOFILE = 10_240
"""Below this soft limit (after the raise) a warning names the fix."""


@dataclass(frozen=True)
class NofileLimit:
    """``RLIMIT_NOFILE`` of this process: ``soft``/``hard`` now, ``before`` = soft limit before the raise.
    ``None`` fields: the platform has no such limit (Windows)."""

    before: int | None
    soft: int | None
    hard: int | None

    @property
    def raised(self) -> bool:
        """True when :func:`raise_nofile_limit` changed the soft limit."""
        return self.before is not None and self.soft is not None and self.soft != self.before


def _resource():  # the module, or None on Windows
    try:
        import resource
    except ImportError:
        return None
    return resource


def current_nofile_limit() -> NofileLimit:
    """This process's ``RLIMIT_NOFILE`` (unlimited reported as :data:`UNLIMITED_CAP`)."""
    resource = _resource()
    if resource is None:
        return NofileLimit(None, None, None)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    soft = UNLIMITED_CAP if soft == resource.RLIM_INFINITY else soft
    hard = UNLIMITED_CAP if hard == resource.RLIM_INFINITY else hard
    return NofileLimit(soft, soft, hard)


def raise_nofile_limit() -> NofileLimit:
    """Raise this process's soft ``RLIMIT_NOFILE`` to its hard limit (unlimited: 1,048,576; macOS:
    at most 10,240). Child processes started afterwards (the managed Mosquitto) inherit it.
    Idempotent; never lowers a limit. Logs one line when it changed something, and a warning
    naming the fix when the result is below :data:`LOW_NOFILE`. Never raises: a refusal
    leaves the limit as it was (logged)."""
    resource = _resource()
    if resource is None:
        return NofileLimit(None, None, None)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = UNLIMITED_CAP if hard == resource.RLIM_INFINITY else hard
    if sys.platform == "darwin":
        target = min(target, MACOS_OPEN_MAX)
    before = UNLIMITED_CAP if soft == resource.RLIM_INFINITY else soft
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %d to %d: %s", soft, target, exc)
    now = current_nofile_limit()
    if now.soft is not None and now.soft != before:
        log.info("open-file limit (RLIMIT_NOFILE) raised from %d to %d for the server and the managed broker",
                 before, now.soft)
    if now.soft is not None and now.soft < LOW_NOFILE:
        log.warning("the open-file limit is %d (hard limit %s), so the broker can hold about %d device "
                    "connections; raise the hard limit for more (systemd: LimitNOFILE=%d, shell: ulimit -Hn, "
                    "Docker: --ulimit nofile=%d:%d)", now.soft, now.hard, broker_max_connections(now.soft),
                    RECOMMENDED_NOFILE, RECOMMENDED_NOFILE, RECOMMENDED_NOFILE)
    return NofileLimit(before, now.soft, now.hard)


def broker_max_connections(soft_limit: int | None) -> int:
    """Mosquitto ``max_connections`` for a broker running with this soft ``RLIMIT_NOFILE``: the limit
    minus :data:`RESERVED_FDS` (at least 16), or -1 (Mosquitto: no limit) when there is none."""
    if soft_limit is None:
        return -1
    return max(16, soft_limit - RESERVED_FDS)
