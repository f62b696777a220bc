"""Finding the Mosquitto executable and its dynamic-security plugin, per OS.

When something is missing the error names the exact install command for this OS.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

MIN_VERSION = (2, 0)
"""Oldest Mosquitto with the dynamic-security plugin."""

_VERSION_RE = re.compile(r"mosquitto version (\d+)\.(\d+)(?:\.(\d+))?")
_DEBIAN_LIKE = {"debian", "ubuntu", "raspbian", "linuxmint", "pop", "elementary", "kali"}
_FEDORA_LIKE = {"fedora", "rhel", "centos", "rocky", "almalinux", "ol", "amzn"}


class BrokerSetupError(RuntimeError):
    """Mosquitto cannot be found, is too old, or cannot start; the message says what to do."""


@dataclass(frozen=True)
class MosquittoInstall:
    """A usable Mosquitto: ``binary`` (the broker executable), ``dynsec_plugin`` (the
    dynamic-security plugin library) and ``version`` (e.g. ``"2.0.11"``)."""

    binary: Path
    dynsec_plugin: Path
    version: str

    @property
    def version_tuple(self) -> tuple[int, ...]:
        """``version`` as integers, e.g. ``(2, 0, 11)``."""
        return tuple(int(p) for p in self.version.split("."))


def _read_os_release() -> dict[str, str]:
    for path in ("/etc/os-release", "/usr/lib/os-release"):
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError:
            continue
        pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
        return {k.strip(): v.strip().strip('"') for k, v in pairs}
    return {}


def install_command(platform: str | None = None, os_release: dict[str, str] | None = None) -> str:
    """The command that installs Mosquitto on this OS (or on ``platform`` / ``os_release``, the
    parsed ``/etc/os-release``, when given), e.g. ``"sudo apt-get install mosquitto"``."""
    platform = platform or sys.platform
    if platform == "darwin":
        return "brew install mosquitto"
    if platform.startswith("win"):
        return "winget install EclipseFoundation.Mosquitto"
    rel = _read_os_release() if os_release is None else os_release
    ids = {rel.get("ID", "").lower(), *rel.get("ID_LIKE", "").lower().split()}
    if ids & _DEBIAN_LIKE:
        return "sudo apt-get install mosquitto"
    if ids & _FEDORA_LIKE:
        return "sudo dnf install mosquitto"
    if ids & {"arch", "manjaro"}:
        return "sudo pacman -S mosquitto"
    if ids & {"opensuse", "suse", "opensuse-leap", "opensuse-tumbleweed"}:
        return "sudo zypper install mosquitto"
    if "alpine" in ids:
        return "sudo apk add mosquitto"
    return "your package manager's 'mosquitto' package (version 2.0 or newer; see https://mosquitto.org/download/)"


def binary_search_dirs() -> list[Path]:
    """Directories searched for the ``mosquitto`` executable: ``PATH`` first, then the usual
    sbin dirs (not on a normal user's PATH), Homebrew, and Program Files on Windows."""
    dirs = [Path(p) for p in os.environ.get("PATH", "").split(os.pathsep) if p]
    if sys.platform.startswith("win"):
        for var, default in (("ProgramFiles", r"C:\Program Files"), ("ProgramFiles(x86)", r"C:\Program Files (x86)")):
            dirs.append(Path(os.environ.get(var, default)) / "mosquitto")
    else:
        dirs += [Path(p) for p in ("/usr/sbin", "/usr/local/sbin", "/opt/homebrew/sbin",
                                   "/opt/homebrew/opt/mosquitto/sbin", "/usr/local/opt/mosquitto/sbin")]
    return list(dict.fromkeys(dirs))


def plugin_search_dirs(binary: Path) -> list[Path]:
    """Directories searched for the dynamic-security plugin: next to the binary (Windows), the
    binary's prefix ``lib`` dirs (incl. Debian multiarch ``lib/<triplet>``), the system lib dirs
    and Homebrew's."""
    prefix = binary.resolve().parent.parent
    multiarch = sysconfig.get_config_var("MULTIARCH") or ""
    dirs = [binary.parent, binary.resolve().parent]
    for p in (prefix, Path("/usr"), Path("/usr/local")):
        dirs += [p / "lib" / multiarch] if multiarch else []
        dirs += [p / "lib", p / "lib64", p / "lib" / "mosquitto"]
    dirs += sorted(Path("/usr/lib").glob("*-linux-gnu*")) if sys.platform.startswith("linux") else []
    dirs += [Path(p) for p in ("/opt/homebrew/lib", "/opt/homebrew/opt/mosquitto/lib",
                               "/usr/local/opt/mosquitto/lib")]
    return list(dict.fromkeys(dirs))


def _binary_names() -> tuple[str, ...]:
    return ("mosquitto.exe",) if sys.platform.startswith("win") else ("mosquitto",)


def _plugin_names() -> tuple[str, ...]:
    if sys.platform.startswith("win"):
        return ("mosquitto_dynamic_security.dll",)
    return ("mosquitto_dynamic_security.so", "mosquitto_dynamic_security.dylib")


def _first_file(dirs: list[Path], names: tuple[str, ...], executable: bool = False) -> Path | None:
    for d in dirs:
        for name in names:
            p = d / name
            if p.is_file() and (not executable or os.access(p, os.X_OK)):
                return p
    return None


def mosquitto_version(binary: Path) -> str:
    """Version reported by ``mosquitto -h`` (first line ``mosquitto version 2.0.11``).

    Raises:
        BrokerSetupError: it does not run or prints no version.
    """
    try:
        out = subprocess.run([str(binary), "-h"], capture_output=True, text=True, timeout=10,
                             stdin=subprocess.DEVNULL, errors="replace")
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BrokerSetupError(f"cannot run {binary} -h: {exc}") from exc
    first = (out.stdout or out.stderr).strip().splitlines()[:1]
    m = _VERSION_RE.match(first[0]) if first else None
    if not m:
        raise BrokerSetupError(f"{binary} -h printed no version (first line: {first!r})")
    return ".".join(g for g in m.groups() if g is not None)


def find_mosquitto() -> MosquittoInstall:
    """Locate Mosquitto >= 2.0 and its dynamic-security plugin.

    Raises:
        BrokerSetupError: no executable, a version older than 2.0, or no plugin; the message
            names the install command for this OS.
    """
    cmd = install_command()
    dirs = binary_search_dirs()
    binary = _first_file(dirs, _binary_names(), executable=True)
    if binary is None:
        on_path = {Path(p) for p in os.environ.get("PATH", "").split(os.pathsep) if p}
        extra = ", ".join(str(d) for d in dirs if d not in on_path) or "no other directory"
        raise BrokerSetupError(f"Mosquitto (2.0 or newer) is not installed: no {_binary_names()[0]!r} on PATH "
                               f"or in {extra}. Install it with: {cmd}")
    version = mosquitto_version(binary)
    if tuple(int(p) for p in version.split("."))[:2] < MIN_VERSION:
        raise BrokerSetupError(f"Mosquitto {version} at {binary} is too old: ClawFleet needs 2.0 or newer "
                               f"(dynamic-security plugin). Upgrade with: {cmd}")
    pdirs = plugin_search_dirs(binary)
    plugin = _first_file(pdirs, _plugin_names())
    if plugin is None:
        raise BrokerSetupError(
            f"Mosquitto {version} is installed at {binary}, but its dynamic-security plugin "
            f"({_plugin_names()[0]}) is not in any of {', '.join(map(str, pdirs))}. "
            f"Reinstall with: {cmd}")
    return MosquittoInstall(binary=binary, dynsec_plugin=plugin, version=version)
