"""``edgeq verify DIR``: build a generated cmake-tflm project against real TFLM, run it
(QEMU for a board, natively for host), and report what the firmware printed.

Why a command of its own: a project that compiles proves little; the firmware's console
contract (``edgeq: arena_used_bytes=…``, ``output matches the TFLM reference``) proves the
model runs on that CPU with that arena and computes what TFLM computes on the host. The
TFLM library is compiled once per CPU and tree and cached (``edgeq.firmware.tflm_cache``).

The arena: with ``find_min_arena`` (and always when ``AllocateTensors()`` fails) the
smallest working arena is measured on the target, by the runner's own on-device search
when the project has the ``EDGEQ_FIND_MIN_ARENA`` CMake option, else by bisecting over
rebuilt images of a copy of the project with ``k…TensorArenaSize`` edited. TFLM aligns
its allocations to 16 bytes, so arena sizes are searched in 16-byte steps.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from edgeq.firmware.project import qemu_command
from edgeq.firmware.tflm_cache import CachedLibrary, ensure_library, request_file_api, target_reply
from edgeq.firmware.verify_setup import (Console, Project, VerifyError, exit_meaning, parse_console, read_project,
                                        require_tools, resolve_tree)
from edgeq.console import info
from edgeq.errors import GateError
from edgeq.firmware.targets import Board, load_board
from edgeq.workdir import temp_dir

TAIL_LINES = 40
ALIGN = 16
HOST_ARENA_CAP = 64 << 20
#: A run that also searches the minimum arena does ~log2(arena/16) more inferences.
SEARCH_TIMEOUT_FACTOR = 4


class VerificationFailed(GateError):
    """The firmware ran, but did not reproduce the TFLM reference (exit 1)."""


@dataclass(frozen=True)
class VerifyResult:
    """What one ``verify`` found. ``ok`` only when the firmware exited 0 and said its output matches."""

    project_dir: str
    name: str
    target: str | None
    board: str | None
    tflm_dir: str
    library: str
    library_key: str
    library_cached: bool
    firmware_exit_code: int | None
    exit_meaning: str
    output_match: bool
    mismatches: int | None
    arena_used_bytes: int | None
    arena_size_bytes: int
    min_arena_bytes: int | None
    min_arena_method: str | None
    arena_short_bytes: int | None
    library_seconds: float
    build_seconds: float
    run_seconds: float
    min_arena_seconds: float
    message: str
    hint: str | None = None
    console_tail: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.output_match and self.firmware_exit_code == 0

    def check(self) -> "VerifyResult":
        """Raise ``VerificationFailed`` (message + hint) unless ``ok``; return self."""
        if not self.ok:
            raise VerificationFailed(self.message, hint=self.hint)
        return self

    def to_dict(self) -> dict[str, Any]:
        return {
            "project_dir": self.project_dir, "name": self.name, "target": self.target, "board": self.board,
            "ok": self.ok, "message": self.message, "hint": self.hint,
            "firmware_exit_code": self.firmware_exit_code, "exit_meaning": self.exit_meaning,
            "output_match": self.output_match, "mismatches": self.mismatches,
            "arena": {"used_bytes": self.arena_used_bytes, "size_bytes": self.arena_size_bytes,
                      "min_bytes": self.min_arena_bytes, "min_method": self.min_arena_method,
                      "short_bytes": self.arena_short_bytes},
            "tflm": {"tree": self.tflm_dir, "library": self.library, "key": self.library_key,
                     "cached": self.library_cached},
            "seconds": {"library": round(self.library_seconds, 2), "build": round(self.build_seconds, 2),
                        "run": round(self.run_seconds, 2), "min_arena": round(self.min_arena_seconds, 2)},
            "console_tail": list(self.console_tail),
        }


@dataclass(frozen=True)
class _Run:
    code: int | None
    output: str
    seconds: float
    console: Console

    @property
    def meaning(self) -> str:
        return exit_meaning(self.code)

    @property
    def allocated(self) -> bool:
        """Allocation and Invoke() worked (whatever the output): the arena was big enough."""
        return self.meaning in ("match", "mismatch")


def _tail(text: str, lines: int = TAIL_LINES) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _cmake(args: Sequence[str], what: str, *, timeout: float = 3600) -> None:
    try:
        proc = subprocess.run(["cmake", *args], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise VerifyError(f"{what} took more than {timeout:.0f} s", hint="a loaded machine? pass --jobs") from exc
    if proc.returncode != 0:
        raise VerifyError(f"{what} failed (cmake exit {proc.returncode}):\n{_tail(proc.stdout + proc.stderr, 25)}",
                          hint="the lines above are CMake's and the compiler's; --debug shows the traceback")


class _Builder:
    """Configures and builds one CMake build folder of a project against a tree."""

    def __init__(self, source: Path, build_dir: Path, tree: Path, jobs: int) -> None:
        self.source, self.build_dir, self.tree, self.jobs = source, build_dir, tree, jobs

    def configure(self, *options: str) -> None:
        request_file_api(self.build_dir)
        _cmake(["-S", str(self.source), "-B", str(self.build_dir), f"-DTFLM_DIR={self.tree}", *options],
               f"configuring {self.source}")

    def build(self, target: str) -> None:
        _cmake(["--build", str(self.build_dir), "--target", target, "--parallel", str(self.jobs)],
               f"building {target} of {self.source}")

    def artifact(self, target: str) -> Path:
        reply = target_reply(self.build_dir, target)
        paths = [a["path"] for a in (reply or {}).get("artifacts", [])]
        if not paths:
            raise VerifyError(f"CMake names no file for target {target!r} in {self.build_dir}")
        path = Path(paths[0])
        return path if path.is_absolute() else self.build_dir / path


def _execute(cmd: list[str], timeout: float) -> _Run:
    """Run the firmware; on timeout kill its whole process group (QEMU has children)."""
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        raw, _ = proc.communicate(timeout=timeout)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):  # it may have ended just now
            os.killpg(proc.pid, signal.SIGKILL)
        raw, _ = proc.communicate()
        code = None
    text = raw.decode("utf-8", "replace")
    return _Run(code, text, time.monotonic() - started, parse_console(text))


def _command(elf: Path, board: Board | None) -> list[str]:
    return [str(elf)] if board is None else qemu_command(board, str(elf))


def _board_for(project: Project, board: str | None) -> Board | None:
    """The QEMU board to run on: the project's; ``board`` may only name it (or fill it in)."""
    if not project.cross:
        if board is not None:
            raise VerifyError(f"--board {board} does not apply: {project.root} is a host project", hint="drop --board")
        return None
    name = project.board
    if board is not None and name is not None and board != name:
        raise VerifyError(f"{project.root} was generated for board {name}, not {board} (startup code and linker "
                          "script are per board)", hint=f"re-run edgeq build with --board {board} into another folder")
    name = name or board
    if name is None or not (project.root / "board").is_dir():
        raise VerifyError(f"{project.root} has no QEMU board to run on (a Cortex-M project built without --board)",
                          hint=f"re-run edgeq build --target {project.target or '<target>'} --board <board> "
                               "(boards per target: `edgeq targets`)")
    return load_board(name)


