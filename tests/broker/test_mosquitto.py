"""The managed Mosquitto: config rendering, finding the install, start/stop, supervision, failures.

Brokers are real ``mosquitto`` processes on free loopback ports in ``tmp_path``.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import logging
import os
import signal
import socket
import ssl
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from mqtt_helpers import connect_probe, free_port, make_device

from broker import install as install_mod
from broker.dynsec import DynSecClient
from broker.mosquitto import (
    DEFAULT_MQTT_PORT,
    PORT_FLAG,
    BrokerConfig,
    BrokerSetupError,
    ManagedMosquitto,
    MosquittoInstall,
    find_mosquitto,
    install_command,
    render_config,
)

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX signals, file modes and executables")

FAKE_INSTALL = MosquittoInstall(Path("/usr/sbin/mosquitto"), Path("/usr/lib/mosquitto_dynamic_security.so"), "2.0.11")


def wait_for(pred: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll ``pred`` every 10 ms until true; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


def gone(pid: int) -> bool:
    """The process exited (a zombie left to an init that reaps slowly counts as exited)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- config -----------------------------------------------------------------------------------

def test_render_plain_listener_is_loopback_only(tmp_path: Path) -> None:
    cfg = BrokerConfig(data_dir=tmp_path, port=12345)
    lines = render_config(cfg, FAKE_INSTALL).splitlines()
    assert [ln for ln in lines if ln.startswith("listener")] == ["listener 12345 127.0.0.1"]
    for expected in ("max_queued_messages 100000", "allow_anonymous false", "per_listener_settings false",
                     "persistence true", f"persistence_location {tmp_path / 'mosquitto'}",
                     "max_packet_size 1048576", f"plugin {FAKE_INSTALL.dynsec_plugin}",
                     f"plugin_opt_config_file {tmp_path / 'mosquitto' / 'dynamic-security.json'}"):
        assert expected in lines
    assert not any(ln.split(" ")[0] in ("certfile", "keyfile", "cafile") for ln in lines)
    assert BrokerConfig(data_dir=tmp_path).port == DEFAULT_MQTT_PORT == 18830


def test_render_tls_listener_binds_all_interfaces(tmp_path: Path) -> None:
    cfg = BrokerConfig(data_dir=tmp_path, tls_certfile=tmp_path / "server.pem", tls_keyfile=tmp_path / "server.key",
                       tls_cafile=tmp_path / "ca.pem")
    assert cfg.tls_port == 8883
    lines = render_config(cfg, FAKE_INSTALL).splitlines()
    assert [ln for ln in lines if ln.startswith("listener")] == ["listener 18830 127.0.0.1", "listener 8883"]
    tls_part = lines[lines.index("listener 8883"):]
    for expected in (f"cafile {tmp_path / 'ca.pem'}", f"certfile {tmp_path / 'server.pem'}",
                     f"keyfile {tmp_path / 'server.key'}", "require_certificate false"):
        assert expected in tls_part


@pytest.mark.parametrize("kwargs", [
    {"host": "0.0.0.0"},  # noqa: S104 - the point: a plain listener off loopback is refused
    {"host": "192.168.1.10"},
    {"tls_port": 8883},
    {"tls_certfile": "server.pem"},
])
def test_config_refuses_insecure_or_incomplete_settings(tmp_path: Path, kwargs: dict) -> None:
    with pytest.raises(ValueError):
        BrokerConfig(data_dir=tmp_path, **kwargs)


# --- finding Mosquitto ------------------------------------------------------------------------

def test_find_mosquitto_on_this_machine() -> None:
    inst = find_mosquitto()
    assert inst.version_tuple >= (2, 0)
    assert inst.binary.is_file() and inst.dynsec_plugin.is_file()


@pytest.mark.parametrize(("platform", "os_release", "expected"), [
    ("linux", {"ID": "debian"}, "sudo apt-get install mosquitto"),
    ("linux", {"ID": "pop", "ID_LIKE": "ubuntu debian"}, "sudo apt-get install mosquitto"),
    ("linux", {"ID": "fedora"}, "sudo dnf install mosquitto"),
    ("darwin", {}, "brew install mosquitto"),
    ("win32", {}, "winget install EclipseFoundation.Mosquitto"),
])
def test_install_command_per_os(platform: str, os_release: dict, expected: str) -> None:
    assert install_command(platform, os_release) == expected


