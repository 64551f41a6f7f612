"""The small vocabulary ``edgeq bench`` shares between SSH and local execution.

Both report failures the same way: a ``CommandResult``, the tail of untrusted device
output made printable, one line naming the command. A module of its own (re-exported by
``edgeq.remote``) so the bench modules can use it without importing their package, which
reaches ``runner`` back; it imports nothing heavy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from edgeq.errors import RemoteError
from edgeq.text import printable, shorten

TEMP_PREFIX = "edgeq-bench."  # every remote temp dir starts with this: easy to audit and clean
TAIL_LINES = 20  # output lines an error message quotes
LINE_WIDTH = 300  # characters per quoted line
COMMAND_WIDTH = 100  # characters of the command an error message quotes
PROTOCOL_PREFIXES = ("EDGEQ-PROGRESS ", "EDGEQ-PID ")  # device-script bookkeeping, noise in an error message
_TRACEBACK_HEAD = "Traceback (most recent call last):"
_CHAINED = ("During handling of the above exception", "The above exception was the direct cause")


class Cancelled(Exception):
    """The user interrupted (Ctrl-C in the main thread); raised inside worker threads."""


@dataclass(frozen=True)
class CommandResult:
    """What a command produced; ``exit_status`` < 0 if it died without one (a signal)."""

    command: str
    stdout: str
    stderr: str
    exit_status: int


def tail(err: Union[bytes, bytearray, str], out: Union[bytes, bytearray, str] = b"", lines: int = TAIL_LINES) -> str:
    """The last lines of stderr (or stdout when stderr is empty), indented, for error messages.

    Device text is untrusted: control characters are stripped, long lines shortened, and a
    Python traceback from the device is reduced to its exception line (the user needs the
    error, not the device script's call stack; ``--keep-remote`` keeps the script to debug).
    """
    text = err if err else out
    if isinstance(text, (bytes, bytearray)):
        text = text.decode("utf-8", "replace")
    kept = [line for line in text.strip().splitlines() if line.strip() and not line.startswith(PROTOCOL_PREFIXES)]
    kept = _without_tracebacks(kept[-(lines + 200):])[-lines:]  # a little context so the summary sees the frame
    return "\n".join("  | " + shorten(printable(line, keep="").rstrip(), LINE_WIDTH) for line in kept)


def _without_tracebacks(lines: list[str]) -> list[str]:
    """Replace each Python traceback block by one line naming the exception and where it was raised."""
    out: list[str] = []
    frame = None
    inside = False
    for line in lines:
        if line.startswith(_CHAINED):
            continue
        if line.startswith(_TRACEBACK_HEAD):
            inside, frame = True, None
            continue
        if inside and line[:1].isspace():
            stripped = line.strip()
            if stripped.startswith('File "'):
                frame = stripped
            continue
        if inside:
            inside = False
            where = f" ({frame})" if frame else ""
            out.append(f"Python error on the device: {line.strip()}{where}")
            continue
        out.append(line)
    if inside:  # cut off before the exception line (truncated output)
        out.append("Python error on the device (its output ended inside the error report)")
    return out


def describe_command(command: str) -> str:
    """A command as an error message shows it: its first line, shortened, printable.

    Why: the probe is a 40-line Python script passed with ``-c``; quoting it whole buried
    the actual failure under it.
    """
    first, _, rest = command.strip().partition("\n")
    shown = shorten(printable(first, keep=""), COMMAND_WIDTH)
    return shown + (" …" if rest and not shown.endswith("…") else "")


def command_error(where: str, result: CommandResult) -> RemoteError:
    """The fabric-style failure: which command, where, how it ended, and the tail of its output."""
    how = ("died without an exit status (killed by a signal?)" if result.exit_status < 0
           else f"exited with status {result.exit_status}")
    text = tail(result.stderr, result.stdout)
    return RemoteError(f"command on {printable(where, keep='')} {how}: {describe_command(result.command)}"
                       + (f"\n{text}" if text else ""))


__all__ = ["TEMP_PREFIX", "TAIL_LINES", "LINE_WIDTH", "COMMAND_WIDTH", "PROTOCOL_PREFIXES", "Cancelled", "CommandResult",
           "tail", "command_error", "describe_command"]
