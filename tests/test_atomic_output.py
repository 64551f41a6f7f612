"""Outputs change in one step (issue 12): a SIGKILL at every rename and at other filesystem
steps of the output phase leaves ``--out`` the old or the new complete tree, and the next run
cleans what the killed one left; SIGINT exits 130 (or 0) with a complete tree; symlinks stay
symlinks; modes; clean errors for outputs edgeq cannot write.

strace injects the kills (``-e inject=SYSCALL:signal=KILL:when=N``: on entry to the N-th call),
counting per syscall and thread, so kill points come from a counting run of the main thread.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from edgeq import outdir
from tests.codegen_models import tiny_cnn
from tests.conftest import assert_clean_error, require_tool, run_edgeq

ARENA = "2208"  # --arena-bytes: emit skips measuring TFLM, a run takes ~0.4 s
RENAMES = ("rename", "renameat", "renameat2")
FS_STEPS = (*RENAMES, "mkdir", "mkdirat", "link", "linkat", "symlink", "symlinkat", "unlink", "unlinkat", "rmdir",
            "mknod", "mknodat", "chmod", "fchmodat", "fchmod")
#: Kill points besides every rename, spread over the output phase: the file stays under 3 minutes.
NEW_EXTRA_STEPS = 8
REFRESH_EXTRA_STEPS = 12
BUILD_EXTRA_STEPS = 4
STEP_LINE = re.compile(r"^(\w+)\((.*)$")
Tree = dict[str, tuple[Any, ...]]


@pytest.fixture(scope="module")
def models() -> tuple[Path, Path]:
    """Two different tiny models (the second with per-tensor dense weights): old and new."""
    return tiny_cnn(True), tiny_cnn(False)


def snapshot(root: Path) -> Tree | None:
    """Every entry under ``root`` without following symlinks: kind, mode, bytes or link target."""
    if not os.path.lexists(root):
        return None
    tree: Tree = {".": ("dir", stat.S_IMODE(os.lstat(root).st_mode))}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                tree[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                tree[rel] = ("dir", stat.S_IMODE(st.st_mode))
            elif stat.S_ISREG(st.st_mode):
                tree[rel] = ("file", stat.S_IMODE(st.st_mode), Path(path).read_bytes())
            else:
                tree[rel] = ("other", stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode))
    return tree


def restore(template: Path | None, out: Path) -> None:
    """Put the recorded old tree back at ``out``."""
    if os.path.lexists(out):
        shutil.rmtree(out)
    if template is not None:  # cp -a: FIFOs, symlinks and modes as they are
        subprocess.run(["cp", "-a", str(template), str(out)], check=True)


def leftovers(out: Path, tmpdir: Path) -> list[str]:
    """Anything of edgeq's beside ``out``, inside it, or in ``$TMPDIR``."""
    beside = [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.edgeq-")]
    inside = [p.name for p in out.iterdir() if ".edgeq-staging" in p.name] if out.is_dir() else []
    temps = [p.name for p in tmpdir.iterdir() if p.name.startswith("edgeq")]
    return beside + inside + temps


def strace() -> str:
    return require_tool("strace", "apt-get install strace (scripts/setup.sh installs it)")


class Runner:
    """The real CLI, with a private ``$TMPDIR`` and no .pyc writes (their renames would count)."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmpdir, self.logs = tmp_path / "tmpdir", tmp_path / "logs"
        for d in (self.tmpdir, self.logs):
            d.mkdir()
        self.env = {**os.environ, "TMPDIR": str(self.tmpdir), "PYTHONDONTWRITEBYTECODE": "1"}

    def cmd(self, *args: Any) -> list[str]:
        return [sys.executable, "-m", "edgeq", *map(str, args)]

    def run(self, args: list[str], *, prefix: tuple[str, ...] = (), ok: bool = True,
            umask: int | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([*prefix, *args], env=self.env, capture_output=True, text=True, timeout=300, cwd=self.logs,
                              preexec_fn=None if umask is None else (lambda: os.umask(umask)))
        if ok:
            assert proc.returncode == 0, (args, proc.stderr[-3000:])
        return proc

    def steps(self, args: list[str], syscalls: tuple[str, ...]) -> list[tuple[str, int, str]]:
        """The main thread's calls of ``syscalls`` in order: (name, occurrence of that name, arguments)."""
        log = self.logs / "count.strace"
        self.run(args, prefix=(strace(), "-qq", "-e", "signal=none", "-e", f"trace={','.join(syscalls)}", "-o", str(log)))
        seen: dict[str, int] = {}
        out = []
        for line in log.read_text().splitlines():
            m = STEP_LINE.match(line)
            if m and m.group(1) in syscalls:
                seen[m.group(1)] = seen.get(m.group(1), 0) + 1
                out.append((m.group(1), seen[m.group(1)], m.group(2)))
        return out

    def killed_at(self, args: list[str], name: str, when: int) -> int:
        return self.run(args, ok=False, prefix=(strace(), "-qq", "-o", "/dev/null", "-e", f"trace={name}",
                                                "-e", f"inject={name}:signal=KILL:when={when}")).returncode


def output_phase(steps: list[tuple[str, int, str]], extra: int) -> list[tuple[str, int, str]]:
    """The steps from the staging folder's creation on: all renames, and ``extra`` others."""
    start = next(i for i, s in enumerate(steps) if ".edgeq-staging." in s[2])
    phase = steps[start:]
    others = [s for s in phase if s[0] not in RENAMES]
    pick = {others[round(i * (len(others) - 1) / max(extra - 1, 1))] for i in range(min(extra, len(others)))}
    return [s for s in phase if s[0] in RENAMES or s in pick]


def check_kills(runner: Runner, out: Path, template: Path | None, args: list[str], *, extra: int) -> int:
    """Kill ``args`` at each step of its output phase; OUT must be the old or the new tree, and
    the next normal run must give what it gives from that tree and leave nothing behind.
    Returns the number of kill points."""
    restore(template, out)
    old = snapshot(out)
    runner.run(args)
    new = snapshot(out)
    assert new is not None and new != old
    runner.run(args)
    again = snapshot(out)  # the same run over the new tree (a build's report then lists "unchanged" files)
    restore(template, out)
    points = output_phase(runner.steps(args, FS_STEPS), extra)
    assert len([p for p in points if p[0] in RENAMES]) == 1, points  # the whole output changes with one rename
    for name, when, what in points:
        restore(template, out)
        code = runner.killed_at(args, name, when)
        assert code in (-signal.SIGKILL, 128 + signal.SIGKILL), (name, when, what, code)
        state = snapshot(out)
        assert state in (old, new), f"a kill at {name}#{when} ({what[:120]}) left a mixed tree"
        if name in RENAMES:
            assert state == old, "a kill before the swap must leave the old tree"
        runner.run(args)
        assert snapshot(out) == (new if state == old else again), (name, when)
        assert not leftovers(out, runner.tmpdir), (name, when, leftovers(out, runner.tmpdir))
    return len(points)


def user_additions(out: Path) -> None:
    """What users keep in an output folder: their files, a build folder, symlinks of every kind, a FIFO."""
    (out / "main.cc").write_text("int main() { return 0; }\n")
    (out / "build").mkdir()
    (out / "build" / "CMakeCache.txt").write_text("cache\n")
    os.chmod(out / "build", 0o750)
    for name, target in (("link_to_file.cc", "main.cc"), ("link_to_dir", "build"), ("up", ".."), ("dangling", "missing")):
        os.symlink(target, out / name)
    os.mkfifo(out / "pipe")


# ----------------------------------------------------------------------------- kills: emit
def _emit_setup(runner: Runner, models: tuple[Path, Path], tmp_path: Path, *, refresh: bool) -> tuple[Path | None, Path, list[str]]:
    """The old tree (emitted, then edited and added to by the user), OUT, the new run's command."""
    template = tmp_path / "template" if refresh else None
    if template is not None:
        runner.run(runner.cmd("emit", models[0], "--out", template, "--name", "tiny", "--arena-bytes", ARENA))
        with open(template / "tiny_model_settings.h", "a") as f:
            f.write("// my edit\n")
        user_additions(template)
    out = tmp_path / "work" / "out"
    out.parent.mkdir()
    return template, out, runner.cmd("emit", models[1], "--out", out, "--name", "tiny", "--arena-bytes", "3000")


def test_kill_at_every_step_of_emit_into_a_new_folder(models: tuple[Path, Path], tmp_path: Path) -> None:
    runner = Runner(tmp_path)
    _, out, args = _emit_setup(runner, models, tmp_path, refresh=False)
    assert check_kills(runner, out, None, args, extra=NEW_EXTRA_STEPS) > NEW_EXTRA_STEPS


def test_kill_at_every_step_of_emit_refreshing_a_folder(models: tuple[Path, Path], tmp_path: Path) -> None:
    runner = Runner(tmp_path)
    template, out, args = _emit_setup(runner, models, tmp_path, refresh=True)
    assert template is not None
    assert check_kills(runner, out, template, args, extra=REFRESH_EXTRA_STEPS) > REFRESH_EXTRA_STEPS  # mirror, writes, swap, removal
    # Everything the user had is still there, as it was: symlinks kept, never followed.
    after, before = snapshot(out), snapshot(template)
    assert after is not None and before is not None
    for rel in ("main.cc", "build", "build/CMakeCache.txt", "link_to_file.cc", "link_to_dir", "up", "dangling", "pipe"):
        assert after[rel] == before[rel], rel
    assert after["build"] == ("dir", 0o750)
    assert b"3000" in (out / "tiny_model_settings.h").read_bytes()  # a model source: always refreshed


# ----------------------------------------------------------------------------- kills: build
def _build_template(runner: Runner, model: Path, template: Path) -> None:
    runner.run(runner.cmd("build", model, "--target", "host", "--name", "tiny", "--out", template))
    main_cc = next(template.rglob("main.c*"))
    main_cc.write_text(main_cc.read_text() + "// my change\n")
    (template / "NOTES.txt").write_text("mine\n")
    os.symlink("NOTES.txt", template / "notes_link")
    os.symlink("src", template / "src_link")
    os.symlink("..", template / "up")


@pytest.mark.parametrize("force", [False, True], ids=["over-an-earlier-build", "force"])
def test_kill_at_every_rename_of_build(models: tuple[Path, Path], tmp_path: Path, force: bool) -> None:
    runner = Runner(tmp_path)
    template = tmp_path / "template"
    _build_template(runner, models[0], template)
    out = tmp_path / "work" / "fw"
    out.parent.mkdir()
    args = runner.cmd("build", models[1], "--target", "host", "--name", "tiny", "--out", out, *(["--force"] if force else []))
    check_kills(runner, out, template, args, extra=BUILD_EXTRA_STEPS)
    tree = snapshot(out) or {}
    if force:
        assert "NOTES.txt" not in tree and "up" not in tree
    else:  # the user's files, edits and symlinks came through as they were
        assert tree["NOTES.txt"][2] == b"mine\n" and tree["notes_link"] == ("link", "NOTES.txt")
        assert tree["up"] == ("link", "..") and tree["src_link"] == ("link", "src")
        assert any(k.startswith("src/main.c") and v[2].endswith(b"// my change\n") for k, v in tree.items())


# ----------------------------------------------------------------------------- SIGINT
def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    """As a terminal starts a foreground job: SIGINT at its default (CI runners may ignore it)."""
    return subprocess.Popen(args, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def test_sigint_at_any_moment_of_emit_exits_130_with_a_complete_tree(models: tuple[Path, Path], tmp_path: Path) -> None:
    runner = Runner(tmp_path)
    template, out, args = _emit_setup(runner, models, tmp_path, refresh=True)
    restore(template, out)
    old = snapshot(out)
    started = time.monotonic()
    runner.run(runner.cmd("--version"))
    startup = time.monotonic() - started  # the interpreter and the CLI's imports, before main() owns SIGINT
    started = time.monotonic()
    runner.run(args)
    duration = time.monotonic() - started
    new = snapshot(out)

    def check(proc: subprocess.Popen[str], stderr: str, where: str) -> None:
        assert proc.returncode in (0, 130), (where, proc.returncode, stderr[-2000:])
        assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr[-3000:]
        assert snapshot(out) in (old, new), where
        assert not leftovers(out, runner.tmpdir), (where, leftovers(out, runner.tmpdir))  # cleaned by the run itself

    # From the end of the CLI's imports (a SIGINT during them is tests/test_interrupt.py's) to the end.
    first = min(1.5 * startup, 0.8 * duration)
    for fraction in (0.0, 0.2, 0.4, 0.6, 0.8, 0.9, 1.0, 1.1):
        restore(template, out)
        proc = _start(args, runner.env)
        time.sleep(first + (duration - first) * fraction)
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
        check(proc, stderr, f"{fraction:.0%} after the imports")
    # And exactly at the output steps: SIGINT injected on entry to each of them.
    restore(template, out)
    for name, when, what in output_phase(runner.steps(args, FS_STEPS), 8):
        restore(template, out)
        proc = _start([strace(), "-qq", "-o", "/dev/null", "-e", f"trace={name}",
                       "-e", f"inject={name}:signal=INT:when={when}", *args], runner.env)
        _, stderr = proc.communicate(timeout=60)
        check(proc, stderr, f"{name}#{when} {what[:80]}")
        assert proc.returncode == 130, (name, when, stderr[-2000:])


# ----------------------------------------------------------------------------- modes
@pytest.mark.parametrize("mask", [0o022, 0o027], ids=["umask022", "umask027"])
def test_modes_follow_the_umask(models: tuple[Path, Path], tmp_path: Path, mask: int) -> None:
    """Folders as mkdir makes them (0777 & ~umask), files 0644 & ~umask, for emit, build and quantize."""
    runner = Runner(tmp_path)
    for args in (("emit", models[0], "--out", tmp_path / "emit", "--arena-bytes", ARENA),
                 ("build", models[0], "--target", "host", "--out", tmp_path / "build"),
                 ("quantize", models[0], "-o", tmp_path / "q.tflite"),
                 ("emit", models[1], "--out", tmp_path / "emit", "--arena-bytes", ARENA)):  # a refresh keeps the modes
        runner.run(runner.cmd(*args), umask=mask)
    dirs, files = 0o777 & ~mask, 0o644 & ~mask
    for root in (tmp_path / "emit", tmp_path / "build"):
        for rel, entry in (snapshot(root) or {}).items():
            assert entry[1] == (dirs if entry[0] == "dir" else files), (root.name, rel, oct(entry[1]))
    assert stat.S_IMODE(os.stat(tmp_path / "q.tflite").st_mode) == files
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# ----------------------------------------------------------------------------- outputs edgeq cannot write
def test_unwritable_outputs_are_clean_errors(models: tuple[Path, Path], tmp_path: Path) -> None:
    model = models[0]
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    folder = tmp_path / "folder"
    folder.mkdir()
    cases: list[tuple[list[Any], str]] = []
    for bad, needle in ((a_file / "out", "is not a folder"), (Path("/proc/edgeq-test-out"), "/proc"),
                        (a_file, "exists and is not a folder")):
        cases.append((["emit", model, "--out", bad, "--arena-bytes", ARENA], needle))
        cases.append((["build", model, "--target", "host", "--out", bad], needle))
    cases.append((["quantize", model, "-o", a_file / "q.tflite"], "is not a folder"))
    cases.append((["quantize", model, "-o", "/proc/edgeq-test.tflite"], "/proc"))
    cases += [(["quantize", model, "-o", folder, *force], "is a folder") for force in ([], ["--force"])]
    for args, needle in cases:
        before = sorted(p.name for p in tmp_path.iterdir())
        r = run_edgeq(*args)
        assert_clean_error(r, needle)
        assert "hint:" in r.stderr, r.stderr
        assert sorted(p.name for p in tmp_path.iterdir()) == before, args  # nothing left behind
        assert (tmp_path / "file.txt").read_text() == "x" and not any((tmp_path / "folder").iterdir())


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders (the /proc and file-in-path cases cover it)")
def test_read_only_folder_is_a_clean_error(models: tuple[Path, Path], tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "out").mkdir()
    os.chmod(ro, 0o555)
    try:
        for args in (["emit", models[0], "--out", ro / "out", "--arena-bytes", ARENA],
                     ["build", models[0], "--target", "host", "--out", ro / "new"],
                     ["quantize", models[0], "-o", ro / "q.tflite"]):
            assert_clean_error(run_edgeq(*args), "not writable")
        assert sorted(p.name for p in ro.iterdir()) == ["out"]
    finally:
        os.chmod(ro, 0o755)


# ----------------------------------------------------------------------------- the module itself
def test_fallback_swap_stale_cleanup_and_mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without renameat2 the two-rename swap still works; a dead PID's staging folder is removed,
    a killed fallback's old tree moved back, a live process's folder left alone."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "a").write_text("old")
    monkeypatch.setattr(outdir, "_exchange", lambda a, b: False)
    with outdir.replacing(out, keep=True) as staging:
        outdir.write_new(staging / "a", b"new")
    assert (out / "a").read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["out"]
    monkeypatch.undo()

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stale = tmp_path / f".out.edgeq-staging.{dead.pid}.abc123"
        live = tmp_path / f".out.edgeq-staging.{sleeper.pid}.abc123"
        other = tmp_path / f".other.edgeq-staging.{dead.pid}.abc123"
        for d in (stale, live, other):
            d.mkdir()
            os.symlink("..", d / "up")  # removing it must not follow this
        assert outdir.clean_stale(out) == [stale.name]
        assert live.is_dir() and other.is_dir() and (out / "a").read_text() == "new"
        # A fallback swap killed between its renames: OUT missing, the old tree beside it.
        os.rename(out, tmp_path / f".out.edgeq-old.{dead.pid}.abc123")
        outdir.clean_stale(out)
        assert (out / "a").read_text() == "new"
    finally:
        sleeper.kill()
        sleeper.wait()
    # mirror: hard links, symlinks recreated, never written through.
    src, dst = tmp_path / "src", tmp_path / "dst"
    for d in (src, dst):
        d.mkdir()
    (src / "f").write_text("old")
    (src / "d").mkdir()
    os.symlink("..", src / "d" / "loop")
    outdir.mirror(src, dst)
    assert os.stat(src / "f").st_ino == os.stat(dst / "f").st_ino  # a hard link, no bytes copied
    assert os.readlink(dst / "d" / "loop") == ".."
    outdir.write_new(dst / "f", b"new")
    assert (src / "f").read_text() == "old" and (dst / "f").read_text() == "new"


def test_a_symlinked_folder_in_a_generated_path_is_refused(models: tuple[Path, Path], tmp_path: Path) -> None:
    """Writing generated files through a symlinked folder would change files outside OUT."""
    runner = Runner(tmp_path)
    out = tmp_path / "fw"
    runner.run(runner.cmd("build", models[0], "--target", "host", "--name", "tiny", "--out", out))
    elsewhere = tmp_path / "elsewhere"
    shutil.move(out / "src", elsewhere)
    os.symlink(elsewhere, out / "src")
    before, outside = snapshot(out), snapshot(elsewhere)
    r = run_edgeq("build", models[1], "--target", "host", "--name", "tiny", "--out", out)
    assert_clean_error(r, "is a symlink")
    assert snapshot(out) == before and snapshot(elsewhere) == outside