@pytest.fixture
def hidden_mosquitto(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Mosquitto IS installed on this machine, so to exercise "missing" and "too old" the search
    is confined to an empty directory: PATH points there and the fixed sbin/Homebrew/Program
    Files search list is replaced by it. Returns that directory (tests may put a fake there)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    monkeypatch.setenv("PATH", str(bindir))
    monkeypatch.setattr(install_mod, "binary_search_dirs", lambda: [bindir])
    monkeypatch.setattr(install_mod, "plugin_search_dirs", lambda binary: [bindir])
    return bindir


def _fake_mosquitto(bindir: Path, version: str) -> None:
    fake = bindir / "mosquitto"
    fake.write_text(f"#!/bin/sh\necho 'mosquitto version {version}'\necho\nexit 3\n")
    fake.chmod(0o755)


@posix_only
def test_missing_binary_names_install_command(hidden_mosquitto: Path) -> None:
    with pytest.raises(BrokerSetupError) as err:
        find_mosquitto()
    assert "not installed" in str(err.value)
    assert install_command() in str(err.value)
    if install_command() == "sudo apt-get install mosquitto":  # this machine is Debian
        assert str(err.value).endswith("Install it with: sudo apt-get install mosquitto")


@posix_only
def test_old_version_and_missing_plugin_are_reported(hidden_mosquitto: Path) -> None:
    _fake_mosquitto(hidden_mosquitto, "1.6.9")
    with pytest.raises(BrokerSetupError, match=r"1\.6\.9 .* too old.*2\.0") as err:
        find_mosquitto()
    assert install_command() in str(err.value)
    _fake_mosquitto(hidden_mosquitto, "2.0.11")
    with pytest.raises(BrokerSetupError, match="dynamic-security plugin") as err:
        find_mosquitto()
    assert install_command() in str(err.value)


# --- lifecycle --------------------------------------------------------------------------------

@posix_only
def test_start_stop_leaves_no_process(broker_factory: Callable[..., ManagedMosquitto], tmp_path: Path) -> None:
    broker = broker_factory(data_dir=tmp_path / "data dir with spaces")
    pid = broker.pid
    assert pid is not None and psutil.pid_exists(pid)
    assert broker.url == f"mqtt://127.0.0.1:{broker.cfg.port}"
    assert broker.admin.username == "clawfleet-server" and len(broker.admin.password) >= 43
    bdir = broker.cfg.broker_dir
    assert mode(bdir) == 0o700
    for name in ("admin.json", "dynamic-security.json", "mosquitto.conf", "mosquitto.pid"):
        assert mode(bdir / name) == 0o600, name
    broker.stop()
    assert broker.pid is None
    assert not psutil.pid_exists(pid)
    assert not (bdir / "mosquitto.pid").exists()
    assert (bdir / "mosquitto.db").exists()  # persistence saved on SIGTERM
    broker.stop()  # idempotent


def test_output_goes_to_logging(broker_factory: Callable[..., ManagedMosquitto],
                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="clawfleet.broker")
    broker_factory()
    lines = [r.getMessage() for r in caplog.records if r.name == "clawfleet.broker"]
    assert any(line.startswith("mosquitto version") and line.endswith("running") for line in lines)


def test_restart_keeps_admin_and_devices(broker_factory: Callable[..., ManagedMosquitto], tmp_path: Path) -> None:
    first = broker_factory(data_dir=tmp_path / "d")
    with first.admin_client() as ds:
        key = make_device(ds, "keeper")
    admin, port = first.admin, first.cfg.port
    first.stop()
    second = broker_factory(data_dir=tmp_path / "d", port=port)
    assert second.admin == admin
    probe, rc = connect_probe("127.0.0.1", port, "keeper", key)
    probe.close()
    assert rc.value == 0


def test_lost_admin_file_is_repaired(broker_factory: Callable[..., ManagedMosquitto], tmp_path: Path) -> None:
    first = broker_factory(data_dir=tmp_path / "d")
    with first.admin_client() as ds:
        key = make_device(ds, "survivor")
    old_admin, port = first.admin, first.cfg.port
    first.stop()
    first.cfg.admin_path.unlink()
    second = broker_factory(data_dir=tmp_path / "d", port=port)
    assert second.admin.password != old_admin.password
    with second.admin_client() as ds:
        assert ds.list_device_ids() == {"survivor"}
    probe, rc = connect_probe("127.0.0.1", port, "survivor", key)
    probe.close()
    assert rc.value == 0


def test_admin_readable_without_starting(broker_factory: Callable[..., ManagedMosquitto]) -> None:
    running = broker_factory()
    other = ManagedMosquitto(BrokerConfig(data_dir=running.cfg.data_dir, port=running.cfg.port))
    assert other.admin == running.admin
    with pytest.raises(BrokerSetupError, match="admin credentials"):
        _ = broker_factory(start=False).admin


def test_second_broker_on_same_data_dir_is_refused(broker_factory: Callable[..., ManagedMosquitto]) -> None:
    running = broker_factory()
    with pytest.raises(BrokerSetupError, match="already running"):
        broker_factory(data_dir=running.cfg.data_dir)


@posix_only
def test_crash_is_restarted(broker_factory: Callable[..., ManagedMosquitto]) -> None:
    broker = broker_factory(manager_kw={"restart_backoff_s": 0.05})
    with broker.admin_client() as ds:
        key = make_device(ds, "phoenix")
    old = broker.pid
    assert old is not None
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: broker.restart_count == 1, what="the supervisor's restart")
    assert broker.pid not in (None, old) and broker.wait_ready(1) and not broker.failed
    probe, rc = connect_probe("127.0.0.1", broker.cfg.port, "phoenix", key)
    probe.close()
    assert rc.value == 0


