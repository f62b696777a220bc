"""CSV export of the tokens table (and its parser, so the export round-trips).

Columns: the group keys (``device`` is followed by ``device_name``, the device's display name),
then ``messages, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, total_tokens,
error_messages, cost_usd, priced_messages, unpriced_tokens, failed_turns``. ``cost_usd`` is empty when nothing in
the row was priced (unpriced is not $0); costs are written with full precision.
"""

from __future__ import annotations

import csv
import io

from fleet_server.store.usage.sums import ALL_SUMS, UsageSums

SUM_COLUMNS = ALL_SUMS
NAME_COLUMN = "device_name"


def header(keys: list[str]) -> list[str]:
    """The key columns of an export grouped by ``keys`` (with ``device_name`` after ``device``)."""
    out = []
    for k in keys:
        out.append(k)
        if k == "device":
            out.append(NAME_COLUMN)
    return out


def to_csv(rows: list[UsageSums], keys: list[str], names: dict[str, str] | None = None) -> str:
    """The rows as CSV text (header line first, ``\\r\\n`` line ends as RFC 4180). ``names``: device id
    -> display name (a device missing from it, e.g. deleted with its data kept, gets its id)."""
    names = names or {}
    out = io.StringIO()
    w = csv.writer(out)
    cols = header(keys)
    w.writerow([*cols, *SUM_COLUMNS])
    for r in rows:
        d = r.as_json()
        if "device" in d:
            d[NAME_COLUMN] = names.get(d["device"], d["device"])
        w.writerow([*(d.get(k, "") for k in cols),
                    *("" if d[c] is None else repr(d[c]) if c == "cost_usd" else d[c] for c in SUM_COLUMNS)])
    return out.getvalue()


def from_csv(text: str) -> list[dict]:
    """Parse :func:`to_csv` output: key columns as strings, sums as int, ``cost_usd`` float or None."""
    rows = []
    for rec in csv.DictReader(io.StringIO(text)):
        row: dict = {}
        for k, v in rec.items():
            if k == "cost_usd":
                row[k] = float(v) if v else None
            elif k in SUM_COLUMNS:
                row[k] = int(v)
            else:
                row[k] = v
        rows.append(row)
    return rows
