"""``write_firmware``: golden project trees, budget check, board rules, QEMU boards,
and (with a TFLM tree, see ``tests.tools.tflm_dir``) the whole project built with CMake and run under QEMU."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from edgeq.firmware.project import EXIT_CODES, check_budget, project_files, qemu_command, write_firmware
from edgeq.firmware.jinja import render
from edgeq.errors import BudgetError, TargetError, UserError
from edgeq.firmware.targets import load_board, load_target
from edgeq.model.tflite_info import read_tflite
from tests.codegen_golden import compare, tree
from tests.codegen_models import sample_and_reference, tiny_cnn
from tests.tools import require_tool, run, tflm_cache, tflm_dir

HOST_ARENA = 2208
BOARDS = {"qemu-mps2-an385": "cortex-m3", "qemu-mps2-an386": "cortex-m4", "qemu-mps3-an547": "cortex-m55"}


@pytest.fixture(scope="module")
def tiny() -> tuple[bytes, object, list, list]:
    data, info = read_tflite(tiny_cnn())
    sample, reference = sample_and_reference(data)
    return data, info, sample, reference


def _write(out: Path, tiny, target: str = "cortex-m4", board: str | None = "qemu-mps2-an386", **kw):  # type: ignore[no-untyped-def]
    data, info, sample, reference = tiny
    kw.setdefault("host_arena_bytes", HOST_ARENA)
    kw.setdefault("sample_input", sample)
    kw.setdefault("reference_output", reference)
    return write_firmware(out, tflite=data, info=info, name="tiny", target=load_target(target), source_name="tiny.tflite", board=board, **kw)


@pytest.mark.parametrize(("case", "target", "board"), [("firmware-cortex-m4-an386", "cortex-m4", "qemu-mps2-an386"), ("firmware-host", "host", None)])
def test_golden_project(tiny, tmp_path: Path, case: str, target: str, board: str | None) -> None:
    result = _write(tmp_path / "fw", tiny, target=target, board=board)
    _, info, _, _ = tiny
    compare(case, tmp_path / "fw", sha256=info.sha256, size=info.size_bytes, runtime_code_bytes=load_target(target).runtime_code_bytes)
    assert result.arena_bytes >= HOST_ARENA and result.to_dict()["budget"]["ok"]
    assert set(result.files) == set(tree(tmp_path / "fw")) - {".edgeq-manifest.json"}


def test_deterministic(tiny, tmp_path: Path) -> None:
    _write(tmp_path / "a", tiny, target="cortex-m55", board="qemu-mps3-an547")
    _write(tmp_path / "b", tiny, target="cortex-m55", board="qemu-mps3-an547")
    assert tree(tmp_path / "a") == tree(tmp_path / "b")


def test_rerun_keeps_user_edits(tiny, tmp_path: Path) -> None:
    out = tmp_path / "fw"
    _write(out, tiny)
    (out / "src" / "main.cc").write_text("// my app\n")
    (out / "README.md").unlink()
    again = _write(out, tiny, host_arena_bytes=HOST_ARENA * 2)
    actions = {a.path: a.action for a in again.write.actions}
    assert actions["src/main.cc"] == "kept" and actions["README.md"] == "create"
    assert actions["src/tiny_model_settings.h"] == "update" and actions["CMakeLists.txt"] == "unchanged"
    assert (out / "src" / "main.cc").read_text() == "// my app\n"
    forced = _write(out, tiny, force=True)
    assert {a.path: a.action for a in forced.write.actions}["src/main.cc"] == "overwrite"
    assert "RegisterDebugLogCallback" in (out / "src" / "main.cc").read_text()


def test_dry_run_writes_nothing(tiny, tmp_path: Path) -> None:
    result = _write(tmp_path / "fw", tiny, dry_run=True)
    assert not (tmp_path / "fw").exists()
    assert "src/tiny_model_data.cc" in result.files and "board/linker.ld" in result.files


def test_failed_write_leaves_nothing(tiny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Files are staged then moved: an error while staging leaves the folder untouched."""
    out = tmp_path / "fw"
    _write(out, tiny)
    before = tree(out)
    calls = {"n": 0}
    real = Path.write_bytes

    def flaky(self: Path, data: bytes) -> int:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device")
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", flaky)
    with pytest.raises(OSError):
        _write(out, tiny, host_arena_bytes=HOST_ARENA * 3)
    monkeypatch.undo()
    assert tree(out) == before
    assert not [p for p in tmp_path.rglob("*edgeq-staging*")]


