"""Temporary folders that a SIGKILL cannot leak for good.

Why: ``tempfile.TemporaryDirectory`` removes its folder on every exit Python sees, but a
SIGKILL (the OOM killer, a CI timeout, ``kill -9``) gives Python no chance, and each
killed build left a converter export or a TFLM work folder in ``$TMPDIR`` (20 of 37
timed kills in one trial). So every folder edgeq makes there carries its owner's PID
in its name, and each edgeq run first removes the ones whose owner is gone.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

_NAME = re.compile(r"^edgeq-[a-z0-9-]+?\.p(\d+)\.")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def own_temp_root() -> Path:
    """Point this process's ``tempfile`` at a folder of its own, ``edgeq-run.p<pid>.*``.

    Why: libraries write temporary files edgeq does not name (TensorFlow's autograph
    leaves two ``__autograph_generated_file*.py`` per conversion, removed only at a clean
    exit). Inside a folder named with our PID, what a SIGKILL leaves is removed by the
    next run's ``sweep_stale`` like every other edgeq folder. Child processes keep the
    real ``$TMPDIR``; a forked child leaves with ``os._exit`` and runs no atexit hook.
    """
    root = Path(tempfile.mkdtemp(prefix=f"edgeq-run.p{os.getpid()}."))
    previous = tempfile.tempdir

    def remove() -> None:
        tempfile.tempdir = previous
        shutil.rmtree(root, ignore_errors=True)

    atexit.register(remove)
    tempfile.tempdir = str(root)
    return root


def make_temp_dir(purpose: str) -> Path:
    """A new folder ``$TMPDIR/edgeq-<purpose>.p<pid>.<random>`` (mode 0700): the caller removes it."""
    return Path(tempfile.mkdtemp(prefix=f"edgeq-{purpose}.p{os.getpid()}."))


@contextlib.contextmanager
def temp_dir(purpose: str) -> Iterator[Path]:
    """``TemporaryDirectory`` with a name ``sweep_stale`` recognises."""
    path = make_temp_dir(purpose)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def sweep_stale(root: str | Path | None = None) -> list[str]:
    """Remove edgeq temp folders (ours: same owner) whose process no longer runs; return their names.

    Cheap (one directory listing); never raises: cleaning up is a courtesy, not a step
    that may fail a build.
    """
    removed: list[str] = []
    base = Path(root) if root is not None else Path(tempfile.gettempdir())
    try:
        entries = list(os.scandir(base))
    except OSError:
        return removed
    uid = os.getuid()
    for entry in entries:
        match = _NAME.match(entry.name)
        if not match or int(match.group(1)) == os.getpid():
            continue
        try:
            st = entry.stat(follow_symlinks=False)
            if not entry.is_dir(follow_symlinks=False) or st.st_uid != uid or _alive(int(match.group(1))):
                continue
            shutil.rmtree(entry.path)
            removed.append(entry.name)
        except OSError:
            continue
    return removed


__all__ = ["make_temp_dir", "own_temp_root", "temp_dir", "sweep_stale"]
