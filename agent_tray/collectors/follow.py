"""Follow append-only line files (OpenClaw logs, legacy JSONL transcripts) by byte offset.

A file's identity is the hash of its first complete line, not its name or inode: OpenClaw
renames files (log rotation ``x.log`` -> ``x.1.log``, session reset ``s.jsonl`` ->
``s.jsonl.reset.<ts>``, optionally zstd-compressed to ``….zst``) and a rename keeps the first
line, so the read position survives it; a copy of a file (copy-truncate rotation) is the same
identity too, while a truncated or new file starts with a different first line. The first
line holds a millisecond timestamp (log line, session header), which makes it unique in
practice. A file whose first line is not yet complete is left alone until it is.

A position is ``{"off": bytes consumed, "tail": hash of the 64 bytes before off}``. Before
resuming, the tail is re-checked: if the bytes before ``off`` changed (the file was rewritten
in place with the same first line), reading restarts at 0. Only newline-terminated lines are
consumed, so a line being written is picked up whole on a later call; ``final=True`` (for
immutable archives) also accepts an unterminated last line.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import BinaryIO

from agent_tray.collectors.result import short_hash

TAIL_BYTES = 64
FIRST_LINE_LIMIT = 1 << 20
"""A first line longer than this (bytes) is identified by its first MiB."""
MAX_LINE_BYTES = 64 << 20
"""A single line longer than this (bytes) is skipped rather than held in memory."""
ZSTD_SUFFIX = ".zst"


class _NeverRaised(Exception):
    """Stands in for ``zstandard.ZstdError`` while zstandard is not loaded (nothing can raise it then)."""


def zstd() -> ModuleType:
    """The ``zstandard`` module, imported on first use: only OpenClaw's compressed transcript rows and
    ``*.zst`` archives need it, so an agent without them does not load it."""
    import zstandard

    return zstandard


def zstd_error() -> type[Exception]:
    """``zstandard.ZstdError`` once zstandard is loaded, else an exception nothing raises; for
    ``except (OSError, zstd_error())`` around reads that may decompress."""
    mod = sys.modules.get("zstandard")
    return mod.ZstdError if mod is not None else _NeverRaised


def open_stream(path: Path) -> BinaryIO:
    """Open a file for reading bytes, transparently decompressing ``*.zst`` (zstd)."""
    raw = open(path, "rb")  # returned to the caller, closed by it
    if path.name.endswith(ZSTD_SUFFIX):
        return zstd().ZstdDecompressor().stream_reader(raw, closefd=True)  # type: ignore[return-value]
    return raw


def read_first_line(path: Path) -> bytes | None:
    """The file's first line including its newline, or ``None`` when not yet complete.

    A first line longer than :data:`FIRST_LINE_LIMIT` is cut there (still an identity).
    Unreadable files (gone, no permission, corrupt zstd) also give ``None``.
    """
    try:
        with open_stream(path) as f:
            buf = b""
            size = 4096  # headers and log lines are short; grow only when needed
            while len(buf) < FIRST_LINE_LIMIT:
                chunk = f.read(size)
                size = min(size * 4, 1 << 20)
                if not chunk:
                    return None
                nl = chunk.find(b"\n")
                if nl >= 0:
                    return buf + chunk[: nl + 1]
                buf += chunk
            return buf[:FIRST_LINE_LIMIT]
    except (OSError, zstd_error()):
        return None


def identity(first_line: bytes) -> str:
    """File identity from its first line (24 hex chars of SHA-256)."""
    return short_hash(first_line)


@dataclass
class Chunk:
    """Complete lines read from one file in one call.

    ``lines`` are ``(byte offset of the line start, line bytes without the newline)``;
    ``end`` is the new offset (bytes consumed), ``tail`` the hash to store with it,
    ``restarted`` tells that the stored position no longer matched and reading began at 0,
    ``eof`` that everything complete up to the end of the file was consumed.
    """

    lines: list[tuple[int, bytes]]
    end: int
    tail: str
    restarted: bool
    eof: bool


def _skip(f: BinaryIO, n: int, seekable: bool) -> bytes:
    """Advance ``n`` bytes; return the last :data:`TAIL_BYTES` of them (``\0``-prefixed if short)."""
    if n <= 0:
        return b""
    if seekable:
        start = max(0, n - TAIL_BYTES)
        f.seek(start)
        tail = f.read(n - start)
        return tail if len(tail) == n - start else b"\x00" + tail  # file shrank
    tail = b""
    left = n
    while left > 0:
        chunk = f.read(min(left, 1 << 20))
        if not chunk:
            return b"\x00" + tail  # shorter than the position: not the same content
        left -= len(chunk)
        tail = (tail + chunk)[-TAIL_BYTES:]
    return tail


def tail_of(data: bytes) -> str:
    """Tail hash of the bytes before a position (the last :data:`TAIL_BYTES` of ``data``)."""
    return short_hash(data[-TAIL_BYTES:], 16)


def read_lines(path: Path, off: int, tail: str, max_bytes: int, *, final: bool = False) -> Chunk:
    """Read complete lines from ``path`` after byte ``off`` (decompressed bytes for ``.zst``).

    Reads at least one whole line when one is available, otherwise stops at about
    ``max_bytes``. Raises ``OSError``/``zstandard.ZstdError`` (:func:`zstd_error`) when the file cannot be read.
    """
    seekable = not path.name.endswith(ZSTD_SUFFIX)
    if off > 0:
        with open_stream(path) as f:
            before = _skip(f, off, seekable)
            if tail_of(before) == tail:
                return _read_body(f, off, max_bytes, final, False, before)
    with open_stream(path) as f:
        return _read_body(f, 0, max_bytes, final, off > 0, b"")


def _read_body(f: BinaryIO, off: int, max_bytes: int, final: bool, restarted: bool,
               before: bytes) -> Chunk:
    lines: list[tuple[int, bytes]] = []
    pending = b""  # bytes after the last newline seen
    pos = off  # offset of pending[0]
    consumed = before[-TAIL_BYTES:]  # the last bytes before pos
    read_total = 0
    eof = False
    chunk_size = max(4096, min(max_bytes, 1 << 20))
    while True:
        chunk = f.read(chunk_size)
        if not chunk:
            eof = True
            break
        read_total += len(chunk)
        data = pending + chunk
        start = 0
        for line_end in _newlines(data):
            if line_end - start <= MAX_LINE_BYTES:
                lines.append((pos + start, data[start:line_end]))
            start = line_end + 1
        if start:
            if start >= TAIL_BYTES:
                consumed = data[start - TAIL_BYTES:start]
            else:
                consumed = (consumed + data[:start])[-TAIL_BYTES:]
            pos += start
            pending = data[start:]
        else:
            pending = data
        if len(pending) > MAX_LINE_BYTES:  # a runaway line: count its bytes, hold only a few
            pos += len(pending) - 1
            consumed = (consumed + pending[:-1])[-TAIL_BYTES:]
            pending = pending[-1:]
        if read_total >= max_bytes and lines:
            break
    if eof and final and pending.strip():
        lines.append((pos, pending))
        consumed = (consumed + pending)[-TAIL_BYTES:]
        pos += len(pending)
    return Chunk(lines=lines, end=pos, tail=tail_of(consumed), restarted=restarted, eof=eof)


def _newlines(data: bytes) -> Iterator[int]:
    i = data.find(b"\n")
    while i >= 0:
        yield i
        i = data.find(b"\n", i + 1)


def tail_at(path: Path, off: int) -> str:
    """The tail hash to store with position ``off`` of an uncompressed file (see :func:`read_lines`).

    Raises ``OSError`` when the file cannot be read."""
    with open(path, "rb") as f:
        return tail_of(_skip(f, off, True))


def stat_or_none(path: Path) -> os.stat_result | None:
    """``os.stat`` that returns ``None`` for a file that vanished or cannot be read."""
    try:
        return path.stat()
    except OSError:
        return None
