"""What several benchmarks need on this machine: a free loopback port, the server's CLI and a dashboard to time."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

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


def start_dashboard(data: Path, password: str, output: Any = subprocess.DEVNULL) -> tuple[subprocess.Popen, str, str]:
    """Create the ``admin`` account (``password``) and an API token in ``data``, then start
    ``clawfleet-server run`` on free loopback ports without a local agent (its own session, output to
    ``output``). Returns ``(process, base URL, API token)``; the caller waits for ``/healthz`` and stops
    the process.

    Raises:
        subprocess.CalledProcessError: creating the account or the token failed.
    """
    server_cli("admin", "create", "admin", "--password-stdin", "--data-dir", str(data), stdin=password + "\n")
    created = server_cli("api-token", "create", "bench", "--data-dir", str(data))
    token = next(w for w in created.split() if w.startswith("cft_"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    proc = subprocess.Popen([sys.executable, "-m", "fleet_server.cli.main", "run", "--data-dir", str(data), "--port",
                             str(port), "--mqtt-port", str(free_port()), "--no-local-agent"], cwd=ROOT, env=env,
                            stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    return proc, f"http://127.0.0.1:{port}", token


def stop_dashboard(proc: subprocess.Popen) -> None:
    """Stop a :func:`start_dashboard` process as Ctrl-C would (its whole session), killing it after 30 s."""
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
