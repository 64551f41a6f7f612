"""Where output goes: results on stdout, progress, warnings and logs on stderr.

CI pipes ``--json`` stdout into tools, so nothing but the result may ever reach stdout.
TensorFlow writes to the C-level file descriptors (C++ logs, "Saved artifact" lines), so
``quiet()`` redirects fds 1 and 2 around TensorFlow calls; our own stderr console writes
to a duplicate of the original fd 2 made at import time, so progress still shows.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from typing import TYPE_CHECKING, Any, Iterator, TextIO

from edgeq.text import printable

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import Console


def _saved_stderr() -> TextIO | None:
    try:
        return os.fdopen(os.dup(sys.stderr.fileno()), "w", buffering=1, encoding="utf-8", errors="replace")
    except (OSError, AttributeError, ValueError):  # no real fd (embedded, some test runners)
        return None  # then `err` follows sys.stderr at print time: the stream seen now may be closed later


def _width(stream: TextIO) -> int | None:
    """``COLUMNS`` if the user set it; terminals report their width; pipes and CI logs get
    a wide one, not rich's 80, which truncated table cells to "…" there."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and 20 <= int(columns) <= 10_000:
        return int(columns)
    try:
        return None if stream.isatty() else 160
    except (AttributeError, ValueError):
        return 160


_err_stream = _saved_stderr()  # now, at import: later fd 2 may be quiet()'s sink
_consoles: dict[str, Console] = {}


def _console(name: str) -> Console:
    """``err`` (stderr) or ``out`` (stdout), a rich console made on first use.

    Why lazily: importing rich costs ~20-50 ms, and ``edgeq emit --json`` may print
    nothing through it; every command used to pay for it before its first line.
    """
    if name not in _consoles:
        from rich.console import Console

        stream = (_err_stream or sys.stderr) if name == "err" else sys.stdout
        # `out` follows sys.stdout at print time (file=None), as it always did.
        _consoles[name] = Console(file=_err_stream if name == "err" else None, stderr=name == "err" and _err_stream is None,
                                  highlight=False, soft_wrap=True, width=_width(stream))
    return _consoles[name]


def __getattr__(name: str) -> Console:
    """``from edgeq.console import err, out`` keeps working: module attributes on demand."""
    if name in ("err", "out"):
        return _console(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: Tail of what TensorFlow printed during the last ``quiet()`` block, for --debug and errors.
last_captured: list[str] = []


def cell(value: object) -> Any:
    """A table cell or title from text edgeq did not write (paths, names): one line, no
    escape sequences, and never read as rich markup (a path may contain ``[/]``)."""
    from rich.text import Text

    return Text(printable(value, keep=""))


def warn(message: str) -> None:
    err = _console("err")
    err.print("[yellow]warning:[/] ", end="", markup=True)
    err.print(printable(message), markup=False)


def warn_and_keep(warnings: list[str], message: str) -> None:
    """Print a warning now and keep it for the report (``warnings`` is the report's list)."""
    warn(message)
    warnings.append(message)


def info(message: str) -> None:
    _console("err").print(printable(message), markup=False)


def print_json(document: dict[str, Any]) -> None:
    """Print one JSON document on stdout (sorted keys: stable diffs in CI logs)."""
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=True) + "\n")
    sys.stdout.flush()


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence TensorFlow's Python and C++ output on fds 1 and 2, keeping it for diagnosis."""
    if os.environ.get("EDGEQ_VERBOSE_TF"):
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryFile(mode="w+b") as sink:
        saved = [os.dup(1), os.dup(2)]
        old_out, old_err = sys.stdout, sys.stderr
        try:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            sys.stdout = sys.stderr = open(os.devnull, "w")  # Python-level prints from TF/Keras
            yield
        finally:
            try:
                sys.stdout.close()
            finally:
                sys.stdout, sys.stderr = old_out, old_err
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
                os.close(saved[0])
                os.close(saved[1])
                sink.seek(0)
                text = sink.read()[-20000:].decode("utf-8", "replace")
                last_captured[:] = text.splitlines()[-40:]
