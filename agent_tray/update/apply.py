"""The agent's side of a self-update: the ``update`` command from the server, up to the hand-over.

:class:`Updater` runs one update at a time in a thread: refuse what it must (self-update off, no
signing key from the token, a version older than the running one, a pip install), fetch and check the
package (:mod:`.fetch`), then, by how this copy was installed (:mod:`.layout`):

- ``tree``: unpack next to the running version, record ``installed`` with the deadline, start the
  watchdog, switch ``current`` and restart into the new version (``exec``, same pid);
- ``deb``/``rpm``: leave the checked package and a request for root in ``<data dir>/update/``; the
  packages' path unit runs ``apply-update --system`` (:mod:`.system`), which checks it again;
- ``pkg``/``exe``: run the platform's installer (the service runs as root / LocalSystem).

The new version confirms the update when it first connects (:meth:`Updater.confirm_if_pending`).
Every step is recorded in ``update.json`` and reported to the fleet in ``meta.update``.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from agent_tray.config import AgentConfig
from agent_tray.update import state as update_state
from agent_tray.update.fetch import UpdateFailed, UpdateRefused, download, fetch_manifest, verify_signature
from agent_tray.update.layout import Install, detect
from agent_tray.update.state import UpdateState
from shared.packages import version_key
from shared.version import __version__

log = logging.getLogger("clawfleet.agent.update")

DEFAULT_ROLLBACK_S = 600
"""Time the new version has to report when the command gives none, seconds."""
REQUEST_DIR = "update"
"""``<data dir>/update``: downloads, and the request root's updater picks up (packaged installs)."""

_pending_exec: list[str] | None = None


def exec_pending() -> None:
    """Called by the runner after the agent stopped: become the new version when an update asked for it."""
    if _pending_exec:
        log.info("restarting as %s", _pending_exec[0])
        logging.shutdown()
        os.execv(_pending_exec[0], _pending_exec)  # noqa: S606 - the program this update installed and checked


