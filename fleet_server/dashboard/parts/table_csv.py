"""CSV export of the sessions, runs, tools and versions tables (formula-safe).

Every cell goes through :func:`cell`, the shared neutraliser
(:func:`fleet_server.exports.csv_cells.safe_cell`): a text cell that starts with ``=``, ``+``, ``-``,
``@``, a tab or a carriage return gets a leading ``'`` so a spreadsheet shows it as text instead of
running it (OWASP "CSV injection"; session keys, labels and tool names come from devices). Numbers are
written as they are; None is an empty cell.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from typing import Any

from fleet_server.exports.csv_cells import SafeCsvWriter, safe_cell


def cell(value: Any) -> Any:
    """``value`` as a CSV cell: formula-looking text prefixed with ``'``, None as ``""``."""
    return "" if value is None else safe_cell(value)


def table_csv(columns: Sequence[str], rows: Iterable[dict]) -> str:
    """``rows`` (dicts) as CSV text with a header line of ``columns`` (RFC 4180 line ends)."""
    out = io.StringIO()
    w = SafeCsvWriter(out)
    w.writerow(columns)
    for r in rows:
        w.writerow([cell(r.get(c)) for c in columns])
    return out.getvalue()