def test_budget(tiny) -> None:
    data, info, _, _ = tiny
    m0 = load_target("cortex-m0plus")
    ok = check_budget(tflite=data, info=info, target=m0, host_arena_bytes=HOST_ARENA)
    assert ok.ok and ok.flash_used == info.size_bytes + m0.runtime_code_bytes and ok.ram_limit == m0.ram_bytes
    with pytest.raises(BudgetError) as exc:
        check_budget(tflite=data, info=info, target=m0, host_arena_bytes=HOST_ARENA, flash=4096, ram=1024)
    message = exc.value.message
    assert "flash" in message and "RAM" in message and "4,096" in message and f"{ok.arena_bytes:,}" in message
    assert "--allow-over-budget" in (exc.value.hint or "")
    over = check_budget(tflite=data, info=info, target=m0, host_arena_bytes=HOST_ARENA, ram=1024, allow_over_budget=True)
    assert over.over_ram and not over.over_flash and over.to_dict()["ram"]["over"]
    assert check_budget(tflite=data, target=load_target("host"), host_arena_bytes=10**9).ok
    with pytest.raises(UserError):
        check_budget(tflite=data, info=info, target=m0, host_arena_bytes=HOST_ARENA, flash=0)


def test_budget_error_before_writing(tiny, tmp_path: Path) -> None:
    with pytest.raises(BudgetError):
        _write(tmp_path / "fw", tiny, ram=100)
    assert not (tmp_path / "fw").exists()


def test_board_rules(tiny, tmp_path: Path) -> None:
    with pytest.raises(TargetError, match="does not fit"):
        _write(tmp_path / "a", tiny, target="cortex-m4", board="qemu-mps2-an385")
    with pytest.raises(TargetError, match="host"):
        _write(tmp_path / "b", tiny, target="host", board="qemu-mps2-an386")
    generic = _write(tmp_path / "c", tiny, target="cortex-m7", board=None)
    assert "board/startup.c" not in generic.files and "nosys.specs" in (tmp_path / "c" / "CMakeLists.txt").read_text()
    host = _write(tmp_path / "d", tiny, target="host", board=None, sample_input=None, reference_output=None)
    assert "cmake/arm-none-eabi.cmake" not in host.files
    # No sample given: a pseudo-random input and host TFLM's output for it (every firmware checks something).
    assert host.reference_input == "pseudo-random (seed 0)" and host.reference_output.startswith("TFLM")
    assert "input:  pseudo-random (seed 0)" in (tmp_path / "d" / "src" / "tiny_sample_input.h").read_text()


TRIVIAL = r"""
#include <stdio.h>
static char zeroed[256];
static int initialised = 7;
int main(void) {
  volatile float f = 1.5f;
  f = f * (float)initialised;
  printf("hello from %s: %d %d\n", BOARD, (int)f, zeroed[100]);
  return 42;
}
"""


