"""``edgeq verify``: generated projects built against the real TFLM trees and run on QEMU
boards (Cortex-M3/M4F/M55/M7/M33) and natively (host), with the arena measured on the target.

The matrix is data: one row per core (target, QEMU board, tree flavour, models). Every
model runs on the M4F and the host; the other cores run the models whose arena or
kernels differ most between CPUs (depthwise convolutions, the unrolled LSTM). Each TFLM
library is compiled once per run (``tests.tools.tflm_cache``); the rest is seconds per row.
Set ``EDGEQ_VERIFY_FIGURES=<file>`` to collect every row's arena figures as JSON lines.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from edgeq.firmware.tflm_cache import ensure_library, library_key, request_file_api
from edgeq.firmware.verify import VerificationFailed, VerifyResult, verify
from edgeq.firmware.verify_setup import VerifyError, parse_console, read_project, resolve_tree
from edgeq.errors import ToolMissingError
from tests.firmware_corpus import CORPUS, CorpusModel, build_project, quantize_model
from tests.tools import ROOT, require_tool, tflm_cache, tflm_dir

ALL = tuple(CORPUS)
#: Where the CMSIS-NN code paths and pointer-free layouts differ most from the M4F.
SUBSET = ("ds_cnn", "lstm", "autoencoder")  # the autoencoder: the per-channel Dense model that failed on M3/M4


@dataclass(frozen=True)
class Core:
    target: str
    board: str | None
    tree: str  # flavour folder of /work/shared/tflm
    models: tuple[str, ...]


CORES = (
    Core("cortex-m4", "qemu-mps2-an386", "cmsis-nn", ALL),
    Core("host", None, "reference", ALL),
    Core("cortex-m3", "qemu-mps2-an385", "cmsis-nn", SUBSET),
    Core("cortex-m55", "qemu-mps3-an547", "cmsis-nn", (*SUBSET, "mobilenet_dw", "autoencoder_pt")),  # planned, per-tensor
    Core("cortex-m7", "qemu-mps2-an500", "cmsis-nn", SUBSET),
    Core("cortex-m33", "qemu-mps2-an505", "cmsis-nn", SUBSET),
)
MATRIX = [pytest.param(core, model, id=f"{model}-{core.target}") for core in CORES for model in core.models]
CLI = [sys.executable, "-c", (
    "import sys\nimport edgeq.cli.app as cli\nfrom edgeq.cli.verify import verify_command\n"
    "if not any(c.name == 'verify' or c.callback is verify_command for c in cli.app.registered_commands):\n"
    "    cli.app.command('verify')(verify_command)\ncli.main(sys.argv[1:])\n")]


def _cli(*args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, timeout=timeout)


def _tools(core: Core) -> None:
    require_tool("cmake")
    if core.board:
        require_tool("arm-none-eabi-gcc")
        require_tool("qemu-system-arm")
    else:
        require_tool("c++")


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], CorpusModel]:
    """Quantize corpus models on first use, once per session."""
    root = tmp_path_factory.mktemp("corpus")
    done: dict[str, CorpusModel] = {}

    def get(name: str) -> CorpusModel:
        if name not in done:
            done[name] = quantize_model(name, root / name)
        return done[name]

    return get


@pytest.fixture(scope="session")
def verified(corpus, tmp_path_factory: pytest.TempPathFactory) -> Callable[[Core, str], tuple[Path, VerifyResult]]:
    """Build + verify (with the min-arena search) each (core, model) once per session."""
    tflm_cache(tmp_path_factory)
    done: dict[tuple[str, str], tuple[Path, VerifyResult]] = {}

    def get(core: Core, model: str) -> tuple[Path, VerifyResult]:
        key = (core.target, model)
        if key not in done:
            _tools(core)
            tree = tflm_dir(core.tree)
            out = build_project(corpus(model), core.target, core.board, tmp_path_factory.mktemp(f"{model}-{core.target}"))
            done[key] = (out, verify(out, tflm_dir=tree, find_min_arena=True, jobs=2, timeout=120))
        return done[key]

    return get


def _record(core: Core, model: str, result: VerifyResult) -> None:
    target = os.environ.get("EDGEQ_VERIFY_FIGURES")
    if target:
        row = {"model": model, "target": core.target, "board": core.board, "arena_size": result.arena_size_bytes,
               "min_arena": result.min_arena_bytes, "used": result.arena_used_bytes, "ok": result.ok,
               "exit": result.exit_meaning, "method": result.min_arena_method, "seconds": result.to_dict()["seconds"]}
        with open(target, "a", encoding="utf-8") as f:
            f.write(json.dumps(row, sort_keys=True) + "\n")


@pytest.mark.slow
@pytest.mark.parametrize(("core", "model"), MATRIX)
def test_firmware_matches_and_arena_fits(verified, core: Core, model: str) -> None:
    """Exit 0, output equal to the reference, and k…TensorArenaSize >= the measured minimum."""
    _, result = verified(core, model)
    _record(core, model, result)
    figures = (f"{model} on {core.target}: k…TensorArenaSize={result.arena_size_bytes} min={result.min_arena_bytes} "
               f"used={result.arena_used_bytes} exit={result.exit_meaning}: {result.message}\n" + "\n".join(result.console_tail))
    assert result.firmware_exit_code == 0 and result.output_match and result.ok, figures
    assert result.min_arena_bytes is not None and result.arena_used_bytes is not None, figures
    assert result.arena_used_bytes <= result.min_arena_bytes <= result.arena_size_bytes, figures
    assert result.board == core.board and result.target == core.target


@pytest.mark.slow
@pytest.mark.parametrize("core", [c for c in CORES if "mobilenet_dw" in c.models and c.board], ids=lambda c: c.target)
def test_an_offline_memory_plan_runs_on_the_device_at_its_planned_arena(verified, core: Core) -> None:
    """The corpus model TFLM's greedy planner handles worst carries an offline memory plan
    (`edgeq quantize` wrote it, `edgeq build` keeps it and measures with it); on the device
    it starts, matches, and fits the k…TensorArenaSize computed from the planned host figure."""
    out, result = verified(core, "mobilenet_dw")
    memory = json.loads((out / "report.json").read_text())["memory"]
    assert memory["preplanned"] and memory["plan"] is None, memory
    assert b"OfflineMemoryAllocation" in (out / "mobilenet_dw.tflite").read_bytes()
    profile = memory["profile"]
    assert profile["lower_bound_bytes"] < profile["greedy_bytes"]  # the model the plan is for
    assert result.firmware_exit_code == 0 and result.output_match and result.ok, result.message
    assert result.min_arena_bytes is not None and result.min_arena_bytes <= result.arena_size_bytes


@pytest.mark.slow
def test_second_verify_reuses_the_cached_library(verified, tmp_path: Path) -> None:
    """The library is keyed per CPU/tree, not per project: another project links the cached .a."""
    core = CORES[0]
    first_dir, first = verified(core, "example")
    _, other = verified(core, "two_out")
    assert other.library == first.library and other.library_cached
    again = verify(first_dir, tflm_dir=tflm_dir(core.tree), jobs=2)
    assert again.ok and again.library_cached and again.library_seconds < 5
    assert again.min_arena_bytes is None and again.min_arena_method is None
    assert again.check() is again
    done = _cli("verify", str(first_dir), "--tflm-dir", str(tflm_dir(core.tree)), "--jobs", "2")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "OK: output matches the TFLM reference" in done.stdout and "cached" in done.stdout


@pytest.mark.slow
def test_arena_16_bytes_short_says_by_how_much(verified, tmp_path: Path) -> None:
    """k…TensorArenaSize hand-edited to 16 bytes below the measured need: exit 1 and the gap."""
    core = CORES[0]
    project_dir, measured = verified(core, "example")
    need = measured.min_arena_bytes
    assert need is not None
    edited = tmp_path / "short"
    shutil.copytree(project_dir, edited)
    project = read_project(edited)
    settings = edited / project.settings
    settings.write_text(project.set_arena(settings.read_text(), need - 16))
    done = _cli("verify", str(edited), "--tflm-dir", str(tflm_dir(core.tree)), "--jobs", "2", "--json")
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Traceback" not in done.stderr and "too small by 16 bytes" in done.stderr, done.stderr
    doc = json.loads(done.stdout)
    assert (doc["kind"], doc["schema_version"], doc["ok"], doc["exit_meaning"]) == ("verify", 1, False, "setup_failed")
    assert doc["arena"]["short_bytes"] == 16 and doc["arena"]["min_bytes"] == need
    assert doc["arena"]["size_bytes"] == need - 16 and "edgeq: AllocateTensors() failed" in "\n".join(doc["console_tail"])



@pytest.mark.slow
def test_older_project_is_bisected_over_rebuilt_images(verified, tmp_path: Path) -> None:
    """A project without the EDGEQ_FIND_MIN_ARENA option (made before it existed): the need
    is found by rebuilding a copy with k…TensorArenaSize edited, and agrees with the device."""
    core = CORES[0]
    project_dir, measured = verified(core, "example")
    need = measured.min_arena_bytes
    assert need is not None and measured.min_arena_method == "device"
    old = tmp_path / "old"
    shutil.copytree(project_dir, old)
    cmake_lists = old / "CMakeLists.txt"
    text = re.sub(r"option\(EDGEQ_FIND_MIN_ARENA.*?\nendif\(\)\n", "", cmake_lists.read_text(), flags=re.S)
    assert "EDGEQ_FIND_MIN_ARENA" not in text
    cmake_lists.write_text(text)
    project = read_project(old)
    settings = old / project.settings
    settings.write_text(project.set_arena(settings.read_text(), need - 16))
    original = settings.read_text()
    result = verify(old, tflm_dir=tflm_dir(core.tree), jobs=2)
    assert not result.ok and result.exit_meaning == "setup_failed" and result.min_arena_method == "rebuild"
    assert (result.min_arena_bytes, result.arena_short_bytes) == (need, 16)
    assert "too small by 16 bytes" in result.message and project.settings in (result.hint or "")
    assert settings.read_text() == original  # the search edits a copy, never the project
    with pytest.raises(VerificationFailed, match="too small by 16 bytes"):
        result.check()

# ----------------------------------------------------------------- setup errors (no compiles)
@pytest.fixture(scope="module")
def m4_project(corpus, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_project(corpus("two_out"), "cortex-m4", "qemu-mps2-an386", tmp_path_factory.mktemp("m4-two-out"))


@pytest.fixture(scope="module")
def host_project(corpus, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_project(corpus("two_out"), "host", None, tmp_path_factory.mktemp("host-two-out"))


def _fake_tree(root: Path, *, cmsis_nn: bool) -> Path:
    for marker in ("tensorflow/lite/micro/micro_interpreter.h", "tensorflow/lite/micro/cortex_m_generic/debug_log_callback.h",
                   *(["third_party/cmsis_nn/Include/arm_nnfunctions.h"] if cmsis_nn else [])):
        (root / marker).parent.mkdir(parents=True, exist_ok=True)
        (root / marker).write_text("")
    return root


def test_tree_selection(m4_project: Path, host_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    both = tmp_path / "trees"
    cmsis, ref = _fake_tree(both / "cmsis-nn", cmsis_nn=True), _fake_tree(both / "reference", cmsis_nn=False)
    monkeypatch.delenv("EDGEQ_TFLM_DIR", raising=False)
    assert resolve_tree(both, read_project(m4_project)) == cmsis.resolve()
    assert resolve_tree(both, read_project(host_project)) == ref.resolve()
    monkeypatch.setenv("EDGEQ_TFLM_DIR", str(both))
    assert resolve_tree(None, read_project(m4_project)) == cmsis.resolve()
    assert resolve_tree(ref, read_project(host_project)) == ref.resolve()  # the argument wins
    with pytest.raises(VerifyError, match="reference-kernel TFLM tree.*CMSIS-NN") as refused:
        resolve_tree(ref, read_project(m4_project))
    assert "OPTIMIZED_KERNEL_DIR=cmsis_nn" in (refused.value.hint or "")


def test_no_tree_says_how_to_get_one(m4_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import edgeq.firmware.verify_setup as setup

    monkeypatch.delenv("EDGEQ_TFLM_DIR", raising=False)
    monkeypatch.setattr(setup, "default_tflm_location", lambda: None)
    with pytest.raises(VerifyError, match="no TFLM source tree") as no_tree:
        verify(m4_project)
    hint = no_tree.value.hint or ""
    for needle in ("create_tflm_tree.py", "TARGET=cortex_m_generic", "OPTIMIZED_KERNEL_DIR=cmsis_nn", "--tflm-dir", "EDGEQ_TFLM_DIR"):
        assert needle in hint, hint
    (tmp_path / "empty").mkdir()
    with pytest.raises(VerifyError, match="is not a TFLM tree"):
        verify(m4_project, tflm_dir=tmp_path / "empty")


def test_missing_tools_name_the_packages(m4_project: Path, host_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trees = tmp_path / "trees"
    _fake_tree(trees / "cmsis-nn", cmsis_nn=True)
    _fake_tree(trees / "reference", cmsis_nn=False)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(ToolMissingError, match="cmake") as missing:
        verify(m4_project, tflm_dir=trees)
    assert "apt-get install cmake" in (missing.value.hint or "")
    for tool in ("cmake", "make"):
        (bin_dir / tool).symlink_to(shutil.which(tool, path=os.defpath + ":/usr/bin") or "/bin/true")
    with pytest.raises(ToolMissingError, match="arm-none-eabi-gcc") as missing:
        verify(m4_project, tflm_dir=trees)
    assert "gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib" in (missing.value.hint or "")
    for tool in ("arm-none-eabi-gcc", "arm-none-eabi-g++"):
        (bin_dir / tool).symlink_to("/bin/true")
    with pytest.raises(ToolMissingError, match="qemu-system-arm") as missing:
        verify(m4_project, tflm_dir=trees)
    assert "apt-get install qemu-system-arm" in (missing.value.hint or "")
    with pytest.raises(ToolMissingError, match="c\\+\\+") as missing:
        verify(host_project, tflm_dir=trees)
    assert "apt-get install g++" in (missing.value.hint or "")


def test_project_and_board_errors(m4_project: Path, host_project: Path, tmp_path: Path) -> None:
    with pytest.raises(VerifyError, match="not a generated CMake project"):
        verify(tmp_path)
    with pytest.raises(VerifyError, match="generated for board qemu-mps2-an386, not qemu-mps2-an385"):
        verify(m4_project, board="qemu-mps2-an385")
    with pytest.raises(VerifyError, match="host project"):
        verify(host_project, board="qemu-mps2-an386")
    project = read_project(m4_project)
    assert (project.name, project.target, project.board, project.cross, project.cmsis_nn) == \
        ("two_out", "cortex-m4", "qemu-mps2-an386", True, True)
    host = read_project(host_project)
    assert (host.target, host.board, host.cross, host.cmsis_nn) == ("host", None, False, False)


def test_console_contract() -> None:
    ok = parse_console("edgeq: arena_used_bytes=2612 kDigitsTensorArenaSize=4656\nedgeq: output matches the TFLM reference\n")
    assert (ok.arena_used_bytes, ok.arena_size_bytes, ok.matched, ok.mismatches) == (2612, 4656, True, None)
    assert parse_console("edgeq: output matches the LiteRT reference\n").matched
    bad = parse_console("edgeq: MISMATCH: 3 value(s) differ from the TFLM reference\n")
    assert (bad.matched, bad.mismatches) == (False, 3)
    alloc = parse_console("Failed to resize buffer.\nedgeq: AllocateTensors() failed with a 4640-byte arena\n")
    assert alloc.alloc_failed_bytes == 4640 and alloc.arena_used_bytes is None
    search = parse_console("edgeq: min_arena_bytes=0\nedgeq: min_arena_bytes=2992\n")
    assert search.min_arena_bytes == 2992


def test_library_key_is_per_cpu_and_built_once(corpus, m4_project: Path, tmp_path: Path) -> None:
    """Same key for two projects of one CPU, another for another CPU; concurrent callers
    of one key build once (the file lock) and the library appears whole (atomic rename)."""
    require_tool("cmake")
    require_tool("arm-none-eabi-gcc")
    tree = tflm_dir("cmsis-nn")
    m3_project = build_project(corpus("two_out"), "cortex-m3", "qemu-mps2-an385", tmp_path / "m3")
    keys = {}
    for label, project in (("m4", m4_project), ("m4-again", m4_project), ("m3", m3_project)):
        build_dir = tmp_path / f"build-{label}"
        request_file_api(build_dir)
        subprocess.run(["cmake", "-S", str(project), "-B", str(build_dir), f"-DTFLM_DIR={tree}"], check=True,
                       capture_output=True)
        keys[label] = (build_dir, library_key(build_dir, tree).key)
    assert keys["m4"][1] == keys["m4-again"][1] != keys["m3"][1]
    calls: list[int] = []
    fake = tmp_path / "fake.a"

    def slow_build() -> Path:
        calls.append(1)
        time.sleep(0.5)
        fake.write_bytes(b"!<arch>\n")
        return fake

    results = []
    threads = [threading.Thread(target=lambda d=d: results.append(ensure_library(d, tree, slow_build, root=tmp_path / "cache")))
               for d in (keys["m4"][0], keys["m4-again"][0])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and sorted(r.built for r in results) == [False, True]
    assert len({r.path for r in results}) == 1 and results[0].path.read_bytes() == b"!<arch>\n"
    assert not list(results[0].path.parent.glob(".*.tmp"))