class Updater:
    """Runs updates for one agent.

    Args:
        cfg: the agent config (``self_update``, ``update_public_key``, ``dashboard_url``).
        data_dir: where ``update.json`` and downloads go.
        restart: stops the agent (headless: the service; tray: the whole tray) so it can exec the new version.
        changed: called after every state change (the service republishes ``meta``).
        install: how this copy was installed (default: detected).
        log_file: the agent's log file (the watchdog appends to it).
    """

    def __init__(self, cfg: AgentConfig, data_dir: Path, restart: Callable[[], None],
                 changed: Callable[[], None] = lambda: None, install: Install | None = None,
                 log_file: Path | None = None) -> None:
        self.cfg = cfg
        self.data_dir = Path(data_dir)
        self._restart = restart
        self._changed = changed
        self.install = install or detect()
        self.log_file = log_file
        self._busy = threading.Lock()
        self.state: UpdateState | None = update_state.load(self.data_dir)

    def info(self) -> dict | None:
        """The last update as ``{"state", "version", "detail", "ts"}`` (None: none)."""
        st = self.state
        return None if st is None else {"state": st.state, "version": st.version, "detail": st.detail, "ts": st.ts}

    def _set(self, st: UpdateState) -> UpdateState:
        self.state = update_state.save(self.data_dir, st)
        log.log(logging.WARNING if st.state in ("failed", "refused", "rolled-back") else logging.INFO,
                "update %s: %s%s", st.version, st.state, f" ({st.detail})" if st.detail else "")
        self._changed()
        return st

    def handle(self, version: str, rollback_after_s: int | None = None) -> threading.Thread | None:
        """Start updating to ``version`` in a thread (None when one is running already)."""
        if not self._busy.acquire(blocking=False):
            log.info("an update is already running; ignoring the request for %s", version)
            return None
        t = threading.Thread(target=self._run, args=(version, rollback_after_s or DEFAULT_ROLLBACK_S),
                             name="clawfleet-update", daemon=True)
        t.start()
        return t

    def _run(self, version: str, rollback_s: int) -> None:
        st = UpdateState("downloading", version=version, previous=__version__, kind=self.install.kind)
        try:
            why = self._refusal(version)
            if why:
                self._set(st.moved("refused", why))
                return
            self._set(st.moved("downloading", f"from {self.cfg.dashboard_url}"))
            st = self._fetch_and_install(st, version, rollback_s)
        except UpdateRefused as exc:
            self._set(st.moved("refused", str(exc)))
        except UpdateFailed as exc:
            self._set(st.moved("failed", str(exc)))
        except Exception as exc:  # an update bug must never take the agent down
            log.exception("update to %s failed", version)
            self._set(st.moved("failed", f"{type(exc).__name__}: {exc}"))
        finally:
            self._busy.release()

    def _refusal(self, version: str) -> str | None:
        if version == __version__:
            return f"{version} is running already"
        if not self.cfg.self_update:
            return "self-update is off on this machine (self_update: false in its config)"
        if not self.cfg.update_public_key:
            return "no package-signing key: this machine was enrolled before self-update existed; enroll it again"
        if not self.cfg.dashboard_url:
            return "no fleet address (dashboard_url) to download from; enroll it again with a token from the server"
        if version_key(version) < version_key(__version__):
            return f"{version} is older than the running {__version__}: the agent does not downgrade"
        if self.install.format is None:
            return self.install.why
        return None

    def _fetch_and_install(self, st: UpdateState, version: str, rollback_s: int) -> UpdateState:
        inst = self.install
        manifest = fetch_manifest(self.cfg.dashboard_url or "")
        pkg = manifest.pick(inst.format or "", inst.os, inst.arch, version)
        if pkg is None:
            raise UpdateFailed(f"the fleet has no {inst.format} package of {version} for {inst.os}/{inst.arch}")
        verify_signature(pkg, self.cfg.update_public_key or "")  # before spending bandwidth on it
        path = download(self.cfg.dashboard_url or "", pkg, self.data_dir / REQUEST_DIR)
        if inst.kind == "tree":
            from agent_tray.update import tree

            assert inst.root is not None
            self._set(st.moved("installing", f"unpacking {pkg.name}"))
            tree.unpack(inst.root, path, version)
            st = self._set(st.moved("installed", f"waiting up to {rollback_s} s for {version} to report",
                                    deadline_ms=update_state.now_ms() + rollback_s * 1000))
            tree.start_watchdog(inst.root, __version__, self.data_dir, sys.argv[1:], self.log_file)
            tree.switch(inst.root, version)
            path.unlink(missing_ok=True)
            global _pending_exec
            _pending_exec = [str(inst.root / "current" / tree.EXE), *sys.argv[1:]]
            self._restart()
            return st
        if inst.kind in ("deb", "rpm"):
            request = {"package": pkg.__dict__, "file": str(path), "rollback_after_s": rollback_s}
            tmp = self.data_dir / REQUEST_DIR / "request.json.tmp"
            tmp.write_text(json.dumps(request), encoding="utf-8")
            tmp.replace(self.data_dir / REQUEST_DIR / "request.json")  # the path unit starts root's updater
            return self._set(st.moved("installing", "handed to the system updater (clawfleet-agent-update)"))
        if inst.kind in ("pkg", "exe"):
            cmd = (["installer", "-pkg", str(path), "-target", "/"] if inst.kind == "pkg"
                   else [str(path), "/S"])
            st = self._set(st.moved("installed", f"running the {inst.kind} installer",
                                    deadline_ms=update_state.now_ms() + rollback_s * 1000))
            subprocess.Popen(cmd, start_new_session=True, stdin=subprocess.DEVNULL,  # it stops and restarts us
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            return st
        raise UpdateFailed(f"no way to install a {inst.format} package here")

    def confirm_if_pending(self) -> bool:
        """After the agent's first connection: when it is the version an update installed, record the
        update ``confirmed`` (the watchdog stands down; a tree keeps this and the previous version)."""
        st = update_state.load(self.data_dir)
        if st is None or st.state not in ("installed", "installing") or st.version != __version__:
            return False
        self._set(st.moved("confirmed", f"{__version__} reported; {st.previous} before it"))
        if self.install.kind == "tree" and self.install.root is not None:
            from agent_tray.update import tree

            tree.prune(self.install.root, {__version__, st.previous or __version__})
        return True
