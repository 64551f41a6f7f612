"""Ctrl-C means exit 130, whenever it arrives.

Why not just Python's default handler: a KeyboardInterrupt raised where Python cannot
propagate it (a finalizer, a weakref or atexit callback, C code calling back into
Python) is printed as "Exception ignored" and lost, so a Ctrl-C near the end of a build
could exit 0; and once the interpreter finalizes, SIGINT is back at SIG_DFL, so a late
Ctrl-C killed the process by signal instead. ``guard()`` records every SIGINT before
raising, the CLI turns a recorded one into 130 even if the exception was swallowed, and
the last exit step takes over the final window of interpreter shutdown.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
from types import FrameType

EXIT_INTERRUPTED = 130

_state = {"interrupted": False, "installed": False, "raising": True}


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    _state["interrupted"] = True
    if _state["raising"]:
        raise KeyboardInterrupt


def _last_exit_step() -> None:
    """Runs after every other atexit handler (registered first, atexit is LIFO)."""
    if _state["interrupted"]:
        _leave()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # what is left is freeing memory: nothing to interrupt


def _leave() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a closed stream must not change the exit code
            pass
    os._exit(EXIT_INTERRUPTED)


def guard() -> None:
    """Install the recording handler, unless SIGINT is ignored (``nohup``, ``cmd &``): then it stays ignored."""
    if _state["installed"] or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return
    signal.signal(signal.SIGINT, _on_sigint)
    atexit.register(_last_exit_step)
    _state["installed"] = True


def settle(code: int) -> int:
    """The exit code to leave with: 130 if a Ctrl-C came at any point, even one that was swallowed.

    From here on a Ctrl-C is recorded, not raised: the command's work is over, and
    the exit code is the one thing left to get right.
    """
    _state["raising"] = False
    return EXIT_INTERRUPTED if _state["interrupted"] else code


def interrupted() -> bool:
    return bool(_state["interrupted"])


__all__ = ["EXIT_INTERRUPTED", "guard", "settle", "interrupted"]
