"""Updates of a one-folder tree: ``<root>/versions/<version>/`` (one per version), ``<root>/current``
(a symlink to the running one) and the command links pointing through ``current`` (install.sh's
layout for users, and for systems without dpkg/rpm).

Installing unpacks the ``.tar.gz`` next to the running version, checks that the new program starts
(``--version``), then switches ``current`` (one atomic rename). A watchdog process, started from the
previous version, waits for the new one to report; when the deadline passes first, it switches
``current`` back, records ``rolled-back`` and restarts the agent on the previous version.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from agent_tray.update import state as update_state
from agent_tray.update.fetch import UpdateFailed, UpdateRefused

log = logging.getLogger("clawfleet.agent.update")

EXE = "clawfleet-agent.exe" if sys.platform == "win32" else "clawfleet-agent"
SUPERVISOR_ENV = ("INVOCATION_ID", "XPC_SERVICE_NAME")
"""Set by systemd (every unit) and launchd (every job): a process manager restarts the agent itself."""


def version_dir(root: Path, version: str) -> Path:
    """``<root>/versions/<version>``."""
    return root / "versions" / version


def current_version(root: Path) -> str | None:
    """The version ``<root>/current`` points at, None when it points nowhere."""
    try:
        return Path(os.readlink(root / "current")).name
    except OSError:
        return None


def _safe_members(archive: tarfile.TarFile, dest: Path) -> list[tarfile.TarInfo]:
    """The archive's members with the top folder stripped; refuses any that would land outside ``dest``."""
    out = []
    for m in archive.getmembers():
        parts = Path(m.name).parts[1:]
        if not parts:
            continue
        if Path(m.name).is_absolute() or ".." in parts or not (m.isfile() or m.isdir() or m.issym()):
            raise UpdateRefused(f"the package holds an entry that cannot be unpacked safely: {m.name[:100]!r}")
        if m.issym():
            target = (dest / Path(*parts)).parent / m.linkname
            if os.path.isabs(m.linkname) or not os.path.normpath(target).startswith(str(dest)):
                raise UpdateRefused(f"the package holds a link out of its folder: {m.name[:100]!r}")
        m.name = str(Path(*parts))
        out.append(m)
    return out


def unpack(root: Path, archive: Path, version: str) -> Path:
    """Unpack ``archive`` into ``<root>/versions/<version>`` and check that it starts and says ``version``.

    Raises:
        UpdateRefused: an unsafe archive, or the program says another version.
        UpdateFailed: disk errors, or the new program does not start.
    """
    final = version_dir(root, version)
    new = final.with_name(version + ".new")
    shutil.rmtree(new, ignore_errors=True)
    new.mkdir(parents=True)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(new, members=_safe_members(tar, new.resolve()))  # noqa: S202 - members checked above
        res = subprocess.run([str(new / EXE), "--version"], capture_output=True, text=True, timeout=120)
    except (OSError, tarfile.TarError, subprocess.SubprocessError) as exc:
        shutil.rmtree(new, ignore_errors=True)
        raise UpdateFailed(f"cannot unpack or start {archive.name}: {exc}") from None
    if res.stdout.strip() != f"clawfleet-agent {version}":
        shutil.rmtree(new, ignore_errors=True)
        raise UpdateRefused(f"{archive.name} says {res.stdout.strip()[:80]!r} ({res.stderr.strip()[-200:]}), "
                            f"not clawfleet-agent {version}")
    if final.exists() and final.resolve() != (root / "current").resolve():
        shutil.rmtree(final)
    if not final.exists():
        new.rename(final)
    else:
        shutil.rmtree(new, ignore_errors=True)
    return final


def switch(root: Path, version: str) -> None:
    """Point ``<root>/current`` at ``versions/<version>`` (a new link renamed over the old one)."""
    tmp = root / "current.new"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(Path("versions") / version)
    os.replace(tmp, root / "current")


def prune(root: Path, keep: set[str]) -> None:
    """Remove the versions not in ``keep`` (the running one and the one before it)."""
    for d in (root / "versions").glob("*"):
        if d.name not in keep:
            shutil.rmtree(d, ignore_errors=True)


def start_watchdog(root: Path, previous: str, data_dir: Path, argv: list[str], log_file: Path | None) -> None:
    """Start ``versions/<previous>/clawfleet-agent update-watchdog`` detached (its own session): it
    outlives this process's exec into the new version, which keeps this pid."""
    cmd = [str(version_dir(root, previous) / EXE), "update-watchdog", "--data-dir", str(data_dir), "--root",
           str(root), "--pid", str(os.getpid()), "--", *argv]
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL
    subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                     close_fds=True)


def run_watchdog(data_dir: Path, root: Path, pid: int, argv: list[str], poll_s: float = 1.0) -> int:
    """Wait until the update in ``data_dir`` is confirmed (exit 0) or its deadline passes: then switch back
    to the previous version, record ``rolled-back``, stop the agent (``pid``) and, when no process manager
    will restart it, start the previous version in its place (this process becomes the agent)."""
    while True:
        st = update_state.load(data_dir)
        if st is None or st.state != "installed" or not st.deadline_ms or not st.previous:
            return 0
        if update_state.now_ms() >= st.deadline_ms:
            break
        time.sleep(poll_s)
    took = round((st.deadline_ms - st.ts) / 1000) if st.ts else 0
    print(f"update watchdog: {st.version} did not report within {took} s; going back to {st.previous}", flush=True)
    switch(root, st.previous)
    update_state.save(data_dir, st.moved("rolled-back", f"{st.version} did not report within {took} s; back to "
                                         f"{st.previous}"))
    _stop(pid)
    if any(os.environ.get(k) for k in SUPERVISOR_ENV):
        return 0  # systemd / launchd start the agent again, on the previous version now
    exe = root / "current" / EXE
    os.execv(exe, [str(exe), *argv])  # noqa: S606 - the previous version of this program
    return 0  # not reached


def _stop(pid: int, grace_s: float = 15.0) -> None:
    """SIGTERM ``pid`` (the agent publishes its final status), SIGKILL after ``grace_s``; a zombie counts as gone."""
    import psutil

    try:
        proc = psutil.Process(pid)
        proc.terminate()
        deadline = time.monotonic() + grace_s
        while proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
            if time.monotonic() > deadline:
                proc.kill()
                break
            time.sleep(0.2)
    except psutil.Error:
        pass
