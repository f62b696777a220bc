"""``clawfleet-server install-service --output-dir``: the unit file, checked without enabling anything."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

from typer.testing import CliRunner

from fleet_server.cli.main import app


def test_server_unit_runs_as_its_own_user_with_data_in_var_lib(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["install-service", "--output-dir", str(tmp_path), "--run-args",
                                   "--host 0.0.0.0 --behind-proxy"])
    assert res.exit_code == 0, res.output
    unit = tmp_path / "clawfleet-server.service"
    assert f"systemd unit: {unit}" in res.output
    parser = configparser.ConfigParser(interpolation=None, strict=True)  # strict: no key given twice
    parser.read_string(unit.read_text())
    svc = parser["Service"]
    assert (svc["User"], svc["Group"], svc["StateDirectory"]) == ("clawfleet", "clawfleet", "clawfleet")
    assert svc["Environment"] == "CLAWFLEET_DATA_DIR=/var/lib/clawfleet" and svc["ProtectSystem"] == "strict"
    assert svc["LimitNOFILE"] == "65536"  # the managed Mosquitto holds one descriptor per device
    assert svc["ExecStart"].endswith("run --data-dir /var/lib/clawfleet --host 0.0.0.0 --behind-proxy")
    assert parser["Install"]["WantedBy"] == "multi-user.target"
    if shutil.which("systemd-analyze"):
        out = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
        assert f"{unit}:" not in out.stderr, out.stderr
