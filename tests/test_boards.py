"""QEMU boards beyond AN385/AN386/AN547: mps2-an500 (Cortex-M7), mps2-an505 (Cortex-M33,
Secure state) and microbit (nRF51, Cortex-M0, running cortex-m0plus code).

Each board's startup code and linker script (templates/boards/common, memory map from
templates/boards/<board>/board.toml) link a small program that runs under the real
qemu-system-arm: stdio and the exit code through semihosting, .data copied, .bss zeroed,
the FPU on where the core has one, the CPU the one the board claims, a fault ending QEMU
with the fault exit code, and on the 16 KiB micro:bit a RAM overflow failing the link.
With a TFLM tree (``tests.tools.tflm_dir``) the whole generated project is verified on each board.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from edgeq.firmware.project import EXIT_CODES, IRQ_COUNT, qemu_command, write_firmware
from edgeq.firmware.jinja import render
from edgeq.errors import TargetError
from edgeq.firmware.targets import Board, Target, load_board, load_target
from edgeq.model.tflite_info import read_tflite
from tests.codegen_models import sample_and_reference, tiny_cnn
from tests.tools import require_tool, run, tflm_cache, tflm_dir

BOARDS = {"qemu-mps2-an500": "cortex-m7", "qemu-mps2-an505": "cortex-m33", "qemu-microbit": "cortex-m0plus"}
# SCB CPUID part numbers of the cores QEMU models (bits 15:4): the board is the core it says.
CPU_PART = {"qemu-mps2-an500": 0xC27, "qemu-mps2-an505": 0xD21, "qemu-microbit": 0xC20}
# An address each machine has nothing at (info mtree). Not 0xF0000000 on the micro:bit:
# QEMU maps an "unimplemented device" there (nrf51_soc.private) that reads as 0. The
# micro:bit's is the first byte past its 16 KiB SRAM, what a stack overflow would touch.
UNMAPPED = {"qemu-mps2-an500": 0xF0000000, "qemu-mps2-an505": 0xF0000000, "qemu-microbit": 0x20004000}

PROGRAM = r"""
#include <stdint.h>
#include <stdio.h>
static char zeroed[256];
static int initialised = 7;
int main(void) {
  volatile float f = 1.5f;
  f = f * (float)initialised;
  uint32_t cpuid = *(volatile uint32_t *)0xE000ED00u;
  printf("hello from %s: %d %d part %03lx\n", BOARD, (int)f, zeroed[100], (unsigned long)((cpuid >> 4) & 0xFFFu));
#if defined(__ARM_ARCH_8M_MAIN__)
  /* VTOR is banked: Secure code reads VTOR_S (reset 0x10000000 on AN505), non-secure VTOR_NS (0). */
  printf("vtor %08lx\n", (unsigned long)*(volatile uint32_t *)0xE000ED08u);
#endif
#if defined(__ARM_FP) && (__ARM_FP & 8)
  volatile double d = 1.25;
  d = d * 3.0;
  printf("double %d\n", (int)(d * 100.0));
#endif
  return 42;
}
"""


def _link(board: Board, target: Target, tmp_path: Path, main_c: str, *, defines: tuple[str, ...] = ()) -> Path:
    """Render the board's startup.c/linker.ld as write_firmware does and link ``main_c``."""
    gcc = require_tool("arm-none-eabi-gcc")
    ctx = {"board": board, "edgeq_version": "test", "fault_exit_code": EXIT_CODES["fault"], "irq_count": IRQ_COUNT}
    (tmp_path / "startup.c").write_text(render("boards/common/startup.c.j2", ctx))
    (tmp_path / "linker.ld").write_text(render("boards/common/linker.ld.j2", ctx))
    (tmp_path / "main.c").write_text(main_c)
    elf = tmp_path / "app.elf"
    run([gcc, *target.arch_flags, "-O2", "-std=c11", "-Wall", "-Wextra", "-Werror", *defines,
         "--specs=rdimon.specs", "-nostartfiles", "-T", tmp_path / "linker.ld", "-Wl,--gc-sections",
         tmp_path / "startup.c", tmp_path / "main.c", "-o", elf])
    return elf


def _qemu(board: Board, elf: Path) -> subprocess.CompletedProcess[str]:
    qemu = require_tool("qemu-system-arm")
    return subprocess.run([qemu, *qemu_command(board, str(elf))[1:]], capture_output=True, text=True, timeout=60)


def _board(name: str) -> tuple[Board, Target]:
    target = load_target(BOARDS[name])
    return load_board(name, target=target), target


@pytest.mark.parametrize("board_name", sorted(BOARDS))
def test_board_startup_runs_under_qemu(board_name: str, tmp_path: Path) -> None:
    """The program runs on the machine: exit code 42 and stdout through semihosting,
    .data copied and .bss zeroed, single (and on the M7 double) precision floats in
    hardware once the startup code enabled the FPU, and the core QEMU models is the
    board's (on the micro:bit a Cortex-M0 running -mcpu=cortex-m0plus code)."""
    board, target = _board(board_name)
    elf = _link(board, target, tmp_path, PROGRAM, defines=(f'-DBOARD="{board_name}"',))
    proc = _qemu(board, elf)
    assert proc.returncode == 42, (proc.stdout, proc.stderr)
    assert f"hello from {board_name}: 10 0 part {CPU_PART[board_name]:03x}" in proc.stdout
    if board_name == "qemu-mps2-an500":
        assert "double 375" in proc.stdout  # fpv5-d16: the M7's FPU is double precision
    if board_name == "qemu-mps2-an505":
        # Booted (and still) Secure: the banked VTOR reads VTOR_S, the Secure alias of SSRAM1 where the vectors are.
        assert f"vtor {board.vectors_origin:08x}" in proc.stdout


