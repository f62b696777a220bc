"""How this copy of the agent was installed, which decides how an update is installed.

- ``tree``: a one-folder build under ``<root>/versions/<version>/`` with ``<root>/current`` pointing at
  the running one (install.sh's layout for users and for systems without dpkg/rpm): unpack next to
  it, switch ``current``, restart.
- ``deb`` / ``rpm``: ``/opt/clawfleet-agent`` from the package: root installs the new package
  (:mod:`.system`), started by the packages' path unit.
- ``pkg`` (macOS) and ``exe`` (Windows): the platform's installer, run by the agent's service (root /
  LocalSystem).
- ``source``: not a build (pip, a checkout): no self-update; the message says how to update.
"""

from __future__ import annotations

import platform
import sys
from dataclasses import dataclass
from pathlib import Path

from shared.packages import normal_arch

PACKAGED_ROOT = Path("/opt/clawfleet-agent")
"""Where the .deb and .rpm put the one-folder build."""


@dataclass(frozen=True)
class Install:
    """``kind`` (see the module docstring), ``root`` (the tree's root, the package's folder) and the
    package ``format`` an update needs (None: no self-update, ``why`` says so)."""

    kind: str
    root: Path | None
    format: str | None
    os: str
    arch: str
    why: str = ""


def this_os() -> str:
    """``linux``, ``macos`` or ``windows`` (the package manifest's spelling)."""
    return {"darwin": "macos", "win32": "windows"}.get(sys.platform, "linux")


def detect(executable: str | None = None, frozen: bool | None = None) -> Install:
    """How the running agent was installed (from its executable's path)."""
    frozen = getattr(sys, "frozen", False) if frozen is None else frozen
    exe = Path(executable or sys.executable)
    os_name, arch = this_os(), normal_arch(platform.machine())
    if not frozen:
        return Install("source", None, None, os_name, arch, "this agent runs from a Python install (pip or a "
                       "checkout): update it with pip, or install the fleet's package (install.sh)")
    folder = exe.parent
    if folder.parent.name == "versions" and (folder.parent.parent / "current").exists():
        return Install("tree", folder.parent.parent, "tar.gz", os_name, arch)
    if os_name == "linux" and folder == PACKAGED_ROOT:
        fmt = "deb" if Path("/var/lib/dpkg/info/clawfleet-agent.list").exists() else "rpm"
        return Install(fmt, folder, fmt, os_name, arch)
    if os_name == "macos" and ".app/Contents/MacOS" in str(exe):
        return Install("pkg", folder, "pkg", os_name, arch)
    if os_name == "windows":
        return Install("exe", folder, "exe", os_name, arch)
    return Install("unknown", folder, None, os_name, arch, f"not installed by a ClawFleet package or install.sh "
                   f"({folder}): reinstall with the fleet's install.sh to get updates")

