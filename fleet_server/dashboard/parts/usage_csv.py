"""CSV export of the tokens table (and its parser, so the export round-trips).

Columns: the group keys, then ``input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
total_tokens, messages, failed_turns, cost_usd, priced_messages, unpriced_tokens``. ``cost_usd`` is empty when
nothing in the row was priced (unpriced is not $0); costs are written with full precision.
"""

from __future__ import annotations

import csv
import io

from fleet_server.store.usage.summary import UsageRow

SUM_COLUMNS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "total_tokens",
               "messages", "failed_turns", "cost_usd", "priced_messages", "unpriced_tokens")


def to_csv(rows: list[UsageRow], keys: list[str]) -> str:
    """The rows as CSV text (header line first, ``\\r\\n`` line ends as RFC 4180)."""
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow([*keys, *SUM_COLUMNS])
    for r in rows:
        d = r.as_json()
        w.writerow([*(d.get(k, "") for k in keys),
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
