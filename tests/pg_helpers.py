"""A real PostgreSQL server for store tests: Debian's ``postgresql`` binaries, ``initdb`` in a temp
dir, listening on a free loopback port (trust authentication, loopback only).

PostgreSQL refuses to run as root, so when the tests run as root the cluster is owned by and run
as the ``postgres`` system user (``runuser``). Installed by ``scripts/ensure-system-packages.sh test``.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from mqtt_helpers import free_port


def pg_bin(name: str) -> str:
    """Path of a PostgreSQL server binary (``initdb``, ``pg_ctl``, ``pg_dump``)."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or ([shutil.which(name)] if shutil.which(name)
                                                                       else [])
    if not found:
        raise RuntimeError(f"PostgreSQL's {name} not found: run scripts/ensure-system-packages.sh test "
                           "(or apt-get install postgresql)")
    return found[-1]


@dataclass
class PgServer:
    """A running throw-away PostgreSQL cluster."""

    root: Path
    port: int
    user: str | None  # the OS user the cluster runs as (None: the current user)

    def _run(self, *cmd: str, **kw: object) -> subprocess.CompletedProcess:
        full = ["runuser", "-u", self.user, "--", *cmd] if self.user else list(cmd)
        return subprocess.run(full, check=True, capture_output=True, text=True, timeout=60, **kw)  # type: ignore

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://clawfleet@127.0.0.1:{self.port}/{dbname}"

    def create_database(self) -> str:
        """A new empty database; returns its URL."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        self.psql("postgres", f"CREATE DATABASE {name} OWNER clawfleet")
        return self.url(name)

    def psql(self, dbname: str, sql: str) -> str:
        """Run SQL as the cluster's superuser (stdin), returns stdout."""
        psql = pg_bin("psql") if glob.glob("/usr/lib/postgresql/*/bin/psql") else "psql"
        return self._run(psql, "-v", "ON_ERROR_STOP=1", "-q", "-h", "127.0.0.1", "-p", str(self.port), "-U",
                         "postgres", "-d", dbname, input=sql).stdout

    def stop(self) -> None:
        try:
            self._run(pg_bin("pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def start_pg() -> PgServer:
    """initdb + start a cluster on a free 127.0.0.1 port with a ``clawfleet`` superuser role."""
    root = Path(tempfile.mkdtemp(prefix="clawfleet-pg-"))
    user = "postgres" if os.geteuid() == 0 else None
    if user:
        shutil.chown(root, user)
    os.chmod(root, 0o700)
    port = free_port()
    server = PgServer(root, port, user)
    server._run(pg_bin("initdb"), "-D", str(root / "data"), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                "--no-sync")
    opts = f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={root} -c fsync=off"
    server._run(pg_bin("pg_ctl"), "-D", str(root / "data"), "-l", str(root / "server.log"), "-o", opts, "-w",
                "start")
    server.psql("postgres", "CREATE ROLE clawfleet LOGIN SUPERUSER")
    return server
