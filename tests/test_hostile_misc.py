"""Odd paths, files and settings from issue 12 that need no TensorFlow: each one clean exit 2 or correct."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgeq.errors import ModelError, TargetError, UserError
from edgeq.files import regular_file
from edgeq.firmware.targets import list_targets
from edgeq.workdir import make_temp_dir, sweep_stale

try:
    from conftest import assert_clean_error, run_edgeq
except ImportError:  # tests/ is a package
    from tests.conftest import assert_clean_error, run_edgeq


def test_a_folder_or_fifo_named_like_a_model_says_what_it_is(tmp_path: Path) -> None:
    (tmp_path / "d.tflite").mkdir()
    os.mkfifo(tmp_path / "f.tflite")
    with pytest.raises(ModelError, match="is a folder"):
        regular_file(tmp_path / "d.tflite")
    with pytest.raises(ModelError, match="not a regular file"):
        regular_file(tmp_path / "f.tflite")
    with pytest.raises(ModelError, match="no such model file"):
        regular_file(tmp_path / "missing.tflite")
    r = run_edgeq("inspect", tmp_path / "f.tflite", timeout=60)  # a read would block forever
    assert_clean_error(r, "f.tflite")
    r = run_edgeq("build", tmp_path / "d.tflite", "--out", tmp_path / "o", timeout=120)
    assert_clean_error(r, "d.tflite", "folder")
    assert not (tmp_path / "o").exists()


def test_size_limit_is_checked_before_reading(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    with big.open("wb") as f:
        f.truncate(10 << 20)  # sparse: no disk used
    with pytest.raises(UserError, match="more than any labels file"):
        regular_file(big, "labels file", max_bytes=1 << 20, error=UserError)


def test_deeply_nested_target_toml_is_a_target_error(tmp_path: Path) -> None:
    folder = tmp_path / "targets"
    folder.mkdir()
    (folder / "deep.toml").write_text("a = " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(TargetError, match="nested too deeply"):
        list_targets(targets_dir=folder)
    r = run_edgeq("targets", "--targets-dir", folder)
    assert_clean_error(r, "deep.toml", "nested too deeply")


def test_binary_labels_file_is_refused_before_any_work(tmp_path: Path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_bytes(bytes(range(256)) * 8)
    r = run_edgeq("build", "--example", "--labels", labels, "--out", tmp_path / "o", timeout=300)
    assert_clean_error(r, "labels.txt", "utf-8")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("arena", ["99999999999999999999", "1073741825"])
def test_emit_refuses_an_arena_no_compiler_or_board_takes(tmp_path: Path, example_tflite: Path, arena: str) -> None:
    r = run_edgeq("emit", example_tflite, "-o", tmp_path / "o", "--arena-bytes", arena)
    assert_clean_error(r, "--arena-bytes", "out of range")
    assert not (tmp_path / "o").exists()


def test_emit_labels_that_are_a_folder_or_binary_are_clean_errors(tmp_path: Path, example_tflite: Path) -> None:
    binary = tmp_path / "labels.txt"
    binary.write_bytes(bytes(range(256)) * 8)
    assert_clean_error(run_edgeq("emit", example_tflite, "-o", tmp_path / "o", "--labels", tmp_path), "folder")
    assert_clean_error(run_edgeq("emit", example_tflite, "-o", tmp_path / "o", "--labels", binary), "utf-8")
    assert not (tmp_path / "o").exists()


def test_escape_sequences_in_paths_never_reach_the_summary(tmp_path: Path, example_tflite: Path) -> None:
    out = tmp_path / "e\x1b[2Jx[/]\x1b]0;title\x07"
    r = run_edgeq("emit", example_tflite, "--name", "m", "-o", out)
    assert r.code == 0, r.stderr
    assert "\x1b" not in r.stdout and "\x07" not in r.stdout and "\x1b" not in r.stderr
    assert "ex[/]" in r.stdout  # shown, stripped, not read as rich markup
    assert out.is_dir()


def test_what_libraries_leave_in_tmpdir_after_a_kill_is_swept(tmp_path: Path) -> None:
    """TensorFlow's autograph files survive a SIGKILL; inside our PID-named run folder they do not."""
    code = ("import os, tempfile\nfrom edgeq.workdir import own_temp_root\nroot = own_temp_root()\n"
            "fd, name = tempfile.mkstemp(suffix='.py', prefix='__autograph_generated_file')\n"
            "print(root, name, flush=True)\nos.kill(os.getpid(), 9)\n")
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == -9, proc.stderr
    root, name = proc.stdout.split()
    assert Path(name).parent == Path(root) and Path(root).parent == tmp_path and Path(name).exists()
    assert sweep_stale(tmp_path) == [Path(root).name]
    assert list(tmp_path.iterdir()) == []


def test_stale_temp_folders_of_dead_processes_are_swept(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    stale = tmp_path / f"edgeq-convert.p{dead_pid}.abc123"
    (stale / "sub").mkdir(parents=True)
    (stale / "sub" / "f").write_bytes(b"x" * 100)
    mine = tmp_path / f"edgeq-convert.p{os.getpid()}.def456"
    mine.mkdir()
    alive = tmp_path / "edgeq-convert.p1.keep"  # pid 1 always runs
    alive.mkdir()
    unrelated = tmp_path / "edgeq-notours"
    unrelated.mkdir()
    removed = sweep_stale(tmp_path)
    assert removed == [stale.name]
    assert not stale.exists() and mine.exists() and alive.exists() and unrelated.exists()


def test_temp_folder_names_carry_the_pid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    path = make_temp_dir("verify")
    assert path.parent == tmp_path and path.name.startswith(f"edgeq-verify.p{os.getpid()}.")
    assert sweep_stale(tmp_path) == []  # ours, alive


@pytest.mark.parametrize("columns", ["60", "100", "200"])
def test_targets_table_never_squeezes_a_column_to_nothing(columns: str) -> None:
    r = run_edgeq("targets", env={"COLUMNS": columns})
    assert r.code == 0, r.stderr
    header = next(line for line in r.stdout.splitlines() if "name" in line)
    cells = [c.strip() for c in header.strip("┃ \n").split("┃")]
    assert all(cells), header  # an empty header cell is a column rendered at zero width
    assert "cortex-m4" in r.stdout and "zephyr" in r.stdout
