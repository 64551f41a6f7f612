"""Output folders and files that change in one step: the old complete tree or the new one.

Why: ``emit``/``build`` outputs are what firmware repositories and CI jobs read next, so a
kill at any instant (Ctrl-C, ``kill -9``, OOM killer, CI timeout) must leave the old or the
whole new result: never new model data with old settings, no folder, or edgeq's leftovers.

How: the new tree is written into a *staging* sibling of ``OUT`` (same parent, so same
filesystem) named ``.<OUT name>.edgeq-staging.<pid>.<random>``, then swapped in with ONE
``renameat2(RENAME_EXCHANGE)``; the old tree, now at the staging name, is removed. A new
``OUT`` is one plain ``rename``. Where ``renameat2`` is unavailable (old libc; ENOSYS or
EINVAL from a kernel or filesystem, e.g. some network filesystems) the swap falls back to
two renames (``OUT`` → ``.<OUT name>.edgeq-old.<pid>.<random>``, staging → ``OUT``): an
exception between them puts the old tree back, but a SIGKILL exactly there leaves ``OUT``
missing until the next edgeq run writing there moves the old tree back.

A refresh keeps all the user had: ``mirror`` recreates the tree in the staging folder
without following a symlink, and ``write_new`` *replaces* the files edgeq writes. A
SIGKILLed run's staging folder is removed by the next run writing beside the same ``OUT``
(``clean_stale``: its PID is gone, its ``flock`` free). Durability across a power cut
(fsync) is not promised: this is about killed processes.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import re
import shutil
import stat
from pathlib import Path
from typing import Collection, Iterator

from edgeq.errors import OutputExistsError, UserError

STAGING_TAG = "edgeq-staging"
OLD_TAG = "edgeq-old"
AT_FDCWD = -100
RENAME_EXCHANGE = 2
_NAME_KEEP = 100  # characters of OUT's name kept in sibling names: NAME_MAX is 255 bytes
_SIBLING = re.compile(rf"^({STAGING_TAG}|{OLD_TAG})\.(\d+)\.[A-Za-z0-9_]+$")
#: Errors that mean "this place cannot take the output": a clean UserError, not a bug report.
_USER_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG,
                errno.ELOOP, errno.EXDEV, errno.EBUSY, errno.ENOENT, errno.EEXIST, errno.ENOTEMPTY}
#: Why ``link`` may refuse a file that a copy can still take.
_COPY_INSTEAD = {errno.EPERM, errno.EACCES, errno.EMLINK, errno.EXDEV, errno.EOPNOTSUPP}
#: Staging paths this process is filling right now (``write_tree`` writes into them in place).
_OPEN: set[str] = set()


def umask() -> int:
    """The umask, read without setting one (``os.umask`` races with threads creating files)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            return next(int(ln.split()[1], 8) for ln in f if ln.startswith("Umask:"))
    except (OSError, StopIteration, ValueError, IndexError):
        value = os.umask(0o022)
        os.umask(value)
        return value


def dir_mode() -> int:
    """What ``mkdir`` gives (0755 under the usual umask): a build's folder used to be 0700."""
    return 0o777 & ~umask()


def file_mode() -> int:
    """0644 under the usual umask (``mkstemp`` alone gives 0600)."""
    return 0o644 & ~umask()


def _absolute(path: Path) -> Path:
    """Absolute, and through a symlink that names OUT itself: the link stays, its target is swapped."""
    p = Path(os.path.abspath(path))
    return Path(os.path.realpath(p)) if p.is_symlink() else p


def _base(out: Path) -> str:  # sibling names start with this
    return f".{out.name[:_NAME_KEEP]}."


