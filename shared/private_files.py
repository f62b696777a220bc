"""Files that hold secrets or a user's data, readable by their owner only (mode 0600).

One place for what the agent (config, outbox), the broker (its config, admin credentials,
dynamic-security file) and the server (database, session secret, keys files, TLS keys) create.
On Windows the modes are ignored (the per-user directories are private already).
"""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

PRIVATE = 0o600
"""Mode of a private file: owner read/write."""
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")
"""Suffixes of the files SQLite keeps beside a database (they hold the same data)."""


def write_private(path: Path, text: str | bytes) -> None:
    """Atomically replace ``path`` with ``text`` (UTF-8 when a str), mode 0600, fsynced; the parent
    directory is created when missing.

    Raises:
        OSError: the file or its directory cannot be written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE)
    try:
        os.write(fd, text.encode("utf-8") if isinstance(text, str) else text)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, PRIVATE)  # an existing .tmp kept its old mode
    os.replace(tmp, path)


def open_private(path: Path, *, exclusive: bool = False, newline: str | None = None) -> io.TextIOWrapper:
    """Open ``path`` for writing text (UTF-8), mode 0600: truncated when it exists, or — with
    ``exclusive`` — refused when it exists. The caller closes the file.

    Raises:
        FileExistsError: ``exclusive`` and the file exists. OSError: it cannot be created.
    """
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    fd = os.open(path, flags, PRIVATE)
    if os.name == "posix":
        os.fchmod(fd, PRIVATE)  # an existing file kept its old mode
    return open(fd, "w", encoding="utf-8", newline=newline)  # the caller closes it


def make_private(*paths: Path) -> list[Path]:
    """Set each existing file of ``paths`` to mode 0600 when others could read it (POSIX only).
    Returns the files that were tightened (for a warning); missing files are skipped."""
    tightened = []
    if os.name != "posix":
        return tightened
    for p in paths:
        try:
            if stat.S_IMODE(p.stat().st_mode) & 0o077:
                p.chmod(PRIVATE)
                tightened.append(p)
        except FileNotFoundError:
            pass
    return tightened


def ensure_private_database(path: Path) -> list[Path]:
    """Create an SQLite database file empty with mode 0600 unless it exists (SQLite gives its WAL
    and shared-memory files the database's mode), and tighten the database and its companions
    when others could read them. Returns the files that were tightened."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, PRIVATE))
    return make_private(path, *(path.with_name(path.name + s) for s in SQLITE_COMPANIONS))
