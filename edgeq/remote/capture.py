"""Bounded collection of what a device prints, shared by the SSH and the local transport.

Why: a device is untrusted input. One that floods stdout or stderr (a runaway script, a
broken interpreter, a hostile box) must not be able to exhaust the host's memory, and one
endless line must not be buffered whole while we wait for its newline. The figures below
are what the README's "Limits and safety" section promises.
"""

from __future__ import annotations

from typing import Callable, Optional

from edgeq.remote.common import PROTOCOL_PREFIXES, describe_command
from edgeq.errors import RemoteError

STDOUT_LIMIT = 32 << 20  # the result document: <= 16 MiB of output tensors (base64) + eval predictions
STDERR_LIMIT = 1 << 20  # diagnostics kept for error messages (protocol lines are consumed, not kept)
LINE_LIMIT = 64 << 10  # longest stderr line passed on whole; protocol lines are ~100 bytes
_TRUNCATED = b" [line truncated]"


class OutputLimitExceeded(Exception):
    """A stream went over its limit; the caller ends the command and reports it."""

    def __init__(self, stream: str, limit: int) -> None:
        super().__init__(f"{stream} over {limit} bytes")
        self.stream, self.limit = stream, limit


def limit_error(where: str, exc: OutputLimitExceeded, command: str) -> RemoteError:
    """The user-facing message: which stream, the cap, and that the command was ended."""
    return RemoteError(
        f"the command on {where} wrote more than {exc.limit >> 20} MiB to {exc.stream}; edgeq stopped reading "
        f"and ended it (device output is capped so that a runaway device cannot exhaust memory): "
        f"{describe_command(command)}",
        hint="run the command by hand on the device to see what floods its output",
    )


class Capture:
    """One stream's bytes, kept up to ``limit``; with ``on_line``, split into lines as they arrive.

    Line mode (stderr): every complete line goes to ``on_line`` as text, at most
    ``LINE_LIMIT`` bytes of it (the rest of a longer line is dropped, but still counted);
    protocol lines (``EDGEQ-PROGRESS``, ``EDGEQ-PID``) are handed on but not kept, so a long
    benchmark's progress never fills the buffer.
    """

    def __init__(self, stream: str, limit: int, on_line: Optional[Callable[[str], None]] = None) -> None:
        self.stream, self.limit, self.on_line = stream, limit, on_line
        self._kept = bytearray()
        self._pending = bytearray()
        self._counted = 0
        self._skipping = False  # inside the dropped rest of an over-long line

    def feed(self, chunk: bytes) -> None:
        """Take the next chunk; raises OutputLimitExceeded once the stream is over its limit."""
        if self.on_line is None:
            self._keep(chunk)
            return
        while chunk:
            newline = chunk.find(b"\n")
            piece, chunk = (chunk, b"") if newline < 0 else (chunk[:newline + 1], chunk[newline + 1:])
            if self._skipping:
                self._count(len(piece))
                self._skipping = newline < 0
                continue
            self._pending += piece
            if len(self._pending) > LINE_LIMIT + 1:  # +1: its newline
                self._count(len(self._pending) - LINE_LIMIT)
                line = bytes(self._pending[:LINE_LIMIT]) + _TRUNCATED + b"\n"
                self._pending.clear()
                self._skipping = newline < 0
                self._line(line)
            elif newline >= 0:
                self._line(bytes(self._pending))
                self._pending.clear()

    def finish(self) -> None:
        """The stream ended: pass on a last line that had no newline."""
        if self._pending:
            line, self._pending = bytes(self._pending), bytearray()
            self._line(line)

    def text(self) -> str:
        return self._kept.decode("utf-8", "replace")

    def _line(self, raw: bytes) -> None:
        text = raw.decode("utf-8", "replace").rstrip("\n")
        if not text.startswith(PROTOCOL_PREFIXES) or raw.endswith(_TRUNCATED + b"\n"):
            self._keep(raw)
        assert self.on_line is not None
        self.on_line(text)

    def _keep(self, data: bytes) -> None:
        self._count(len(data))
        self._kept += data

    def _count(self, size: int) -> None:
        self._counted += size
        if self._counted > self.limit:
            raise OutputLimitExceeded(self.stream, self.limit)


__all__ = ["STDOUT_LIMIT", "STDERR_LIMIT", "LINE_LIMIT", "Capture", "OutputLimitExceeded", "limit_error"]
