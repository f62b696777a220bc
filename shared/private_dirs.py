"""Directories that hold secrets or a user's data: the owner only (mode 0700), on every start.

A server data dir holds the database, the broker's credentials and TLS keys; an agent's holds its
API key and outbox. Older releases created them 0755 (any local user could list them and read
whatever file was not 0600 itself); :func:`ensure_private_dir` creates them 0700 and tightens an
existing one. On Windows modes are ignored (the per-user directories are private already).
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("clawfleet.files")

PRIVATE_DIR = 0o700
"""Mode of a private directory: owner read/write/enter."""


def ensure_private_dir(path: Path | str) -> Path:
    """Create ``path`` (and missing parents) with mode 0700, or set an existing directory that group or
    others may use to 0700 (logged). Returns the path.

    Raises:
        OSError: it cannot be created, or it is someone else's and cannot be changed.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
    if os.name == "posix":
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            path.chmod(PRIVATE_DIR)
            log.info("made %s private (mode %o -> 700): it holds keys and data", path, mode)
    return path
