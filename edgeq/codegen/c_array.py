"""Bytes → C array initializer text, vectorised with numpy.

Why not a loop or ``xxd -i``: a per-byte Python loop runs ~2 MB/s and ``xxd`` ~10-14 MB/s
here; models reach tens of MB, and ``edgeq build`` re-emits on every run. This formatter
looks up two input bytes at a time in a 65536-entry table of ready-made text and writes
each output line as one structured numpy record (indent + first pair, four middle pairs,
last pair + newline), so the whole body is produced by three gathers into one buffer.

Output format (12 bytes per line, like ``xxd -i``, trailing comma allowed by C)::

      0x1c, 0x00, 0x00, 0x00, 0x54, 0x46, 0x4c, 0x33, 0x00, 0x00, 0x12, 0x00,
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import numpy as np

BYTES_PER_LINE = 12
_INDENT = b"  "
_THREADS = min(4, os.cpu_count() or 1)
_LINES_PER_THREAD = 50_000  # below ~600 KB of model a thread costs more than it saves


@lru_cache(maxsize=1)
def _tables() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.dtype]:
    """Build the pair tables once per process (~15 ms): first/middle/last-of-line spellings."""
    single = np.frombuffer(b"".join(b"0x%02x, " % i for i in range(256)), dtype=np.uint8).reshape(256, 6)
    codes = np.arange(65536)
    # Little-endian uint16 view of the input: low byte comes first in memory.
    pair = np.concatenate([single[codes & 0xFF], single[codes >> 8]], axis=1)  # (65536, 12)
    last = pair.copy()
    last[:, -1] = ord("\n")
    first = np.concatenate([np.full((65536, len(_INDENT)), ord(" "), dtype=np.uint8), pair], axis=1)

    def as_void(table: np.ndarray) -> np.ndarray:
        table = np.ascontiguousarray(table)
        return table.view(f"V{table.shape[1]}").reshape(65536)

    line = np.dtype([("first", f"V{len(_INDENT) + 12}"), ("middle", "V12", (4,)), ("last", "V12")])
    assert line.itemsize == len(_INDENT) + BYTES_PER_LINE * 6
    return as_void(first), as_void(pair), as_void(last), line


def _format_tail(data: bytes) -> bytes:
    """The last, partial line (< 12 bytes): too short to be worth vectorising."""
    if not data:
        return b""
    return _INDENT + b" ".join(b"0x%02x," % b for b in data) + b"\n"


def _format_into(data: bytes | bytearray | memoryview, head: bytes, tail: bytes) -> np.ndarray:
    """Lay out ``head`` + body + ``tail`` in one uint8 buffer (see ``format_c_bytes``)."""
    view = np.frombuffer(data, dtype=np.uint8)
    full = len(view) // BYTES_PER_LINE
    last = _format_tail(bytes(view[full * BYTES_PER_LINE :]))
    first, middle, end, line = _tables()
    body = full * line.itemsize
    buf = np.empty(len(head) + body + len(last) + len(tail), dtype=np.uint8)
    buf[: len(head)] = np.frombuffer(head, dtype=np.uint8)
    if full:
        pairs = view[: full * BYTES_PER_LINE].view("<u2").reshape(full, BYTES_PER_LINE // 2)
        out = buf[len(head) : len(head) + body].view(line)
        # np.take releases the GIL: big arrays are split over threads (2-3x faster on 2+ cores).
        workers = min(_THREADS, max(1, full // _LINES_PER_THREAD))
        bounds = [full * k // workers for k in range(workers + 1)]

        def gather(lo: int, hi: int) -> None:
            np.take(first, pairs[lo:hi, 0], out=out["first"][lo:hi], mode="clip")
            np.take(middle, pairs[lo:hi, 1:5], out=out["middle"][lo:hi], mode="clip")
            np.take(end, pairs[lo:hi, 5], out=out["last"][lo:hi], mode="clip")

        if workers == 1:
            gather(0, full)
        else:
            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(gather, bounds[:-1], bounds[1:]))
    rest = len(head) + body
    buf[rest : rest + len(last)] = np.frombuffer(last, dtype=np.uint8)
    buf[rest + len(last) :] = np.frombuffer(tail, dtype=np.uint8)
    return buf


def format_c_bytes(data: bytes | bytearray | memoryview, *, head: bytes = b"", tail: bytes = b"") -> bytes:
    """Return ``head`` + the initializer body for ``data`` + ``tail`` as ASCII bytes.

    One line per 12 input bytes. ``head``/``tail`` (the text around the array in a
    source file) are written into the same buffer, so a 60 MB source is built in one
    place instead of once per concatenation; ``bytes`` rather than ``str`` skips a
    decode/encode round trip.
    """
    return _format_into(data, head, tail).tobytes()


def format_c_buffer(data: bytes | bytearray | memoryview, *, head: bytes = b"", tail: bytes = b"") -> memoryview:
    """``format_c_bytes`` without the final copy: a read-only view of the formatted text
    (hashable by ``hashlib``, writable to files, comparable with ``bytes``)."""
    return memoryview(_format_into(data, head, tail)).toreadonly()


def format_c_bytes_text(data: bytes | bytearray | memoryview) -> str:
    """``format_c_bytes`` as text, for templates (the ``c_bytes`` Jinja filter)."""
    return format_c_bytes(data).decode("ascii")


def parse_c_bytes(text: str | bytes) -> bytes:
    """Inverse of ``format_c_bytes`` (for tests and round-trip checks)."""
    if isinstance(text, bytes):
        text = text.decode("ascii")
    return bytes(int(tok, 16) for tok in text.replace("\n", " ").split(",") if tok.strip())


__all__ = ["BYTES_PER_LINE", "format_c_bytes", "format_c_buffer", "format_c_bytes_text", "parse_c_bytes"]