@pytest.mark.parametrize("board_name", sorted(BOARDS))
def test_fpu_enable_only_where_the_core_has_one(board_name: str, tmp_path: Path) -> None:
    """The CPACR write (CP10/CP11 full access) survives the preprocessor for FPU cores only
    (the Cortex-M0/M0+ has no coprocessor access register), and on them it took effect."""
    board, target = _board(board_name)
    gcc = require_tool("arm-none-eabi-gcc")
    _link(board, target, tmp_path, "int main(void) { return 0; }\n")
    preprocessed = run([gcc, *target.arch_flags, "-E", "-P", tmp_path / "startup.c"]).stdout
    has_fpu = bool(target.fpu and target.fpu != "none")
    assert ("0xE000ED88u" in preprocessed) == has_fpu
    if has_fpu:
        cpacr = _link(board, target, tmp_path, "int main(void) { return (int)((*(volatile unsigned *)0xE000ED88u >> 20) & 0xFu); }\n")
        assert _qemu(board, cpacr).returncode == 0xF


@pytest.mark.parametrize("board_name", sorted(BOARDS))
def test_fault_exits_with_code(board_name: str, tmp_path: Path) -> None:
    """A load from unmapped memory faults; the handler prints and exits with the fault code."""
    board, target = _board(board_name)
    elf = _link(board, target, tmp_path, f"int main(void) {{ return *(volatile int *)0x{UNMAPPED[board_name]:08X}u; }}\n")
    proc = _qemu(board, elf)
    assert proc.returncode == EXIT_CODES["fault"], (proc.stdout, proc.stderr)
    assert "HardFault" in proc.stdout + proc.stderr


@pytest.mark.parametrize("board_name", sorted(BOARDS))
def test_undefined_instruction_exits_with_code(board_name: str, tmp_path: Path) -> None:
    """``udf`` faults on every core (a UsageFault escalated to HardFault, or HardFault on ARMv6-M)."""
    board, target = _board(board_name)
    elf = _link(board, target, tmp_path, 'int main(void) { __asm__ volatile("udf #0"); return 0; }\n')
    proc = _qemu(board, elf)
    assert proc.returncode == EXIT_CODES["fault"], (proc.stdout, proc.stderr)


def test_microbit_ram_overflow_fails_the_link(tmp_path: Path) -> None:
    """16 KiB of RAM: an arena that does not fit is a link error naming RAM, not a run-time crash."""
    board, target = _board("qemu-microbit")
    with pytest.raises(pytest.fail.Exception, match="RAM overflowed|region .RAM. overflowed"):
        _link(board, target, tmp_path, "static unsigned char arena[16384];\n"
              "int main(void) { arena[0] = 1; return arena[100]; }\n")


def test_boards_fit_only_their_targets() -> None:
    for name, target_name in BOARDS.items():
        assert name in load_target(target_name).boards
    with pytest.raises(TargetError, match="does not fit"):
        load_board("qemu-microbit", target=load_target("cortex-m4"))
    with pytest.raises(TargetError, match="does not fit"):
        load_board("qemu-mps2-an505", target=load_target("cortex-m7"))


@pytest.fixture(scope="module")
def tiny() -> tuple[bytes, object, list, list]:
    data, info = read_tflite(tiny_cnn())
    sample, reference = sample_and_reference(data)
    return data, info, sample, reference


@pytest.mark.parametrize("board_name", sorted(BOARDS))
def test_project_builds_and_runs_under_qemu(board_name: str, tiny, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Acceptance: the generated CMake project with a real TFLM tree, run on the board
    through ``edgeq verify`` (one TFLM library per CPU, from the session's cache): exit 0
    because the output matches, with an arena no larger than the generated one."""
    from edgeq.firmware.verify import verify

    root = tflm_dir("cmsis-nn")
    require_tool("cmake")
    require_tool("arm-none-eabi-gcc")
    require_tool("qemu-system-arm")
    tflm_cache(tmp_path_factory)
    data, info, sample, reference = tiny
    out = tmp_path / "fw"
    result = write_firmware(out, tflite=data, info=info, name="tiny", target=load_target(BOARDS[board_name]),
                            source_name="tiny.tflite", board=board_name, host_arena_bytes=None,
                            sample_input=sample, reference_output=reference)
    verified = verify(out, tflm_dir=root, jobs=2)
    assert verified.board == board_name
    assert verified.ok and verified.firmware_exit_code == EXIT_CODES["match"], verified.message + "\n" + "\n".join(verified.console_tail)
    assert verified.arena_used_bytes is not None and 0 < verified.arena_used_bytes <= result.arena_bytes
    assert re.search(r"output matches the (TFLM|LiteRT) reference", "\n".join(verified.console_tail))
