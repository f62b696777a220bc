"""CSV export of the sessions, runs, tools and versions tables (formula-safe).

Every cell goes through :func:`cell`: a text cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a
carriage return gets a leading ``'`` so a spreadsheet shows it as text instead of running it (OWASP "CSV
injection"; session keys, labels and tool names come from devices). Numbers are written as they are; None
is an empty cell.

TODO(csv): once the shared CSV cell writer (``fleet_server.exports.csv_cells``) is on main, make :func:`cell`
its ``safe_cell`` (or write through its ``SafeCsvWriter``): this is the only place these exports write cells.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def cell(value: Any) -> Any:
    """``value`` as a CSV cell: formula-looking text prefixed with ``'``, None as ``""``."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def table_csv(columns: Sequence[str], rows: Iterable[dict]) -> str:
    """``rows`` (dicts) as CSV text with a header line of ``columns`` (RFC 4180 line ends)."""
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(columns)
    for r in rows:
        w.writerow([cell(r.get(c)) for c in columns])
    return out.getvalue()
