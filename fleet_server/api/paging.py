"""Cursor paging of grouped results (``/api/v1/usage``): rows sorted by their group key; a cursor
is the last row's key (URL-safe base64 of its JSON list), so a page never depends on an offset."""

from __future__ import annotations

import base64
import binascii
import bisect
import json
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")

DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000


class CursorError(ValueError):
    """A cursor that is not one of ours (the message says what to pass)."""


def encode_cursor(key: Sequence[str]) -> str:
    """The cursor of a row whose sort key is ``key`` (strings)."""
    return base64.urlsafe_b64encode(json.dumps(list(key), separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, ...]:
    """The key in a cursor. Raises :class:`CursorError`."""
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())
    except (ValueError, UnicodeDecodeError, binascii.Error):
        key = None
    if not isinstance(key, list) or not all(isinstance(k, str) for k in key) or len(key) > 10:
        raise CursorError("bad cursor; pass the next_cursor of the previous page")
    return tuple(key)


def page(rows: list[T], key: Callable[[T], tuple[str, ...]], cursor: str | None,
         limit: int) -> tuple[list[T], str | None]:
    """The ``limit`` rows after ``cursor`` (``rows`` sorted by ``key``) and the next cursor (None on
    the last page). Raises :class:`CursorError`."""
    start = bisect.bisect_right([key(r) for r in rows], decode_cursor(cursor)) if cursor else 0
    chunk = rows[start:start + limit]
    more = start + limit < len(rows)
    return chunk, encode_cursor(key(chunk[-1])) if more and chunk else None
