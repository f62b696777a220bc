"""The agent's Linux packages for the installer tests, built by the project's own scripts once per
source state and version, and kept in ``~/.cache/clawfleet-tests/packages`` (a PyInstaller build
takes about half a minute here; the packages another 30 s).

:func:`built_packages` returns the folder holding ``clawfleet-agent_<v>_<arch>.deb``,
``clawfleet-agent-<v>-1.<arch>.rpm`` and ``clawfleet-agent-<v>-linux-<arch>.tar.gz``.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from shared.version import __version__

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("CLAWFLEET_TEST_CACHE", Path.home() / ".cache" / "clawfleet-tests")) / "packages"
SOURCES = ("agent_tray", "shared", "installers/pyinstaller", "installers/linux", "pyproject.toml")


def bumped_version() -> str:
    """This version with its patch number one higher (the upgrade under test)."""
    major, minor, patch = __version__.split(".")[:3]
    return f"{major}.{minor}.{int(''.join(c for c in patch if c.isdigit()) or 0) + 1}"


def source_hash() -> str:
    """SHA-256 (first 16 hex digits) over the files the packages are built from."""
    h = hashlib.sha256()
    for name in SOURCES:
        base = ROOT / name
        files = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file()
                                                     and "__pycache__" not in p.parts)
        for f in files:
            h.update(str(f.relative_to(ROOT)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def build_python() -> str:
    """The Python the payload bundles: the distribution's (stripped, with Tk), else this one's."""
    return "/usr/bin/python3" if Path("/usr/bin/python3").exists() else shutil.which("python3") or "python3"


def built_packages(version: str = __version__, formats: str = "deb,rpm,tar.gz") -> Path:
    """The folder with the packages of ``version`` built from the current sources (built on first use;
    a lock keeps parallel sessions from building the same thing twice)."""
    if not shutil.which("rpmbuild"):
        formats = ",".join(f for f in formats.split(",") if f != "rpm")
    out = CACHE / f"{source_hash()}-{version}"
    done = out / ".done"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.exists() and done.read_text() == formats:
            return out
        shutil.rmtree(out, ignore_errors=True)
        for old in sorted(CACHE.glob("*-*"), key=lambda p: p.stat().st_mtime)[:-4]:  # keep the cache small
            shutil.rmtree(old, ignore_errors=True)
        env = {**os.environ, "PYTHON": build_python(), "VERSION": version}
        res = subprocess.run([str(ROOT / "installers/linux/build-packages.sh"), "--formats", formats, str(out)],
                             env=env, capture_output=True, text=True, timeout=1200)
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        print(res.stdout.strip())
        done.write_text(formats)
    return out


def one(folder: Path, pattern: str) -> Path:
    """The one file in ``folder`` matching ``pattern``."""
    (path,) = folder.glob(pattern)
    return path


def device_meta(data_dir: Path, device: str) -> dict:
    """A device's status and last meta (agent version, ``update``) as a running server stored them in its
    SQLite file (read-only; the server keeps writing)."""
    import json
    import sqlite3

    with sqlite3.connect(f"file:{data_dir / 'clawfleet.sqlite'}?mode=ro", uri=True, timeout=10) as db:
        row = db.execute("SELECT status, meta_json FROM device WHERE id = ?", (device,)).fetchone()
    return {"status": row[0], **json.loads(row[1] or "{}")} if row else {}