def check_dest(path: Path, *, kind: str = "folder", flag: str = "--out") -> None:
    """Refuse, before any work, an output (``kind`` ``"folder"`` or ``"file"``) edgeq cannot
    write: a file where a folder is needed or the reverse, a file in the path, a folder it
    may not write into (the parent: outputs are written beside ``path``, then swapped in)."""
    shown = Path(path)
    p = _absolute(shown)
    if p.name in ("", ".", ".."):
        raise UserError(f"{flag} {shown}: edgeq replaces the output as a whole, so it cannot be the filesystem root",
                        hint=f"pass a folder below it to {flag}")
    if os.path.lexists(p):
        if kind == "folder" and not p.is_dir():
            raise OutputExistsError(f"{shown} exists and is not a folder", hint=f"pass a folder to {flag}, or move {shown} away")
        if kind == "file" and p.is_dir():
            raise OutputExistsError(f"{shown} is a folder; {flag} needs a file name",
                                    hint=f"name the file inside it, e.g. {flag} {shown / 'model.tflite'}")
    anc = p.parent
    while not os.path.lexists(anc) and anc != anc.parent:
        anc = anc.parent
    if not anc.is_dir():
        raise UserError(f"cannot create {shown}: {anc} is not a folder", hint=f"choose a {flag} whose parent is a folder")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise UserError(f"cannot write {shown}: {anc} is not writable (edgeq writes the output there, then swaps it in)",
                        hint=f"choose a {flag} in a folder you can write to")


def cannot_write(shown: Path, exc: OSError, flag: str = "--out") -> UserError:
    """The one-line error for an OS refusal while writing ``shown``."""
    parent = Path(os.path.abspath(shown)).parent
    why = exc.strerror or str(exc)
    if exc.errno == errno.ENOENT and parent.is_dir():
        why = f"{parent} does not take new files (a virtual filesystem such as /proc?)"
    mount = exc.errno in (errno.EXDEV, errno.EBUSY)
    return UserError(f"cannot write {shown}: {why}", hint=f"{shown} may be a mount point: write into a folder inside it"
                     if mount else f"choose a {flag} in a folder you can write to")


@contextlib.contextmanager
def mapped_errors(shown: Path, flag: str = "--out") -> Iterator[None]:
    """Turn the OS refusing a write (permissions, read-only, a file in the path) into a
    ``UserError`` naming the output; anything else (disk full, a bug) passes unchanged."""
    try:
        yield
    except OSError as exc:
        if exc.errno in _USER_ERRNOS:
            raise cannot_write(shown, exc, flag) from exc
        raise


def is_staging(path: Path) -> bool:
    """True for a staging folder this process is filling: not visible as anyone's output yet."""
    return os.path.abspath(path) in _OPEN


def _alive(pid: int, path: str) -> bool:
    if pid == os.getpid():
        return path in _OPEN  # our PID on a folder we do not hold: a previous process's
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):  # someone else's process (or a PID we cannot ask about)
        pass
    return True


