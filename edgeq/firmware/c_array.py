"""Bytes → C array initializer text, vectorised with numpy.

Why not a loop or ``xxd -i``: a per-byte Python loop runs ~2 MB/s and ``xxd`` ~10-14 MB/s
here; models reach tens of MB, and ``edgeq build`` re-emits on every run. Every full
line has the same shape, so the body is written in three memory-speed passes: the line
template (``  0x00, 0x00, ... 0x00,``) broadcast over the whole buffer, ``binascii``'s hex
digits of the input, and one strided copy of those digit pairs (as 2-byte units) into the
``00`` slots. No per-byte Python, no table gathers: ~35 ms of CPU for 10 MB, split over
threads (numpy's copies release the GIL).

Output format (12 bytes per line, like ``xxd -i``, trailing comma allowed by C)::

      0x1c, 0x00, 0x00, 0x00, 0x54, 0x46, 0x4c, 0x33, 0x00, 0x00, 0x12, 0x00,
"""

from __future__ import annotations

import binascii
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

BYTES_PER_LINE = 12
_INDENT = b"  "
_LINE = np.frombuffer(_INDENT + b"0x00, " * (BYTES_PER_LINE - 1) + b"0x00,\n", dtype=np.uint8)
_DIGITS_AT = slice(2, None, 3)  # the "00" of each "0x00, " as 2-byte units: 4 + 6k bytes in
_THREADS = min(4, os.cpu_count() or 1)
_LINES_PER_THREAD = 50_000  # below ~600 KB of model a thread costs more than it saves


def _fill(lines: np.ndarray, data: np.ndarray) -> None:
    """Write full lines for ``data`` (12 bytes per row of ``lines``, an even address)."""
    lines[...] = _LINE
    digits = np.frombuffer(binascii.hexlify(data), dtype=np.uint16).reshape(-1, BYTES_PER_LINE)
    lines.view(np.uint16)[:, _DIGITS_AT] = digits


def _format_tail(data: bytes) -> bytes:
    """The last, partial line (< 12 bytes): too short to be worth vectorising."""
    if not data:
        return b""
    return _INDENT + b" ".join(b"0x%02x," % b for b in data) + b"\n"


def _format_into(data: bytes | bytearray | memoryview, head: bytes, tail: bytes) -> np.ndarray:
    """Lay out ``head`` + body + ``tail`` in one uint8 buffer (see ``format_c_bytes``)."""
    pending = _claim(data)
    if pending is not None:
        buf, start, end = pending.result()
        if len(head) <= start and len(tail) <= len(buf) - end:  # the text fits around the body
            buf[start - len(head) : start] = np.frombuffer(head, dtype=np.uint8)
            buf[end : end + len(tail)] = np.frombuffer(tail, dtype=np.uint8)
            return buf[start - len(head) : end + len(tail)]
    buf, start, end = _layout(data, len(head), len(tail))
    buf[start - len(head) : start] = np.frombuffer(head, dtype=np.uint8)
    buf[end : end + len(tail)] = np.frombuffer(tail, dtype=np.uint8)
    return buf[start - len(head) : end + len(tail)]


def _layout(data: bytes | bytearray | memoryview, head_room: int, tail_room: int) -> tuple[np.ndarray, int, int]:
    """A buffer with the formatted body at ``[start:end]`` and at least the given room
    around it (``start`` is even: the digits are copied as 2-byte units)."""
    view = np.frombuffer(data, dtype=np.uint8)
    full = len(view) // BYTES_PER_LINE
    last = _format_tail(bytes(view[full * BYTES_PER_LINE :]))
    start = head_room + head_room % 2
    body = full * len(_LINE)
    buf = np.empty(start + body + len(last) + tail_room, dtype=np.uint8)
    if full:
        lines = buf[start : start + body].reshape(full, len(_LINE))
        workers = min(_THREADS, max(1, full // _LINES_PER_THREAD))
        bounds = [full * k // workers for k in range(workers + 1)]

        def fill(lo: int, hi: int) -> None:
            _fill(lines[lo:hi], view[lo * BYTES_PER_LINE : hi * BYTES_PER_LINE])

        # numpy's copies release the GIL: the parts run on all cores, this thread doing
        # the first (fewer thread hand-offs than a pool when the main thread is busy).
        if workers == 1:
            fill(0, full)
        else:
            with ThreadPoolExecutor(workers - 1) as pool:
                rest = [pool.submit(fill, lo, hi) for lo, hi in zip(bounds[1:-1], bounds[2:])]
                fill(bounds[0], bounds[1])
                for future in rest:
                    future.result()
    end = start + body + len(last)
    buf[start + body : end] = np.frombuffer(last, dtype=np.uint8)
    return buf, start, end


class _Prefetch:
    """The body of one ``prefetch`` call, formatted by a daemon thread."""

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self.data = data
        self._done = threading.Event()
        self._value: tuple[np.ndarray, int, int] | None = None
        self._error: BaseException | None = None
        threading.Thread(target=self._run, name="edgeq-c-array", daemon=True).start()

    def _run(self) -> None:
        try:
            self._value = _layout(self.data, _HEAD_ROOM, _TAIL_ROOM)
        except BaseException as exc:  # re-raised in the caller's thread
            self._error = exc
        finally:
            self._done.set()

    def result(self) -> tuple[np.ndarray, int, int]:
        self._done.wait()
        if self._error is not None:
            raise self._error
        assert self._value is not None
        return self._value


_HEAD_ROOM = _TAIL_ROOM = 1 << 16  # the text around an array in a source: a banner, a declaration
_pending: _Prefetch | None = None


def prefetch(data: bytes | bytearray | memoryview) -> None:
    """Start formatting ``data`` in the background for the next ``format_c_buffer(data, ...)``.

    Why: ``edgeq emit`` knows the model bytes long before it has rendered the text that
    goes around the array (names, sanitized options, the banner); ``np.take`` releases
    the GIL, so the body is formatted on another core while this thread imports Jinja
    and parses the model. The next format call with the *same object* (``is``) uses it
    when the text fits the room left around the body (64 KiB each side), else formats
    anew. Output is identical either way. One prefetch at a time; a new call or
    ``discard_prefetch`` drops the previous one.
    """
    global _pending
    _pending = _Prefetch(data)


def discard_prefetch() -> None:
    """Forget a prefetch nobody will claim (its thread finishes on its own)."""
    global _pending
    _pending = None


def _claim(data: bytes | bytearray | memoryview) -> _Prefetch | None:
    global _pending
    pending, _pending = _pending, None
    if pending is not None and pending.data is data:
        return pending
    _pending = pending  # another object: leave it for its own caller
    return None


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


__all__ = ["BYTES_PER_LINE", "format_c_bytes", "format_c_buffer", "format_c_bytes_text", "parse_c_bytes", "prefetch", "discard_prefetch"]
