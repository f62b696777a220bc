"""GatewayProbe against a real HTTP server on 127.0.0.1, real lock files and a fake CLI script."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from fixtures_openclaw import fixture_path, make_latest_state

from agent_tray.collectors.openclaw import GatewayProbe, OpenClawPaths, locate_openclaw

UID_DIR = f"openclaw-{os.getuid()}" if hasattr(os, "getuid") else "openclaw"
posix_only = pytest.mark.skipif(os.name == "nt", reason="the fake openclaw CLI is a shell script")


class Gateway:
    """A tiny stand-in for the gateway's HTTP port: /health and /readyz as OpenClaw answers them."""

    def __init__(self) -> None:
        self.ready = True
        self.hits: list[str] = []
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # http.server's name
                gateway.hits.append(self.path)
                if self.path in ("/health", "/healthz"):
                    code, body = 200, {"ok": True, "status": "live"}
                elif self.path == "/readyz":
                    code = 200 if gateway.ready else 503
                    body = {"ready": gateway.ready, "failing": [] if gateway.ready else ["channels"], "uptimeMs": 1}
                else:
                    code, body = 404, None
                data = json.dumps(body).encode() if body is not None else b"Not Found"
                self.send_response(code)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    gw = Gateway()
    yield gw
    gw.close()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fake_cli(bin_dir: Path, version_line: str = "OpenClaw 2026.9.6 (eb377ac)") -> Path:
    """An ``openclaw`` script that prints a version and counts its runs in ``runs.txt``."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    cli = bin_dir / "openclaw"
    cli.write_text(f"#!/bin/sh\necho run >> '{bin_dir / 'runs.txt'}'\necho '{version_line}'\n")
    cli.chmod(cli.stat().st_mode | stat.S_IXUSR)
    return cli


def runs(bin_dir: Path) -> int:
    f = bin_dir / "runs.txt"
    return len(f.read_text().splitlines()) if f.exists() else 0


def proc_start_time(pid: int) -> int | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(text[text.rindex(")") + 2:].split()[19])


def write_lock(paths: OpenClawPaths, pid: int, port: int, start: int | None) -> Path:
    """The 2026.9 lock file: JSON then whitespace padding, named by the config path hash."""
    lock_dir = paths.state_dir / "tmp" / UID_DIR
    lock_dir.mkdir(parents=True, exist_ok=True)
    name = f"gateway.{hashlib.sha256(str(paths.config_path).encode()).hexdigest()[:8]}.lock"
    payload = {"pid": pid, "createdAt": "2026-11-21T04:10:24.487Z", "configPath": str(paths.config_path),
               "stateDir": str(paths.state_dir), "port": port, "startTime": start}
    (lock_dir / name).write_text(json.dumps(payload, indent=2) + " \t" * 100 + "\n")
    return lock_dir / name


def env_for(state: Path, tmp: Path, port: int, bin_dir: Path | None = None) -> dict[str, str]:
    return {"OPENCLAW_STATE_DIR": str(state), "OPENCLAW_GATEWAY_PORT": str(port), "TMPDIR": str(tmp / "tmp"),
            "PATH": str(bin_dir) if bin_dir else ""}


@posix_only
def test_up_ready_pid_and_cached_version(gateway: Gateway, tmp_path: Path) -> None:
    state = make_latest_state(tmp_path)
    bin_dir = tmp_path / "bin"
    fake_cli(bin_dir)
    paths = locate_openclaw(env_for(state, tmp_path, gateway.port, bin_dir))
    start = proc_start_time(os.getpid())
    write_lock(paths, os.getpid(), gateway.port, start)
    probe = GatewayProbe(paths)
    info = probe.collect()
    assert (info.installed, info.up, info.ready, info.port) == (True, True, True, gateway.port)
    assert (info.pid, info.version, info.agents) == (os.getpid(), "2026.9.6", ("main",))
    assert dataclasses.asdict(info.to_state()) == {"installed": True, "up": True, "ready": True, "port": gateway.port,
                                            "version": "2026.9.6", "pid": os.getpid()}
    assert gateway.hits == ["/health", "/readyz"]
    probe.collect()
    assert runs(bin_dir) == 1, "the version is cached while the gateway process stays the same"
    gateway.ready = False
    assert probe.collect().ready is False  # /readyz 503 {"ready": false}


@posix_only
def test_version_is_read_again_when_the_gateway_restarts(gateway: Gateway, tmp_path: Path) -> None:
    state = make_latest_state(tmp_path)
    bin_dir = tmp_path / "bin"
    fake_cli(bin_dir)
    paths = locate_openclaw(env_for(state, tmp_path, gateway.port, bin_dir))
    write_lock(paths, os.getpid(), gateway.port, proc_start_time(os.getpid()))
    probe = GatewayProbe(paths)
    assert probe.collect().version == "2026.9.6"
    fake_cli(bin_dir, "OpenClaw 2026.10.1-beta.2 (abc1234)")  # upgraded, then restarted as a new process
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        write_lock(paths, child.pid, gateway.port, proc_start_time(child.pid))
        info = probe.collect()
        assert (info.pid, info.version) == (child.pid, "2026.10.1-beta.2")
        assert runs(bin_dir) == 2
    finally:
        child.kill()
        child.wait()


def test_stale_lock_of_a_dead_process_gives_no_pid(gateway: Gateway, tmp_path: Path) -> None:
    state = make_latest_state(tmp_path)
    paths = locate_openclaw(env_for(state, tmp_path, gateway.port))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    write_lock(paths, dead.pid, gateway.port, 1)
    info = GatewayProbe(paths).collect()
    assert info.up and info.pid is None
    if sys.platform.startswith("linux"):  # a live pid with another start time is a reused pid
        write_lock(paths, os.getpid(), gateway.port, (proc_start_time(os.getpid()) or 0) + 1)
        assert GatewayProbe(paths).collect().pid is None


def test_version_falls_back_to_the_sqlite_store_without_a_cli(tmp_path: Path) -> None:
    state = make_latest_state(tmp_path)
    info = GatewayProbe(locate_openclaw(env_for(state, tmp_path, free_port()))).collect()
    assert (info.installed, info.up, info.ready, info.pid, info.version) == (True, False, None, None, "2026.9.6")


def test_machine_without_openclaw_is_quiet(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    paths = locate_openclaw({"PATH": "", "TMPDIR": str(tmp_path / "tmp"), "OPENCLAW_GATEWAY_PORT": str(port)},
                            home=tmp_path / "empty-home")
    started = time.monotonic()
    with caplog.at_level(logging.INFO):
        info = GatewayProbe(paths).collect()
    assert time.monotonic() - started < 2
    assert (info.installed, info.up, info.ready, info.pid, info.version, info.agents) == (
        False, False, None, None, None, ())
    assert info.to_state().installed is False
    assert caplog.records == []


def test_real_lock_files_parse(tmp_path: Path) -> None:
    """The 2026.7.35 lock file as OpenClaw wrote it, found by its configPath (the name's hash
    was computed on the capture machine's real path, before the fixtures' path rewrite)."""
    legacy_config = "/opt/oc/home-legacy/.openclaw/openclaw.json"
    env = {"OPENCLAW_STATE_DIR": str(tmp_path / "state"), "OPENCLAW_CONFIG_PATH": legacy_config,
           "TMPDIR": str(tmp_path / "tmp"), "PATH": ""}
    lock_dir = tmp_path / "tmp" / UID_DIR
    lock_dir.mkdir(parents=True)
    src = fixture_path("legacy", "lockfiles", "gateway.8c98cddf.lock")
    (lock_dir / src.name).write_bytes(src.read_bytes())
    lock = GatewayProbe(locate_openclaw(env)).read_lock()
    assert lock is not None
    assert (lock["pid"], lock["port"], lock["startTime"], lock["configPath"]) == (16954, 18790, 68775, legacy_config)