def _lock(path: str) -> int | None:
    """An fd holding ``path``'s ``flock`` (None: another process holds it; where locks are
    unsupported, e.g. some network filesystems, the fd holds nothing and the PID decides)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except OSError:
        pass
    return fd


def clean_stale(out: Path) -> list[str]:
    """Remove what killed edgeq runs left beside ``out`` (PID gone, lock free), or move back
    the old tree a killed fallback swap left when ``out`` is missing. Returns the names
    handled. Never raises: cleaning up is a courtesy, not a step that may fail the run."""
    out = _absolute(out)
    base = _base(out)
    handled: list[str] = []
    try:
        entries = [e for e in os.scandir(out.parent) if e.name.startswith(base)]
    except OSError:
        return handled
    for entry in sorted(entries, key=lambda e: e.name):
        match = _SIBLING.match(entry.name[len(base):])
        if not match or _alive(int(match.group(2)), entry.path):
            continue
        try:
            fd = _lock(entry.path)
            if fd is None:
                continue
            try:
                if match.group(1) == OLD_TAG and not os.path.lexists(out):
                    os.rename(entry.path, out)  # a fallback swap killed half-way: the old tree goes back
                else:
                    _remove(entry.path)
            finally:
                os.close(fd)
            handled.append(entry.name)
        except OSError:
            continue
    return handled


def _remove(path: str | Path) -> None:
    """Remove a file, symlink or folder (``rmtree`` follows no symlink inside). A Ctrl-C here
    would stop ``rmtree`` half-way, leaving a staging folder: it is re-raised once done."""
    interrupted: KeyboardInterrupt | None = None
    while True:
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            break
        except KeyboardInterrupt as exc:
            interrupted = exc
    if interrupted is not None:
        raise interrupted


def _sibling(out: Path, tag: str) -> Path:
    """A unique name beside ``out``, not created: callers record it, then create it, so
    no Ctrl-C can fall between creating it and knowing it (as with ``mkdtemp``)."""
    return out.parent / f"{_base(out)}{tag}.{os.getpid()}.{os.urandom(5).hex()}"


def mirror(src: Path, dst: Path, *, skip: Collection[str] = (), keep_top_mode: bool = True) -> None:
    """Recreate the tree ``src`` inside the existing folder ``dst`` without following symlinks.

    Files become hard links (no bytes copied; a copy where the kernel refuses the link),
    symlinks are recreated as they point (a link to ``..`` is never walked), folders get
    their modes once their content is in, FIFOs are recreated; sockets and devices are
    skipped. Left out: ``skip`` (top-level names) and staging folders older edgeq versions
    made *inside* the output (``.<name>.edgeq-staging-*``). A mount point inside is refused:
    the swap would hide it, and removing the old tree would delete what is mounted there.
    """
    root_dev, leftover = os.lstat(src).st_dev, f"{_base(_absolute(src))}edgeq-"
    modes: list[tuple[str, int]] = []
    stack: list[tuple[str, str, bool]] = [(os.fspath(src), os.fspath(dst), True)]
    while stack:  # an explicit stack: a hostile depth cannot hit Python's recursion limit
        s_dir, d_dir, top = stack.pop()
        with os.scandir(s_dir) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            if top and (entry.name in skip or entry.name.startswith(leftover)):
                continue
            target = os.path.join(d_dir, entry.name)
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(entry.path), target)
            elif stat.S_ISDIR(st.st_mode):
                if st.st_dev != root_dev:
                    raise UserError(f"{entry.path} is a mount point inside the output folder",
                                    hint="unmount it or move it out: edgeq replaces the output folder as a whole")
                os.mkdir(target, 0o700)
                modes.append((target, stat.S_IMODE(st.st_mode)))
                stack.append((entry.path, target, False))
            elif stat.S_ISREG(st.st_mode):
                try:
                    os.link(entry.path, target, follow_symlinks=False)
                except OSError as exc:  # protected_hardlinks (not our file), too many links: copy instead
                    if exc.errno not in _COPY_INSTEAD:
                        raise
                    shutil.copy2(entry.path, target, follow_symlinks=False)
            elif stat.S_ISFIFO(st.st_mode):
                os.mkfifo(target)
                modes.append((target, stat.S_IMODE(st.st_mode)))
    for path, mode in reversed(modes):  # children before their parents
        os.chmod(path, mode)
    if keep_top_mode:
        os.chmod(dst, stat.S_IMODE(os.stat(src).st_mode))


def write_new(path: Path, data: bytes | memoryview) -> None:
    """Write ``data`` as a new file at ``path`` (mode ``file_mode()``). Unlinks first: in a
    staging folder ``path`` may be a hard link to the old tree's file (``mirror``)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    path.write_bytes(data)
    os.chmod(path, file_mode())


