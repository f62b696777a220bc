"""A full disk (a real 48 MiB tmpfs holding the data dir; mounting needs root): ``/healthz`` says so
within seconds while nothing commits (it used to say ok for 45 s and more), the server restarts
while the disk is still full (it used to end in a traceback), and once space is free samples are
stored again. Real server process, Mosquitto and SQLite."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest
from e2e_helpers import ServerProcess, server_cli, wait_for
from mqtt_helpers import connect_probe, free_port
from payload_helpers import dumps, now_ms, telemetry

from shared.enrollment import decode_token
from shared.topics import Channel, device_topic

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("mount"),
                                reason="mounting a small tmpfs needs root")


def healthz(port: int) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())
    except OSError:
        return 0, {}


def committed_within(port: int, seconds: float) -> bool:
    """True when ingest committed a batch in the last ``seconds``."""
    age = healthz(port)[1].get("ingest", {}).get("last_commit_age_s")
    return age is not None and age < seconds


def stored(data_dir, device_id: str, ts: int) -> bool:
    """True when the server's database holds the device's sample ``ts`` (read with sqlite3, read-only)."""
    con = sqlite3.connect(f"file:{data_dir / 'clawfleet.sqlite'}?mode=ro", uri=True)
    try:
        return con.execute("SELECT 1 FROM sample WHERE device = ? AND ts = ?", (device_id, ts)).fetchone() is not None
    finally:
        con.close()


def fill(path) -> None:
    """Write zeros into ``path`` until the disk is full."""
    with open(path, "wb") as f:
        try:
            while True:
                f.write(b"\0" * (1 << 20))
                f.flush()
        except OSError:
            pass


@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / "disk"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_disk_is_reported_survives_a_restart_and_recovers(small_disk, tmp_path):
    srv = ServerProcess(small_disk / "data", free_port(), free_port(), tmp_path / "server.log", "--no-local-agent")
    stop = threading.Event()
    try:
        srv.start()
        res = server_cli("device", "add", "Disk Box", "--data-dir", str(srv.data_dir))
        assert res.exit_code == 0, res.output
        enr = decode_token(res.output.split("keep it secret):\n")[1].split()[0])
        device, rc = connect_probe("127.0.0.1", srv.mqtt_port, enr.device_id, enr.api_key)
        assert rc.value == 0
        topic = device_topic(enr.device_id, Channel.TELEMETRY)

        def publish() -> None:  # a sample every half second, as an agent would
            while not stop.is_set():
                device.client.publish(topic, dumps(telemetry(enr.device_id, ts=now_ms())), qos=1)
                stop.wait(0.5)

        threading.Thread(target=publish, daemon=True).start()
        wait_for(lambda: healthz(srv.port)[0] == 200 and committed_within(srv.port, 2), 30,
                 what="samples being stored")

        fill(small_disk / "filler")
        filled = time.monotonic()
        status, body = wait_for(lambda: (lambda h: h if h[0] == 503 else None)(healthz(srv.port)), 30,
                                what="/healthz to report the full disk")
        took = time.monotonic() - filled
        print(f"/healthz not ok {took:.1f} s after the disk filled: {body.get('reason')}")
        assert took < 20 and ("disk" in body["reason"] or "refuses writes" in body["reason"]), body
        stop.set()

        srv.stop()
        srv.start(timeout=60, healthy=False)  # the disk is still full: it starts, and says what is wrong
        log = (tmp_path / "server.log").read_text()
        assert "Traceback" not in log.split("ClawFleet dashboard")[-1]
        wait_for(lambda: healthz(srv.port)[0] == 503, 30, what="/healthz to report the full disk after the restart")

        (small_disk / "filler").unlink()
        wait_for(lambda: healthz(srv.port)[0] == 200, 60, what="/healthz ok again once space is free")
        device.close()
        device, rc = connect_probe("127.0.0.1", srv.mqtt_port, enr.device_id, enr.api_key)
        assert rc.value == 0
        ts = now_ms()
        device.publish(topic, dumps(telemetry(enr.device_id, ts=ts)))
        wait_for(lambda: stored(srv.data_dir, enr.device_id, ts), 60, what="a sample stored again")
        device.close()
    finally:
        stop.set()
        srv.stop()
