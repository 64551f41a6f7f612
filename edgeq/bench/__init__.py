"""``edgeq bench``: benchmark .tflite models on edge Linux devices over SSH (or locally).

Modules: ``ssh`` (the connection), ``runner`` (orchestration, ``bench()``),
``device_script`` (shipped to the device), ``report`` (results and renderings),
``command`` (the typer adapter). This file holds the small vocabulary shared by SSH and
local execution, so that both report failures the same way; it imports nothing heavy.
"""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union

from edgeq.errors import RemoteError

TEMP_PREFIX = "edgeq-bench."  # every remote temp dir starts with this: easy to audit and clean
TAIL_LINES = 20
_PROTOCOL = ("EDGEQ-PROGRESS ", "EDGEQ-PID ")  # device-script bookkeeping, noise in an error message


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
    """The last lines of stderr (or stdout when stderr is empty), indented, for error messages."""
    text = err if err else out
    if isinstance(text, (bytes, bytearray)):
        text = text.decode("utf-8", "replace")
    kept = [line for line in text.strip().splitlines() if line.strip() and not line.startswith(_PROTOCOL)]
    kept = kept[-lines:]
    return "\n".join("  | " + line for line in kept)


def command_error(where: str, result: CommandResult) -> RemoteError:
    """The fabric-style failure: which command, where, how it ended, and the tail of its output."""
    how = ("died without an exit status (killed by a signal?)" if result.exit_status < 0
           else f"exited with status {result.exit_status}")
    text = tail(result.stderr, result.stdout)
    return RemoteError(f"command on {where} {how}: {result.command}" + (f"\n{text}" if text else ""))


if TYPE_CHECKING:  # pragma: no cover
    from edgeq.bench.report import BenchReport


class _CallableBenchPackage(types.ModuleType):
    """Make ``edgeq.bench(...)`` work although ``edgeq.bench`` is also this package.

    ``edgeq.__getattr__`` exposes the API function ``bench`` lazily, but importing any
    ``edgeq.bench.*`` module makes Python bind the package to ``edgeq.bench``, shadowing the
    function after its first use. Calling the package forwards to ``runner.bench``.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> "BenchReport":
        from edgeq.bench.runner import bench

        return bench(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableBenchPackage

__all__ = ["TEMP_PREFIX", "Cancelled", "CommandResult", "tail", "command_error"]