def _make_parents(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; return those created (deepest first)."""
    missing: list[Path] = []
    p = folder
    while not os.path.lexists(p) and p != p.parent:
        missing.append(p)
        p = p.parent
    try:
        for d in reversed(missing):
            os.mkdir(d)
    except BaseException:
        _remove_created(missing)
        raise
    return missing


def _remove_created(created: list[Path]) -> None:
    for d in created:  # deepest first; a folder something else wrote into stays
        with contextlib.suppress(OSError):
            os.rmdir(d)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two names atomically; False where the system cannot (the caller falls back)."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):  # libc without renameat2 (glibc < 2.28, not Linux)
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), os.fspath(b))


def _swap(staging: Path, out: Path) -> Path | None:
    """Put ``staging`` at ``out``; return where the old tree now is (None: there was none)."""
    if not os.path.lexists(out):
        os.rename(staging, out)
        return None
    if _exchange(staging, out):
        return staging
    old = _sibling(out, OLD_TAG)
    try:
        os.rename(out, old)
        os.rename(staging, out)
    except BaseException:  # KeyboardInterrupt included: never leave OUT missing when Python sees it
        if not os.path.lexists(out) and os.path.lexists(old):
            os.rename(old, out)
        raise
    return old


@contextlib.contextmanager
def _beside(shown: Path, kind: str, flag: str) -> Iterator[tuple[Path, Path, list[bool]]]:
    """Check, create parents, clean stale; yield (real OUT, a staging name, a "done" flag).
    The staging name is removed whatever happens, the parents created unless done."""
    check_dest(shown, kind=kind, flag=flag)
    real = _absolute(shown) if kind == "folder" else Path(os.path.abspath(shown))  # a file symlink is replaced
    with mapped_errors(shown, flag):
        created = _make_parents(real.parent)
    clean_stale(real)
    staging = _sibling(real, STAGING_TAG)
    _OPEN.add(os.fspath(staging))
    done: list[bool] = []
    try:
        yield real, staging, done
    finally:
        _remove(staging)  # the unswapped new tree, or the old tree the swap put here
        _OPEN.discard(os.fspath(staging))
        if not done:
            _remove_created(created)


@contextlib.contextmanager
def replacing(out: Path, *, flag: str = "--out", keep: bool = False) -> Iterator[Path]:
    """Yield a new staging folder beside ``out`` (with ``keep``, a ``mirror`` of it); if the
    block succeeds it replaces ``out`` in one step; it is removed whatever happens, Ctrl-C
    included. OS refusals (read-only, ``/proc``, a file in the path) become ``UserError``."""
    shown = Path(out)
    with _beside(shown, "folder", flag) as (real, staging, done):
        fd: int | None = None
        try:
            with mapped_errors(shown, flag):
                os.mkdir(staging, 0o700)
                fd = _lock(os.fspath(staging))
                os.chmod(staging, dir_mode())
                if keep and real.is_dir():
                    mirror(real, staging)
            yield staging
            inside = False  # a shell whose folder is OUT keeps the old, removed one
            with contextlib.suppress(OSError):
                inside = os.path.join(os.getcwd(), "").startswith(os.path.join(real, ""))
            with mapped_errors(shown, flag):
                old = _swap(staging, real)
            done.append(True)
            if old is not None and old != staging:
                _remove(old)
            if inside:
                from edgeq.console import warn

                warn(f"{shown} was replaced by a new folder: a shell inside it still sees the old one; run `cd {real}`")
        finally:
            if fd is not None:
                os.close(fd)


def write_file(out: Path, data: bytes | memoryview, *, flag: str = "--output") -> None:
    """Write one file atomically: a temp file beside it (mode ``file_mode()``), then
    ``os.replace``; the temp file is removed on any error or KeyboardInterrupt."""
    shown = Path(out)
    with _beside(shown, "file", flag) as (real, tmp, done), mapped_errors(shown, flag):
        with open(tmp, "xb") as f:  # O_EXCL: a new file, ours
            with contextlib.suppress(OSError):
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.fchmod(f.fileno(), file_mode())
            f.write(data)
        os.replace(tmp, real)
        done.append(True)


__all__ = ["STAGING_TAG", "OLD_TAG", "umask", "dir_mode", "file_mode", "check_dest", "cannot_write", "mapped_errors",
           "is_staging", "clean_stale", "mirror", "write_new", "replacing", "write_file"]