def _copy_project(project: Project, dest: Path) -> Path:
    """A copy of the project's sources (no build folders) whose settings header can be edited."""
    def ignore(folder: str, names: list[str]) -> set[str]:
        return {n for n in names if n.startswith("build") and Path(folder, n).is_dir()} if folder == str(project.root) else set()

    shutil.copytree(project.root, dest, ignore=ignore, symlinks=True)
    return dest


class _ArenaSearch:
    """Finds the smallest arena that allocates and invokes, by rebuilding images."""

    def __init__(self, project: Project, work: Path, tree: Path, library: Path, board: Board | None,
                 timeout: float, jobs: int) -> None:
        copy = _copy_project(project, work / "arena-search")
        self.project, self.board, self.timeout = project, board, timeout
        self.settings = copy / project.settings
        self.text = self.settings.read_text(encoding="utf-8")
        self.builder = _Builder(copy, work / "arena-search-build", tree, jobs)
        self.builder.configure(f"-DTFLM_LIBRARY={library}")
        self.results: dict[int, bool] = {}
        self.cap = board.ram_bytes if board is not None else HOST_ARENA_CAP

    def works(self, size: int) -> bool:
        if size not in self.results:
            self.settings.write_text(self.project.set_arena(self.text, size), encoding="utf-8")
            try:
                self.builder.build("firmware")
            except VerifyError:
                if size <= self.project.arena_size_bytes:
                    raise
                self.results[size] = False  # an arena larger than the board's RAM does not link
                return False
            run = _execute(_command(self.builder.artifact("firmware"), self.board), self.timeout)
            self.results[size] = run.allocated
        return self.results[size]

    def search(self, *, works_at: int | None, fails_at: int) -> int | None:
        """Smallest multiple of 16 that works, given one size known to fail (and one known to work)."""
        bad = fails_at // ALIGN
        good = works_at // ALIGN if works_at is not None else None
        growth = 1.25  # the need is usually a little above a failing size; then double
        while good is None:  # grow until an arena works, or RAM runs out
            probe = max(bad + 1, int(bad * growth) + 1)
            growth = 2.0
            if probe * ALIGN > self.cap:
                return None
            if self.works(probe * ALIGN):
                good = probe
            else:
                bad = probe
        while good - bad > 1:
            mid = (good + bad) // 2
            if self.works(mid * ALIGN):
                good = mid
            else:
                bad = mid
        return good * ALIGN


