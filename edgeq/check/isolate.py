"""Run native code that may crash on an untrusted model in a child process.

Why: LiteRT and TFLM are C++ that trust the model they are given. ``edgeq.model.tflite_checks``
refuses what a parse can see, but a kernel's ``Prepare``/``Eval`` may still segfault or
abort on a combination no check foresaw, and a signal would kill edgeq with no message.
In a child, the signal becomes an exit status the parent turns into a ``ModelError``.

Fork or spawn: a forked child starts in ~1 ms with numpy, LiteRT and the model bytes
already in memory, so it is the default. It is only safe while this process has a
single thread: a fork copies just the calling thread, so a lock another thread held
(malloc's, a thread pool's) stays locked forever in the child. TensorFlow starts thread
pools at import and never stops them, hence ``fork_is_safe`` is false once
``"tensorflow"`` is in ``sys.modules`` (or any other thread runs), and the job runs in a
freshly spawned interpreter instead (``python -m edgeq.check.isolate``, ~0.3 s more), with the
model passed through a temporary file.

A job is a function ``edgeq.<module>:<name>`` taking the model bytes and returning text
(the reply); what it writes to fd 2 (C++ logs, a traceback) is kept for the error
message, and lines starting with ``STAGE_PREFIX`` say how far it got before a crash.
"""

from __future__ import annotations

import importlib
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Callable

from edgeq.check._micro_worker import die_with_parent

STAGE_PREFIX = "edgeq-stage: "


def fork_is_safe() -> bool:
    """True when a forked child cannot inherit a lock another thread holds (see the module doc)."""
    return hasattr(os, "fork") and threading.active_count() == 1 and "tensorflow" not in sys.modules


def exit_description(code: int | None) -> str:
    """``-11`` → ``"SIGSEGV"``, ``3`` → ``"exit status 3"`` (``subprocess`` conventions)."""
    if code is not None and code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    return f"exit status {code}"


class ForkedChild:
    """``subprocess.Popen``'s ``communicate``/``kill``/``returncode`` for a forked child.

    The child runs ``target`` and writes the text it returns to a pipe (stdout's role);
    its fd 2 goes to a temporary file (stderr's), which is where TFLM and a Python
    traceback write. It leaves with ``os._exit``: no atexit handlers, no flushing of
    buffers inherited from the parent. Exit status and signal deaths read as Popen's.
    It dies with this process (``die_with_parent``), so a SIGKILLed edgeq leaves no child.
    ``memory`` caps the child's address space (``RLIMIT_AS``) above what it inherited,
    so a model that makes the runtime allocate without bound fails there, not the host.
    """

    def __init__(self, target: Callable[[], str], *, memory: int | None = None) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        self._stderr = tempfile.TemporaryFile()
        self._out, write_end = os.pipe()
        self.returncode: int | None = None
        parent = os.getpid()
        try:
            self.pid = os.fork()
        except OSError:
            os.close(self._out)
            os.close(write_end)
            self._stderr.close()
            raise
        if self.pid == 0:  # the child
            code = 1
            try:
                die_with_parent(parent)
                os.close(self._out)
                os.dup2(self._stderr.fileno(), 2)
                if memory is not None:
                    cap_memory(memory)
                with os.fdopen(write_end, "w") as out:
                    out.write(target())
                code = 0
            except BaseException:  # noqa: BLE001 - reported through stderr and the exit code
                import traceback

                traceback.print_exc()
            finally:
                try:
                    sys.stderr.flush()
                finally:
                    os._exit(code)
        os.close(write_end)

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        import select

        deadline = None if timeout is None else time.monotonic() + timeout
        chunks: list[bytes] = []
        while self._out >= 0:
            wait = None if deadline is None else deadline - time.monotonic()
            if wait is not None and wait <= 0:
                raise subprocess.TimeoutExpired(["edgeq-child"], timeout or 0.0)
            if select.select([self._out], [], [], wait)[0]:
                chunk = os.read(self._out, 1 << 16)
                if chunk:
                    chunks.append(chunk)
                else:
                    os.close(self._out)
                    self._out = -1
        self._reap()
        if self._stderr.closed:  # communicated before (Popen allows this too)
            return "", ""
        self._stderr.seek(0)
        err = self._stderr.read().decode("utf-8", "replace")
        self._stderr.close()
        return b"".join(chunks).decode("utf-8", "replace"), err

    def kill(self) -> None:
        if self.returncode is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _reap(self) -> None:
        if self.returncode is None:
            self.returncode = os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])


def cap_memory(extra: int) -> None:
    """Limit this process's address space to what it maps now plus ``extra`` bytes."""
    mapped = 0
    try:
        with open("/proc/self/statm") as f:
            mapped = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return  # no procfs: no cap (the parse's limits still bound the model)
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    want = mapped + extra
    if hard != resource.RLIM_INFINITY:
        want = min(want, hard)
    if soft == resource.RLIM_INFINITY or want < soft:
        resource.setrlimit(resource.RLIMIT_AS, (want, hard))


@dataclass(frozen=True)
class ChildResult:
    """How an isolated job ended: its reply (stdout), its fd 2, and its exit status."""

    returncode: int | None  # None: killed after the timeout
    reply: str
    log: str

    @property
    def crashed(self) -> bool:
        return self.returncode is not None and self.returncode != 0

    @property
    def stage(self) -> str:
        """The last stage the job announced before it ended (``""`` if none)."""
        marks = [ln[len(STAGE_PREFIX):] for ln in self.log.splitlines() if ln.startswith(STAGE_PREFIX)]
        return marks[-1].strip() if marks else ""

    def log_tail(self, lines: int = 4) -> str:
        kept = [ln for ln in self.log.strip().splitlines() if ln.strip() and not ln.startswith(STAGE_PREFIX)]
        return " | ".join(kept[-lines:])


def _job(name: str) -> Callable[[bytes], str]:
    module, _, function = name.partition(":")
    if not module.startswith("edgeq.") or not function:
        raise ValueError(f"not an edgeq job: {name!r}")
    return getattr(importlib.import_module(module), function)  # type: ignore[no-any-return]


def run_isolated(job: str, data: bytes, *, timeout: float, memory: int | None = None) -> ChildResult:
    """Run ``job`` (``"edgeq.module:function"``) on ``data`` in a child: forked when
    ``fork_is_safe()``, else a new interpreter. ``memory`` as for ``ForkedChild``."""
    if fork_is_safe():
        fn = _job(job)
        child = ForkedChild(lambda: fn(data), memory=memory)
        try:
            reply, log = child.communicate(timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()
            return ChildResult(None, "", "")
        return ChildResult(child.returncode, reply, log)
    from edgeq.workdir import temp_dir

    with temp_dir("isolate") as tmp:
        path = tmp / "model.tflite"
        path.write_bytes(data)
        env = {**os.environ, "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS", "1")}
        cmd = [sys.executable, "-m", "edgeq.check.isolate", job, str(path), str(memory or 0)]
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, errors="replace", env=env)
        try:
            reply, log = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            return ChildResult(None, "", "")
        return ChildResult(proc.returncode, reply, log)


def main(argv: list[str]) -> int:
    """``python -m edgeq.check.isolate JOB MODEL_PATH MEMORY``: the spawned side of ``run_isolated``."""
    job, path, memory = argv
    fn = _job(job)
    with open(path, "rb") as f:
        data = f.read()
    if int(memory):
        cap_memory(int(memory))
    sys.stdout.write(fn(data))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
