"""``edgeq build --target ...``: a TFLM project that builds (and, on a QEMU board, runs).

Layout written under ``out_dir`` (the build output folder; ``<name>.tflite`` and
``report.json`` written there by the pipeline are left alone)::

    CMakeLists.txt  README.md  cmake/arm-none-eabi.cmake (cross targets)
    src/main.cc  src/<name>_model_data.{h,cc}  src/<name>_model_settings.h
    src/<name>_op_resolver.h  src/<name>_sample_input.h (with a sample)
    board/startup.c  board/linker.ld (with --board)
    .edgeq-manifest.json

Model sources are refreshed on every run; scaffold files are kept once the user edits
them (see ``edgeq.codegen.scaffold``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgeq.codegen.arena import measure_host_arena
from edgeq.codegen.budget import BudgetFigures, check_budget
from edgeq.codegen.scaffold import GeneratedFile, WriteResult, render_tree, write_tree
from edgeq.codegen.sources import SourceOptions, base_context, model_sources, sample_source
from edgeq.errors import TargetError
from edgeq.targets import Board, Target, load_board
from edgeq.tflite_info import ModelInfo

SRC_DIR = "src"
BOARD_DIR = "board"
# Firmware exit codes, shared by main.cc, startup.c and the README.
EXIT_CODES = {"match": 0, "mismatch": 1, "setup_failed": 2, "invoke_failed": 3, "fault": 4}
IRQ_COUNT = 32


@dataclass(frozen=True)
class FirmwareResult:
    """What ``write_firmware`` did: files, arena, budget, board."""

    out_dir: Path
    name: str
    target: str
    board: str | None
    write: WriteResult
    budget: BudgetFigures

    @property
    def files(self) -> tuple[str, ...]:
        return self.write.written

    @property
    def arena_bytes(self) -> int:
        return self.budget.arena_bytes

    def to_dict(self) -> dict[str, Any]:
        return {
            "out_dir": str(self.out_dir),
            "name": self.name,
            "target": self.target,
            "board": self.board,
            "arena_bytes": self.arena_bytes,
            "budget": self.budget.to_dict(),
            "write": self.write.to_dict(),
        }


def qemu_command(board: Board, elf: str = "firmware.elf") -> list[str]:
    """The qemu-system-arm invocation for a board (semihosting stdio + exit code)."""
    return [
        "qemu-system-arm", "-M", board.qemu_machine, "-nographic", "-monitor", "none", "-serial", "none",
        "-semihosting-config", "enable=on,target=native", "-kernel", elf,
    ]


def project_files(
    *,
    tflite: bytes,
    info: ModelInfo,
    options: SourceOptions,
    target: Target,
    board: Board | None,
    budget: BudgetFigures,
    source_name: str,
    sample_input: Sequence[np.ndarray] | None,
    reference_output: Sequence[np.ndarray] | None,
) -> list[GeneratedFile]:
    """Every file of the project, rendered in memory (nothing is written here)."""
    files = model_sources(tflite=tflite, info=info, options=options, source_name=source_name,
                          arena=budget.arena, target_name=target.name, dest=SRC_DIR)
    has_sample = sample_input is not None and reference_output is not None
    if has_sample:
        files.append(sample_source(info=info, options=options, source_name=source_name,
                                   sample_input=sample_input, reference_output=reference_output, dest=SRC_DIR))
    ctx = base_context(info=info, options=options, source_name=source_name)
    ctx.update(
        target=target,
        board=board,
        cross=target.is_cross,
        cmsis_nn=target.kernels == "cmsis_nn",
        has_sample=has_sample,
        needs_signal=any(op.custom and op.name.startswith("Signal") for op in info.ops),
        arena_bytes=budget.arena_bytes,
        arena_rule=budget.arena.rule,
        budget=budget,
        qemu=qemu_command(board) if board else None,
        exit_codes=EXIT_CODES,
        fault_exit_code=EXIT_CODES["fault"],
        irq_count=IRQ_COUNT,
        src_dir=SRC_DIR,
        board_dir=BOARD_DIR,
    )
    files += render_tree(target.build_system, ctx)
    if board is not None:
        files += render_tree("boards/common", ctx, dest=BOARD_DIR, overrides=f"boards/{board.name}")
    return files


def write_firmware(
    out_dir: Path,
    *,
    tflite: bytes,
    info: ModelInfo,
    name: str,
    target: Target,
    host_arena_bytes: int | None,
    sample_input: list[np.ndarray] | None,
    reference_output: list[np.ndarray] | None,
    source_name: str,
    board: str | None = None,
    lang: str = "cpp",
    labels: list[str] | None = None,
    force: bool = False,
    dry_run: bool = False,
    flash: int | None = None,
    ram: int | None = None,
    allow_over_budget: bool = False,
) -> FirmwareResult:
    """Write the model sources and the project scaffold for ``target`` into ``out_dir``.

    ``host_arena_bytes`` is TFLM's arena on the host (measured here if ``None``);
    ``sample_input``/``reference_output`` are quantized arrays, the latter LiteRT's
    BUILTIN_REF output, embedded so the firmware can prove it computes the same thing.
    Raises ``BudgetError`` (unless ``allow_over_budget``), ``TargetError`` for a board
    that does not fit the target, ``OutputExistsError`` for foreign files in the way.
    """
    if board is not None and not target.is_cross:
        raise TargetError(f"--board {board} needs a Cortex-M target, not {target.name!r}",
                          hint="drop --board for host builds")
    board_obj = load_board(board, target=target) if board else None
    if (sample_input is None) != (reference_output is None):
        raise ValueError("sample_input and reference_output go together")
    options = SourceOptions.create(name=name, lang=lang, labels=labels)
    host = host_arena_bytes if host_arena_bytes is not None else measure_host_arena(tflite, info=info)
    budget = check_budget(tflite=tflite, info=info, target=target, host_arena_bytes=host, flash=flash, ram=ram,
                          allow_over_budget=allow_over_budget)
    files = project_files(tflite=tflite, info=info, options=options, target=target, board=board_obj, budget=budget,
                          source_name=source_name, sample_input=sample_input, reference_output=reference_output)
    result = write_tree(Path(out_dir), files, force=force, dry_run=dry_run)
    return FirmwareResult(out_dir=Path(out_dir), name=options.name, target=target.name,
                          board=board_obj.name if board_obj else None, write=result, budget=budget)


__all__ = ["FirmwareResult", "write_firmware", "check_budget", "project_files", "qemu_command", "EXIT_CODES"]
