"""What several benchmarks need on this machine: a free loopback port and the server's CLI."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_cli(*args: str, stdin: str | None = None) -> str:
    """Run ``clawfleet-server ARGS`` (this checkout's, by module) and return its standard output.

    Raises:
        subprocess.CalledProcessError: the command exited non-zero.
    """
    return subprocess.run([sys.executable, "-m", "fleet_server.cli.main", *args], input=stdin, text=True,
                          capture_output=True, check=True, cwd=ROOT).stdout
