"""A page's rows as one HTML table (one element instead of a few per cell: fast to send and to page).

Callers escape every value they put in a cell (``html.escape``); NiceGUI's ``ui.html`` also sanitises on the
client. The table scrolls sideways inside its own box, so the page never does on a phone.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

TABLE_END = "</tbody></table></div>"


def table_start(testid: str, headers: Sequence[str]) -> str:
    """The opening of a table (``data-testid`` ``testid``) up to its body, with one header cell per header."""
    cells = "".join(f'<th class="px-2 py-1 whitespace-nowrap">{escape(h)}</th>' for h in headers)
    return (f'<div class="w-full overflow-x-auto"><table class="w-full text-sm" data-testid="{escape(testid)}">'
            f'<thead><tr class="text-xs uppercase text-gray-500 text-left">{cells}</tr></thead><tbody>')