@pytest.mark.parametrize("board_name", sorted(BOARDS))
def test_board_startup_runs_under_qemu(board_name: str, tmp_path: Path) -> None:
    """Startup code + linker script link a trivial program that QEMU runs; its exit code
    comes back through semihosting. Also checks .data copy, .bss zeroing and the FPU."""
    gcc = require_tool("arm-none-eabi-gcc")
    qemu = require_tool("qemu-system-arm")
    target = load_target(BOARDS[board_name])
    board = load_board(board_name, target=target)
    ctx = {"board": board, "edgeq_version": "test", "fault_exit_code": EXIT_CODES["fault"], "irq_count": 32}
    (tmp_path / "startup.c").write_text(render("boards/common/startup.c.j2", ctx))
    (tmp_path / "linker.ld").write_text(render("boards/common/linker.ld.j2", ctx))
    (tmp_path / "main.c").write_text(TRIVIAL)
    elf = tmp_path / "app.elf"
    run([gcc, *target.arch_flags, "-O2", "-std=c11", "-Wall", "-Wextra", "-Werror", f'-DBOARD="{board_name}"',
         "--specs=rdimon.specs", "-nostartfiles", "-T", tmp_path / "linker.ld", "-Wl,--gc-sections",
         tmp_path / "startup.c", tmp_path / "main.c", "-o", elf])
    cmd = [qemu, *qemu_command(board, str(elf))[1:]]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 42, (proc.stdout, proc.stderr)
    assert f"hello from {board_name}: 10 0" in proc.stdout


def test_fault_exits_with_code(tmp_path: Path) -> None:
    gcc = require_tool("arm-none-eabi-gcc")
    qemu = require_tool("qemu-system-arm")
    target = load_target("cortex-m4")
    board = load_board("qemu-mps2-an386", target=target)
    ctx = {"board": board, "edgeq_version": "test", "fault_exit_code": EXIT_CODES["fault"], "irq_count": 32}
    (tmp_path / "startup.c").write_text(render("boards/common/startup.c.j2", ctx))
    (tmp_path / "linker.ld").write_text(render("boards/common/linker.ld.j2", ctx))
    (tmp_path / "main.c").write_text("int main(void) { return *(volatile int *)0xF0000000u; }\n")
    elf = tmp_path / "fault.elf"
    run([gcc, *target.arch_flags, "-O2", "--specs=rdimon.specs", "-nostartfiles", "-T", tmp_path / "linker.ld",
         tmp_path / "startup.c", tmp_path / "main.c", "-o", elf])
    proc = subprocess.run([qemu, *qemu_command(board, str(elf))[1:]], capture_output=True, text=True, timeout=60)
    assert proc.returncode == EXIT_CODES["fault"] and "HardFault" in proc.stdout + proc.stderr


def test_project_builds_and_runs_under_qemu(tiny, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Acceptance: CMake + arm-none-eabi-gcc + a real TFLM tree, run on QEMU's AN386 (M4F)
    through ``edgeq verify`` (the TFLM library comes from the session's cache): prints an
    arena <= kTinyTensorArenaSize and exits 0 because the output matches."""
    from edgeq.firmware.verify import verify

    root = tflm_dir("cmsis-nn")
    require_tool("cmake")
    require_tool("arm-none-eabi-gcc")
    require_tool("qemu-system-arm")
    tflm_cache(tmp_path_factory)
    out = tmp_path / "fw"
    result = _write(out, tiny)
    verified = verify(out, tflm_dir=root, jobs=2)
    assert verified.ok and verified.firmware_exit_code == EXIT_CODES["match"], verified.message + "\n" + "\n".join(verified.console_tail)
    assert verified.arena_used_bytes is not None and 0 < verified.arena_used_bytes <= result.arena_bytes
    assert verified.arena_size_bytes == result.arena_bytes
    assert re.search(r"output matches the (TFLM|LiteRT) reference", "\n".join(verified.console_tail))


def test_project_files_in_memory_only(tiny) -> None:
    from edgeq.firmware.budget import check_budget as budget_of
    from edgeq.firmware.sources import SourceOptions

    data, info, sample, reference = tiny
    target = load_target("cortex-m55")
    files = project_files(tflite=data, info=info, options=SourceOptions.create(name="x"), target=target,
                          board=load_board("qemu-mps3-an547"), budget=budget_of(tflite=data, info=info, target=target, host_arena_bytes=HOST_ARENA),
                          source_name="x.tflite", sample_input=sample, reference_output=reference)
    by_path = {f.path: f.content for f in files}
    assert b"-mcpu=cortex-m55" in by_path["cmake/arm-none-eabi.cmake"]
    assert b"0x10000000" in by_path["board/linker.ld"] and b"mps3-an547" in by_path["CMakeLists.txt"]
