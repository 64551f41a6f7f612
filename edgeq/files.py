"""Input files from users: one check that says what is wrong with a path before it is read.

Why: ``Path.is_file()`` is False for a missing path, a folder, a FIFO and a device alike,
so "no such file" was the answer to all four; and ``read_bytes()`` on a FIFO blocks
forever, on /dev/zero never ends. Every reader of a user's file goes through here.
"""

from __future__ import annotations

import stat
from pathlib import Path

from edgeq.errors import ModelError, UserError

#: A .tflite flatbuffer cannot exceed 2 GiB (32-bit offsets); nothing larger is a model.
MAX_TFLITE_BYTES = (1 << 31) - 1


def regular_file(path: str | Path, what: str = "model file", *, max_bytes: int | None = None,
                 error: type[UserError] = ModelError) -> Path:
    """``path`` if it is a readable regular file (symlinks followed) of at most ``max_bytes``."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise error(f"no such {what}: {p}", hint="check the path") from None
    except OSError as exc:
        raise error(f"cannot read {what} {p}: {exc.strerror or exc}", hint="check the path and its permissions") from None
    if stat.S_ISDIR(st.st_mode):
        raise error(f"{p} is a folder, not a {what}", hint="pass the file itself")
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{p} is not a regular file (a FIFO, socket or device), so it cannot be a {what}",
                    hint="pass a file on disk")
    if max_bytes is not None and st.st_size > max_bytes:
        raise error(f"{p} is {st.st_size:,} bytes, more than any {what} can be ({max_bytes:,})",
                    hint="check that this is the right file")
    return p


__all__ = ["MAX_TFLITE_BYTES", "regular_file"]