def _occupy(port: int) -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen()
    return s


@posix_only
def test_supervisor_gives_up_after_fast_crashes(broker_factory: Callable[..., ManagedMosquitto],
                                                caplog: pytest.LogCaptureFixture) -> None:
    broker = broker_factory(manager_kw={"restart_backoff_s": 0.3, "max_fast_crashes": 2})
    pid = broker.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    blocker = None
    deadline = time.monotonic() + 2
    while blocker is None:  # take the port as soon as the dead broker releases it
        try:
            blocker = _occupy(broker.cfg.port)
        except OSError:
            assert time.monotonic() < deadline, "port never released"
    try:
        wait_for(lambda: broker.failed, what="the supervisor to give up")
    finally:
        blocker.close()
    assert any(r.levelno == logging.CRITICAL and "giving up" in r.getMessage() for r in caplog.records)
    assert broker.pid is None


def test_port_in_use_names_port_and_flag(broker_factory: Callable[..., ManagedMosquitto]) -> None:
    port = free_port()
    with _occupy(port):
        broker = broker_factory(start=False, port=port)
        with pytest.raises(BrokerSetupError) as err:
            broker.start()
    assert f"port {port} on 127.0.0.1 is already in use" in str(err.value)
    assert PORT_FLAG in str(err.value) and PORT_FLAG == "--mqtt-port"
    assert broker.pid is None


def test_exit_during_start_reports_mosquitto_output(broker_factory: Callable[..., ManagedMosquitto],
                                                    tmp_path: Path) -> None:
    broker = broker_factory(start=False, tls_certfile=tmp_path / "missing.pem", tls_keyfile=tmp_path / "missing.key",
                            tls_host="127.0.0.1", tls_port=free_port())
    with pytest.raises(BrokerSetupError, match="exited with code") as err:
        broker.start()
    assert 'Unable to load server certificate' in str(err.value)


def _make_certs(d: Path) -> tuple[Path, Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(2).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False).sign(ca_key, hashes.SHA256()))
    paths = d / "ca.pem", d / "server.pem", d / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


def test_tls_listener_serves_admin(broker_factory: Callable[..., ManagedMosquitto], tmp_path: Path) -> None:
    ca, cert, key = _make_certs(tmp_path)
    # The real TLS listener binds all interfaces; tests bind loopback only (tls_host).
    broker = broker_factory(tls_certfile=cert, tls_keyfile=key, tls_cafile=ca, tls_host="127.0.0.1",
                            tls_port=free_port())
    assert broker.cfg.tls_port is not None
    ctx = ssl.create_default_context(cafile=str(ca))
    with DynSecClient("127.0.0.1", broker.cfg.tls_port, broker.admin.username, broker.admin.password, tls=ctx) as ds:
        assert ds.get_client(broker.admin.username) is not None


# --- parent process ends ----------------------------------------------------------------------

_CHILD = textwrap.dedent("""
    import sys, threading
    from pathlib import Path
    from broker.mosquitto import BrokerConfig, ManagedMosquitto
    broker = ManagedMosquitto(BrokerConfig(data_dir=Path(sys.argv[1]), port=int(sys.argv[2])))
    broker.start()
    print(broker.pid, flush=True)
    threading.Event().wait()
""")


def _spawn_parent(data_dir: Path, port: int) -> tuple[subprocess.Popen[str], int]:
    """A Python process owning a managed broker, in its own session (like a terminal's job)."""
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(data_dir), str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    line = proc.stdout.readline() if proc.stdout else ""
    assert line.strip().isdigit(), f"child did not start a broker (exit {proc.poll()})"
    return proc, int(line)


def _port_closed(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


@posix_only
@pytest.mark.parametrize("target", ["process group (Ctrl-C in a terminal)", "parent only"])
def test_sigint_stops_broker(tmp_path: Path, target: str) -> None:
    port = free_port()
    parent, mosq_pid = _spawn_parent(tmp_path, port)
    if target.startswith("process group"):
        os.killpg(parent.pid, signal.SIGINT)
    else:
        parent.send_signal(signal.SIGINT)
    parent.wait(15)
    wait_for(lambda: gone(mosq_pid), 5, "mosquitto to exit")
    assert _port_closed(port)


@posix_only
def test_orphan_of_killed_parent_is_reclaimed(tmp_path: Path) -> None:
    port = free_port()
    parent, orphan = _spawn_parent(tmp_path, port)
    parent.kill()  # SIGKILL: no atexit, the broker survives its parent
    parent.wait(5)
    assert not gone(orphan)
    broker = ManagedMosquitto(BrokerConfig(data_dir=tmp_path, port=port))
    try:
        broker.start()
        assert gone(orphan)
        assert json.loads(broker.cfg.pid_path.read_text())["pid"] == broker.pid
    finally:
        broker.stop()
