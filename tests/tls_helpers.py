"""Helpers for the TLS and external-broker tests: enrolling an agent from a real token with the
real ``clawfleet-agent enroll`` command, TLS probes, and a hand-configured Mosquitto that
ClawFleet did not start (the "external" broker).
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from mqtt_helpers import Probe
from typer.testing import CliRunner

from agent_tray.commands import app as agent_app
from agent_tray.config import load_config, save_config
from broker.install import find_mosquitto


def enroll_agent(tmp: Path, token: str, name: str, offline: bool = False) -> Path:
    """``clawfleet-agent enroll TOKEN`` into ``tmp/<name>.json``, then test settings: 1 s samples,
    5 s keepalive, no local bridge, no OpenClaw. ``offline``: skip enroll's check of the key with the
    broker (for a token the broker is meant to fail). Returns the config path."""
    path = tmp / f"{name}.json"
    args = ["enroll", token, "--config", str(path), "--interval", "1", "--data-dir", str(tmp / f"{name}-data")]
    result = CliRunner().invoke(agent_app, args + (["--offline"] if offline else []))
    assert result.exit_code == 0, result.output
    cfg = load_config(path).model_copy(update={"keepalive_s": 5, "bridge_port": 0,
                                               "openclaw_state_dir": str(tmp / "no-openclaw")})
    save_config(cfg, path)
    return path


def tls_handshake(port: int, cafile: Path, server_hostname: str) -> ssl.SSLSocket:
    """A verifying TLS handshake with 127.0.0.1:``port`` as ``server_hostname`` (caller closes).
    Raises ssl.SSLCertVerificationError when the certificate is not trusted for that name."""
    ctx = ssl.create_default_context(cafile=str(cafile))
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        return ctx.wrap_socket(sock, server_hostname=server_hostname)
    except BaseException:
        sock.close()
        raise


def tls_probe(port: int, cafile: Path, username: str, password: str, client_id: str | None = None) -> Probe:
    """A :class:`mqtt_helpers.Probe` that connects over TLS, verifying against ``cafile`` (not yet connected)."""
    probe = Probe("127.0.0.1", port, username, password, client_id)
    probe.client.tls_set_context(ssl.create_default_context(cafile=str(cafile)))
    return probe


def read_log(path: Path) -> str:
    """Text of a log file written by a child process (empty when missing)."""
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


@dataclass
class ExternalMosquitto:
    """A ``mosquitto`` started from a hand-written config and a dynsec file made by
    ``mosquitto_ctrl dynsec init``, as an administrator would set one up. Not supervised."""

    proc: subprocess.Popen
    conf: Path
    dynsec_file: Path
    admin_user: str
    admin_password: str
    log: Path

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_external_mosquitto(d: Path, listeners: list[str], admin_user: str = "admin",
                             admin_password: str | None = None) -> ExternalMosquitto:
    """Write ``d/mosquitto.conf`` (global auth, dynamic-security plugin, the given ``listeners``
    blocks verbatim), create the dynsec file with ``mosquitto_ctrl dynsec init`` and start
    ``mosquitto``; wait until every ``listener <port> <host>`` accepts connections. The admin
    password is random unless given."""
    admin_password = admin_password or secrets.token_urlsafe(16)
    ctrl = shutil.which("mosquitto_ctrl")
    assert ctrl, "mosquitto_ctrl is missing (Debian/Ubuntu package: mosquitto-clients)"
    install = find_mosquitto()
    d.mkdir(parents=True, exist_ok=True)
    dynsec_file = d / "dynamic-security.json"
    subprocess.run([ctrl, "dynsec", "init", str(dynsec_file), admin_user, admin_password], check=True,
                   capture_output=True)
    conf = d / "mosquitto.conf"
    conf.write_text("\n".join([
        "per_listener_settings false", "allow_anonymous false", "persistence false",
        f"user {pwd.getpwuid(os.geteuid()).pw_name}", "log_dest stderr", "log_type all",
        f"plugin {install.dynsec_plugin}", f"plugin_opt_config_file {dynsec_file}", "", *listeners, ""]))
    log = d / "mosquitto.log"
    proc = subprocess.Popen([str(install.binary), "-c", str(conf)], stdout=open(log, "wb"),
                            stderr=subprocess.STDOUT)
    ports = [(line.split()[2], int(line.split()[1])) for line in listeners if line.startswith("listener ")]
    deadline = time.monotonic() + 10
    for address in ports:
        while True:
            assert proc.poll() is None, f"mosquitto exited: {read_log(log)}"
            try:
                socket.create_connection(address, timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, f"mosquitto did not open {address}: {read_log(log)}"
                time.sleep(0.05)
    return ExternalMosquitto(proc, conf, dynsec_file, admin_user, admin_password, log)