def _device_min_arena(project: Project, work: Path, tree: Path, library: Path, board: Board | None,
                      timeout: float, jobs: int, arena: int) -> int | None:
    """The runner's on-device search (``-DEDGEQ_FIND_MIN_ARENA=ON``; it follows a matching
    run) in a copy of the project whose arena is ``arena`` bytes. None: not found."""
    source = _copy_project(project, work / "find-min")
    settings = source / project.settings
    settings.write_text(project.set_arena(settings.read_text(encoding="utf-8"), arena), encoding="utf-8")
    builder = _Builder(source, work / "find-min-build", tree, jobs)
    builder.configure(f"-DTFLM_LIBRARY={library}", "-DEDGEQ_FIND_MIN_ARENA=ON")
    builder.build("firmware")
    run = _execute(_command(builder.artifact("firmware"), board), timeout * SEARCH_TIMEOUT_FACTOR)
    return run.console.min_arena_bytes or None


def _min_arena(project: Project, run: _Run, work: Path, tree: Path, library: Path, board: Board | None,
               timeout: float, jobs: int) -> tuple[int | None, str | None]:
    """The smallest arena that works on the target, and how it was measured."""
    size = project.arena_size_bytes
    cap = board.ram_bytes if board is not None else HOST_ARENA_CAP
    if project.find_min_option and not run.allocated:
        # A failed allocation: the runner's search inside a larger arena (the need is
        # usually a little above the failing size). After a mismatch it does not search.
        larger = min(max(4 * size, size + 16384), cap // 2) // ALIGN * ALIGN
        try:
            found = _device_min_arena(project, work, tree, library, board, timeout, jobs, larger) if larger > size else None
        except VerifyError:  # e.g. that arena does not fit the board's RAM: bisect images instead
            found = None
        if found:
            return found, "device"
    search = _ArenaSearch(project, work, tree, library, board, timeout, jobs)
    if run.allocated:
        # TFLM needs at least what it used: one 16-byte step below that fails.
        used = run.console.arena_used_bytes or 0
        found = search.search(works_at=size, fails_at=max(0, -(-used // ALIGN) * ALIGN - ALIGN))
    else:
        found = search.search(works_at=None, fails_at=size)
    return found, "rebuild" if found is not None else None


def _verdict(project: Project, run: _Run, where: str, timeout: float, minimum: int | None) -> tuple[str, str | None]:
    """The one-line message and hint for a run (minimum: the measured need, if known)."""
    k = f"k{project.camel}TensorArenaSize"
    size = project.arena_size_bytes
    meaning = run.meaning
    if meaning == "match" and run.console.matched:
        used = run.console.arena_used_bytes
        text = f"output matches the TFLM reference on {where}; arena used {used} of {size} bytes"
        if minimum is not None:
            text += f", minimum {minimum} bytes (margin {size - minimum})"
        return text, None
    settings_hint = f"set {k} in {project.settings}"
    if run.console.alloc_failed_bytes is not None and meaning == "setup_failed":
        if minimum is None:
            return (f"{k} = {size} bytes is too small: AllocateTensors() failed on {where}, even with the board's whole "
                    "RAM in the search", f"{settings_hint} larger, or use a board with more RAM")
        return (f"{k} = {size} bytes is too small by {minimum - size} bytes: AllocateTensors() needs {minimum} bytes "
                f"on {where}", f"{settings_hint} to at least {minimum}, or re-run edgeq build (report the figures: "
                "its arena rule should cover this model)")
    if meaning == "mismatch":
        n = run.console.mismatches
        return (f"{n if n is not None else 'some'} output value(s) differ from the TFLM reference on {where}",
                "the console tail shows each differing value; different TFLM versions between edgeq's tflite-micro "
                "wheel and the tree can cause this")
    if meaning == "timeout":
        return f"the firmware did not finish within {timeout:g} s on {where}", "pass a larger --timeout"
    if meaning == "fault":
        return (f"the firmware crashed on {where} (exit {run.code}: CPU fault or signal)",
                "the console tail shows the fault report; try a larger stack or arena")
    if meaning == "invoke_failed":
        return f"Invoke() failed on {where}", "the console tail shows TFLM's error"
    if meaning == "setup_failed":
        return f"the firmware's setup failed on {where} (schema, op resolver or I/O sizes)", "see the console tail"
    return (f"the firmware exited {run.code} on {where} without the expected report",
            "the console tail shows what it printed")


def verify(
    project_dir: str | os.PathLike[str],
    *,
    tflm_dir: str | os.PathLike[str] | None = None,
    board: str | None = None,
    timeout: float = 120.0,
    find_min_arena: bool = False,
    jobs: int | None = None,
) -> VerifyResult:
    """Build ``project_dir`` against a TFLM tree, run it, and return what it reported.

    Raises ``VerifyError``/``ToolMissingError`` when it cannot build or run; a firmware
    that runs and fails is a result (``ok`` False, ``message`` + ``hint``), see ``check()``.
    """
    project = read_project(Path(project_dir))
    board_obj = _board_for(project, board)
    tree = resolve_tree(tflm_dir, project)
    require_tools(project, qemu=board_obj is not None)
    jobs = max(1, jobs or os.cpu_count() or 1)
    where = f"{board_obj.name} ({project.target or board_obj.cpu})" if board_obj else "host"
    with temp_dir("verify") as tmp:
        work = Path(tmp)
        builder = _Builder(project.root, work / "build", tree, jobs)
        started = time.monotonic()
        builder.configure()

        def compile_library() -> Path:
            info(f"edgeq verify: compiling TFLM for {project.target or 'this CPU'} once (later verifies reuse it)")
            builder.build("tflm")
            return builder.artifact("tflm")

        lib: CachedLibrary = ensure_library(builder.build_dir, tree, compile_library)
        build_started = time.monotonic()
        # With the runner's own search compiled in, one run gives the verdict and then
        # (after a match) the minimum: no second image.
        on_device = find_min_arena and project.find_min_option
        builder.configure(f"-DTFLM_LIBRARY={lib.path}", *(["-DEDGEQ_FIND_MIN_ARENA=ON"] if on_device else []))
        builder.build("firmware")
        build_seconds = time.monotonic() - build_started
        run = _execute(_command(builder.artifact("firmware"), board_obj), timeout * (SEARCH_TIMEOUT_FACTOR if on_device else 1))
        if on_device and run.meaning not in ("match", "mismatch", "setup_failed", "invoke_failed"):
            # The in-firmware search crashed (TFLM broken by a failed prepare): plain image, then _min_arena.
            builder.configure(f"-DTFLM_LIBRARY={lib.path}", "-DEDGEQ_FIND_MIN_ARENA=OFF"); builder.build("firmware")
            run, on_device = _execute(_command(builder.artifact("firmware"), board_obj), timeout), False
        minimum = (run.console.min_arena_bytes or None) if on_device and run.meaning == "match" else None
        method = "device" if minimum is not None else None
        search_started = time.monotonic()
        failed_alloc = run.console.alloc_failed_bytes is not None and run.meaning == "setup_failed"
        if minimum is None and (failed_alloc or (find_min_arena and run.allocated)):
            minimum, method = _min_arena(project, run, work, tree, lib.path, board_obj, timeout, jobs)
        search_seconds = time.monotonic() - search_started
    message, hint = _verdict(project, run, where, timeout, minimum)
    short = minimum - project.arena_size_bytes if minimum is not None and minimum > project.arena_size_bytes else None
    return VerifyResult(
        project_dir=str(project.root), name=project.name, target=project.target,
        board=board_obj.name if board_obj else None, tflm_dir=str(tree), library=str(lib.path),
        library_key=lib.key, library_cached=not lib.built, firmware_exit_code=run.code, exit_meaning=run.meaning,
        output_match=run.meaning == "match" and run.console.matched, mismatches=run.console.mismatches,
        arena_used_bytes=run.console.arena_used_bytes, arena_size_bytes=project.arena_size_bytes,
        min_arena_bytes=minimum, min_arena_method=method, arena_short_bytes=short,
        library_seconds=lib.seconds, build_seconds=build_seconds + (build_started - started - lib.seconds),
        run_seconds=run.seconds, min_arena_seconds=search_seconds, message=message, hint=hint,
        console_tail=tuple(run.output.splitlines()[-TAIL_LINES:]),
    )


__all__ = ["VerifyError", "VerificationFailed", "VerifyResult", "verify"]
