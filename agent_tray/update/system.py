"""Root's side of a self-update for the .deb and .rpm: ``clawfleet-agent apply-update --system``.

The packaged agent runs as an unprivileged user and cannot install packages. It leaves the package it
downloaded and checked, and ``request.json``, in ``/var/lib/clawfleet-agent/update/``; the packages'
path unit (``clawfleet-agent-update.path``) then starts this as root, which:

1. takes the request (renames it, so the path unit does not fire again) and copies the package into
   ``/var/cache/clawfleet-agent`` (root only), then checks the copy again — SHA-256, size and the
   signature with the key in ``/etc/clawfleet-agent/agent.json`` (root's file: the agent's user can
   read it but not change it);
2. installs it with ``dpkg -i`` / ``rpm -U`` (the package's scripts restart the service);
3. waits until the new version reports (it records ``confirmed``) or the deadline passes, and then
   installs the previous package again from the cache (``rolled-back``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from agent_tray.config import ConfigError, load_config
from agent_tray.update import state as update_state
from agent_tray.update.fetch import UpdateRefused, check_file
from agent_tray.update.state import UpdateState
from shared.packages import Package, package_name, parse_package_name, version_key

CACHE_DIR = Path("/var/cache/clawfleet-agent")
"""Packages root installed (install.sh puts the first one here): the way back for a rollback."""


def _installer(fmt: str, path: Path) -> list[str]:
    return ["dpkg", "-i", str(path)] if fmt == "deb" else ["rpm", "-U", "--oldpackage", "--replacepkgs", str(path)]


def apply_system_update(data_dir: Path, config: Path, cache: Path = CACHE_DIR, poll_s: float = 2.0,
                        run: Callable[[list[str]], subprocess.CompletedProcess] | None = None,
                        installed_version: Callable[[], str] | None = None) -> str:
    """Carry out the pending request in ``<data_dir>/update`` (see the module docstring). Returns the final
    state (``confirmed``, ``rolled-back``, ``refused``, ``failed``) or ``none`` when there is no request.
    ``run`` runs the installer (default :func:`subprocess.run`); ``installed_version`` reads the running
    version (default ``clawfleet-agent --version``)."""
    run = run or (lambda cmd: subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False))
    installed_version = installed_version or _installed_version
    req_path = data_dir / "update" / "request.json"
    taken = req_path.with_name("request.taken.json")
    try:
        os.replace(req_path, taken)
    except FileNotFoundError:
        return "none"
    owner = (data_dir.stat().st_uid, data_dir.stat().st_gid)
    previous = installed_version()
    st = UpdateState("installing", previous=previous)
    copy: Path | None = None
    try:
        request = json.loads(taken.read_text(encoding="utf-8"))
        pkg = Package(**{k: request["package"][k] for k in Package.__dataclass_fields__})
        rollback_s = int(request.get("rollback_after_s") or 600)
        st = UpdateState("installing", version=pkg.version, previous=previous, kind=pkg.format)
        parsed = parse_package_name(pkg.name)
        if parsed is None or parsed[0] not in ("deb", "rpm") or parsed[3] != pkg.version:
            raise UpdateRefused(f"{pkg.name[:80]!r} is not a .deb or .rpm of the agent")
        if version_key(pkg.version) <= version_key(previous):
            raise UpdateRefused(f"{pkg.version} is not newer than the installed {previous}")
        src = Path(request["file"])
        if src.parent.resolve() != (data_dir / "update").resolve() or src.is_symlink():
            raise UpdateRefused("the request names a file outside the agent's update folder")
        cache.mkdir(mode=0o700, parents=True, exist_ok=True)
        copy = cache / pkg.name
        shutil.copyfile(src, copy)
        src.unlink(missing_ok=True)
        key = load_config(config).update_public_key
        if not key:
            raise UpdateRefused(f"{config} has no update_public_key: enroll again with a token from the server")
        check_file(copy, pkg, key)
    except (OSError, ValueError, KeyError, TypeError, ConfigError, UpdateRefused) as exc:
        taken.unlink(missing_ok=True)
        if copy is not None:
            copy.unlink(missing_ok=True)  # never keep a package that failed the checks
        update_state.save(data_dir, st.moved("refused", str(exc)), owner)
        return "refused"
    taken.unlink(missing_ok=True)
    deadline = update_state.now_ms() + rollback_s * 1000
    update_state.save(data_dir, st.moved("installed", f"waiting up to {rollback_s} s for {pkg.version} to report",
                                         deadline_ms=deadline), owner)
    res = run(_installer(pkg.format, copy))
    if res.returncode != 0:
        update_state.save(data_dir, st.moved("failed", f"{' '.join(_installer(pkg.format, copy)[:2])}: "
                                             f"{(res.stderr or res.stdout).strip()[-250:]}"), owner)
        return "failed"
    while update_state.now_ms() < deadline:
        now = update_state.load(data_dir)
        if now is not None and now.state == "confirmed" and now.version == pkg.version:
            for old in cache.glob("clawfleet-agent*"):  # keep this one and the one before it
                if old.name not in (pkg.name, package_name(pkg.format, previous, pkg.arch)):
                    old.unlink(missing_ok=True)
            return "confirmed"
        time.sleep(poll_s)
    back = cache / package_name(pkg.format, previous, pkg.arch)
    if not back.exists():
        update_state.save(data_dir, st.moved("failed", f"{pkg.version} did not report within {rollback_s} s and "
                                             f"{back.name} is not in {cache} to go back to"), owner)
        return "failed"
    res = run(_installer(pkg.format, back))
    done = "rolled-back" if res.returncode == 0 else "failed"
    update_state.save(data_dir, st.moved(done, f"{pkg.version} did not report within {rollback_s} s; "
                                         + (f"back to {previous}" if done == "rolled-back" else
                                            f"reinstalling {previous} failed: {(res.stderr or '').strip()[-200:]}")),
                      owner)
    return done


def _installed_version() -> str:
    res = subprocess.run(["/usr/bin/clawfleet-agent", "--version"], capture_output=True, text=True, check=False)
    return res.stdout.split()[-1] if res.returncode == 0 and res.stdout.split() else "0.0.0"
