"""``clawfleet-server device import``: the list format, the one-step path with the managed broker
stopped, the one-by-one path through a running server's broker, and the keys file (0600, never
overwritten, keys never on the screen). Real Mosquitto, real SQLite, the CLI as its own process."""

from __future__ import annotations

import csv
import stat
import time
from pathlib import Path

import pytest
from e2e_helpers import server_cli
from mqtt_helpers import connect_probe, free_port

from broker.config import BrokerConfig
from broker.mosquitto import ManagedMosquitto
from fleet_server.devices.bulk import parse_import
from fleet_server.devices.registry import DeviceError
from fleet_server.server import FleetServer
from fleet_server.store.db import open_database
from fleet_server.store.models import AuditEvent, Device
from shared.enrollment import decode_token

LIST = "# office machines\nWeb 1,prod,eu\nweb-1\nbuild-box\n\n!!!\n"


def _keys(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _connects(port: int, device_id: str, key: str) -> bool:
    probe, rc = connect_probe("127.0.0.1", port, device_id, key, device_id)
    probe.close()
    return rc.value == 0


def test_parse_plain_lines_and_csv_with_header() -> None:
    rows, errors = parse_import(LIST, extra_tags="imported")
    assert [(r.device_id, r.name, r.tags) for r in rows] == [("web-1", "Web 1", "prod,eu,imported"),
                                                           ("build-box", "build-box", "imported")]
    assert [(e.line, "earlier in the file" in e.error) for e in errors] == [(3, True), (6, False)]
    rows, errors = parse_import('tags,name,id\n"a,b",Printer,prn-7\n,Scanner,\n')
    assert [(r.line, r.device_id, r.name, r.tags) for r in rows] == [(2, "prn-7", "Printer", "a,b"),
                                                                   (3, "scanner", "Scanner", "")]
    assert errors == []
    with pytest.raises(DeviceError, match="no 'name' column"):
        parse_import("id,tags\nx,y\n")
    assert parse_import("# nothing\n\n") == ([], [])


def test_import_with_the_broker_stopped_writes_everything_at_once(tmp_path: Path) -> None:
    data_dir, port = tmp_path / "server", free_port()
    broker = ManagedMosquitto(BrokerConfig(data_dir=data_dir, port=port))
    broker.start()  # as a first 'run' would: admin account and dynsec file
    broker.stop()
    src = tmp_path / "fleet.txt"
    src.write_text(LIST)
    res = server_cli("device", "import", str(src), "--data-dir", str(data_dir), "--mqtt-port", str(port))
    assert res.exit_code == 1, res.stdout  # two lines skipped
    assert "not running: writing 2 devices in one step" in res.output
    assert "skipped line 3" in res.output and "skipped line 6" in res.output
    keys_path = tmp_path / "fleet-keys.csv"
    assert stat.S_IMODE(keys_path.stat().st_mode) == 0o600
    keys = _keys(keys_path)
    assert [k["device_id"] for k in keys] == ["web-1", "build-box"]
    for k in keys:
        assert k["api_key"] not in res.stdout and k["api_key"] not in res.output  # shown once: in the file only
        assert decode_token(k["enrollment_token"]).api_key == k["api_key"]
    assert "2 devices enrolled, 2 skipped" in res.stdout
    open_database(data_dir)
    assert {d.id: d.tags for d in Device.select()} == {"web-1": "prod,eu", "build-box": ""}
    assert AuditEvent.select().where(AuditEvent.action == "device.add").count() == 2
    broker.start()
    try:
        for k in keys:
            assert _connects(port, k["device_id"], k["api_key"])
        assert not _connects(port, "web-1", keys[1]["api_key"])
    finally:
        broker.stop()
    src2 = tmp_path / "more.txt"
    src2.write_text("gamma\n")
    again = server_cli("device", "import", str(src2), "--keys-out", str(keys_path), "--data-dir", str(data_dir),
                       "--mqtt-port", str(port))
    assert again.exit_code == 2 and "exists" in again.output  # the keys file is never overwritten
    assert len(_keys(keys_path)) == 2 and Device.get_or_none(Device.id == "gamma") is None
    other = tmp_path / "more-keys.csv"
    dry = server_cli("device", "import", str(src), "--dry-run", "--keys-out", str(other), "--data-dir", str(data_dir),
                     "--mqtt-port", str(port))
    assert "already enrolled" in dry.output and "0 devices to enroll" in dry.stdout and not other.exists()


def test_import_through_a_running_server(fleet: FleetServer, tmp_path: Path) -> None:
    src = tmp_path / "more.csv"
    src.write_text("name,tags\nalpha,lab\nbeta,lab\n")
    keys_path = tmp_path / "secret" / "k.csv"
    keys_path.parent.mkdir()
    res = server_cli("device", "import", str(src), "--keys-out", str(keys_path), "--data-dir",
                     str(fleet.opts.data_dir), "--mqtt-port", str(fleet.opts.mqtt_port))
    assert res.exit_code == 0, res.stdout + res.output
    assert "the broker is running: enrolling 2 devices one by one" in res.output
    assert "enrolled 2/2" in res.output and "2 devices enrolled, 0 skipped" in res.stdout
    keys = _keys(keys_path)
    assert stat.S_IMODE(keys_path.stat().st_mode) == 0o600 and len(keys) == 2
    for k in keys:
        assert k["api_key"] not in res.stdout + res.output
        assert _connects(fleet.opts.mqtt_port, k["device_id"], k["api_key"])
    deadline = time.monotonic() + 15  # the server's registry sync picks them up
    while time.monotonic() < deadline and not {"alpha", "beta"} <= {d.device_id for d in fleet.state.snapshot()}:
        time.sleep(0.2)
    assert {"alpha", "beta"} <= {d.device_id for d in fleet.state.snapshot()}
