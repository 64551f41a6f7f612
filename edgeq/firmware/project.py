"""``edgeq build --target ...``: a TFLM project that builds (and, on a QEMU board, runs).

Every project is the same two layers: the model sources plus one **portable runner**
(``<name>_runner.cpp/.h`` from ``templates/runner/``: TFLM-only code, byte-identical in
every build system, verified on QEMU and the host with real TFLM) and a **thin platform
shell** with the project files of the target's build system (``templates/<build
system>/``, described by its ``build_system.toml``). For the CMake build system::

    CMakeLists.txt  README.md  cmake/arm-none-eabi.cmake (cross targets)
    src/main.cc (shell)  src/<name>_runner.{h,cpp}  src/<name>_model_data.{h,cc}
    src/<name>_model_settings.h  src/<name>_op_resolver.h  src/<name>_sample_input.h
    board/startup.c  board/linker.ld (with --board)
    .edgeq-manifest.json

Model sources are refreshed on every run; scaffold files are kept once the user edits
them (see ``edgeq.firmware.scaffold``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgeq.firmware.build_systems import load_build_system
from edgeq.firmware.arena import measure_host_arena
from edgeq.firmware.budget import BudgetFigures, check_budget
from edgeq.firmware.scaffold import GeneratedFile, WriteResult, render_tree, write_tree
from edgeq.firmware.jinja import render
from edgeq.firmware.sources import (LITERT_FALLBACK, PSEUDO_RANDOM_SEED, TFLM_REFERENCE, SourceOptions, base_context,
                                   model_sources, pseudo_random_input, sample_source)
from edgeq.errors import TargetError, UnsupportedOpError
from edgeq.firmware.targets import BOARD_RE, Board, Target, load_board
from edgeq.model.tflite_info import ModelInfo

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
    build_system: str = "cmake-tflm"
    warnings: tuple[str, ...] = ()
    reference_input: str = ""  # where the embedded input came from, e.g. "eval sample 0"
    reference_output: str = TFLM_REFERENCE  # who computed the expected output for it

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
            "build_system": self.build_system,
            "arena_bytes": self.arena_bytes,
            "arena_in_psram": self.budget.arena_in_psram,
            "budget": self.budget.to_dict(),
            "write": self.write.to_dict(),
            "warnings": list(self.warnings),
            "reference_input": self.reference_input,
            "reference_output": self.reference_output,
        }


def qemu_command(board: Board, elf: str = "firmware.elf") -> list[str]:
    """The qemu-system-arm invocation for a board (semihosting stdio + exit code)."""
    return [
        "qemu-system-arm", "-M", board.qemu_machine, "-nographic", "-monitor", "none", "-serial", "none",
        "-semihosting-config", "enable=on,target=native", "-kernel", elf,
    ]


def resolve_board(target: Target, board: str | None, *, own_budgets: bool = False) -> tuple[Board | None, str | None, list[str]]:
    """What ``--board`` means for the target's build system: a QEMU board folder
    (CMake), a board id passed to the ecosystem's tools (Zephyr), or nothing.

    Returns the QEMU ``Board`` (or ``None``), the board name written into the project,
    and warnings (a board whose memory edgeq does not know is budgeted as the default,
    unless ``own_budgets``: the user gave that board's --flash and --ram).
    """
    system = load_build_system(target.build_system)
    if system.board_kind == "qemu":
        if board is not None and not target.is_cross:
            raise TargetError(f"--board {board} needs a Cortex-M target, not {target.name!r}",
                              hint="drop --board for host builds")
        board_obj = load_board(board, target=target) if board else None
        return board_obj, board_obj.name if board_obj else None, []
    if system.board_kind == "none":
        if board is not None:
            raise TargetError(f"target {target.name!r} ({system.name}) has a fixed board; --board does not apply",
                              hint="drop --board, or pick another target (`edgeq targets`)")
        return None, None, []
    name = board or target.default_board
    if name is None or not BOARD_RE.match(name):
        raise TargetError(f"invalid board name {name!r}", hint="use the ecosystem's board id, e.g. mps2/an385")
    warnings = []
    if name != target.default_board and not own_budgets:
        warnings.append(f"budgets of {target.name} are those of {target.default_board}; "
                        f"pass --flash/--ram for {name}")
    return None, name, warnings


def check_target_ops(info: ModelInfo, target: Target) -> None:
    """Refuse ops the target's TFLM copy lacks (an ecosystem library pinned to an older
    TFLM has fewer ``Add*`` methods): better now than a resolver that does not compile."""
    from edgeq.firmware.resolver import resolve_ops

    if not target.per_channel_dense and any(op.name == "FULLY_CONNECTED" for op in info.ops):
        # FULLY_CONNECTED weights are the 2-D constant int8/int4 tensors [out, in]; convolution
        # weights are 4-D. Per-channel ones would be computed with one scale: wrong outputs.
        if any(t.is_constant and t.per_channel > 1 and len(t.shape) == 2 and t.dtype in ("INT8", "INT4") for t in info.tensors):
            raise UnsupportedOpError(
                f"target {target.name!r} uses a TFLM copy whose FULLY_CONNECTED kernel ignores per-channel "
                "weight scales, and this model's dense layers are quantized per channel: its outputs would be wrong",
                hint="build from the Keras/SavedModel model (edgeq then quantizes dense layers per tensor for this "
                     "target), or convert with TFLiteConverter._experimental_disable_per_channel_quantization_for_dense_layers = True",
                ops=("FULLY_CONNECTED",),
            )
    absent = sorted(f"{r.name} ({r.method})" for r in resolve_ops(info) if r.method in target.missing_ops)
    if absent:
        raise UnsupportedOpError(
            f"target {target.name!r} uses a TFLM copy without {', '.join(absent)}",
            hint="replace those layers, or pick a target whose TFLM has them (the cmake-tflm targets use TFLM's own tree)",
            ops=tuple(absent),
        )


def project_files(
    *,
    tflite: bytes,
    info: ModelInfo,
    options: SourceOptions,
    target: Target,
    board: Board | None,
    budget: BudgetFigures,
    source_name: str,
    sample_input: Sequence[np.ndarray],
    reference_output: Sequence[np.ndarray],
    board_name: str | None = None,
    reference_input: str = "",
    reference_by: str = TFLM_REFERENCE,
) -> list[GeneratedFile]:
    """Every file of the project, rendered in memory (nothing is written here).

    Every project embeds a sample: ``sample_input`` and ``reference_output`` (what
    ``reference_by``, normally host TFLM, computed for it), so every firmware checks
    something; ``reference_input`` names the input's origin in the header's comment.
    """
    board_name = board_name if board_name is not None else (board.name if board else None)
    system = load_build_system(target.build_system)
    src = system.sources_dir(options.name)
    files = model_sources(tflite=tflite, info=info, options=options, source_name=source_name,
                          arena=budget.arena, target_name=target.name, dest=src)
    files.append(sample_source(info=info, options=options, source_name=source_name, sample_input=sample_input,
                               reference_output=reference_output, dest=src, reference_input=reference_input,
                               reference_by=reference_by))
    ctx = base_context(info=info, options=options, source_name=source_name)
    ctx.update(exit_codes=EXIT_CODES, reference_input=reference_input or "given by the caller", reference_by=reference_by)
    # The runner sees model facts only (StrictUndefined makes any target fact an error).
    files += runner_files(ctx, src)
    ctx.update(
        arena_rule=budget.arena.rule,
        target=target,
        build_system=system,
        project=target.project,
        board=board,
        board_name=board_name,
        cross=target.is_cross,
        cmsis_nn=target.kernels == "cmsis_nn",
        needs_signal=any(op.custom and op.name.startswith("Signal") for op in info.ops),
        arena_bytes=budget.arena_bytes,
        arena_in_psram=budget.arena_in_psram,
        budget=budget,
        qemu=qemu_command(board) if board else None,
        fault_exit_code=EXIT_CODES["fault"],
        irq_count=IRQ_COUNT,
        src_dir=src,
        board_dir=BOARD_DIR,
    )
    path_vars = {"__name__": options.name}
    if board_name:  # e.g. Zephyr's boards/<board>.conf, '/' as '_' (mps2/an385 -> mps2_an385)
        path_vars["__board__"] = board_name.replace("/", "_")
    files += render_tree(target.build_system, ctx, path_vars=path_vars)
    if board is not None:
        files += render_tree("boards/common", ctx, dest=BOARD_DIR, overrides=f"boards/{board.name}")
    return files


def runner_files(ctx: dict[str, Any], src: str) -> list[GeneratedFile]:
    """The portable runner. Rendered from model facts only (no target, no build system
    in its context), which is what makes it the same file in every tree."""
    prefix = f"{src}/" if src else ""
    name = ctx["name"]
    return [
        GeneratedFile(f"{prefix}{name}_runner.h", render("runner/runner.h.j2", ctx).encode("utf-8"), "model"),
        GeneratedFile(f"{prefix}{name}_runner.cpp", render("runner/runner.cpp.j2", ctx).encode("utf-8"), "model"),
    ]


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
    reference_input: str = "",
    reference_by: str = TFLM_REFERENCE,
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
    ``sample_input`` (quantized, batch 1, subgraph order) is embedded with
    ``reference_output``, what host TFLM computed for it (``reference_by`` says so when
    it is not TFLM), so the firmware proves it computes what TFLM computes;
    ``reference_input`` names where the input came from (for the report). Without a
    sample, a pseudo-random one (seed 0) is made; without its output, host TFLM runs it
    here (LiteRT's reference kernels, with a warning, where tflite-micro is missing).
    Raises ``BudgetError`` (unless ``allow_over_budget``), ``TargetError`` for a board
    that does not fit the target, ``OutputExistsError`` for foreign files in the way.
    """
    board_obj, board_name, warnings = resolve_board(target, board, own_budgets=flash is not None and ram is not None)
    check_target_ops(info, target)
    system = load_build_system(target.build_system)
    if sample_input is None and reference_output is not None:
        raise ValueError("a reference_output needs the sample_input it was computed for")
    if sample_input is None:
        sample_input = pseudo_random_input(info.inputs, seed=PSEUDO_RANDOM_SEED)
        reference_input = f"pseudo-random (seed {PSEUDO_RANDOM_SEED})"
    if reference_output is None:
        reference_output, reference_by = reference_outputs(tflite, info, sample_input)
        if reference_by != TFLM_REFERENCE:
            warnings.append("the firmware's expected output comes from LiteRT's reference kernels (tflite-micro is not "
                            "installed here), which round some requantizations differently from TFLM: a device that "
                            "is right can report MISMATCH; build on x86-64 Linux with tflite-micro for TFLM's own output")
    options = SourceOptions.create(name=name, lang=lang, labels=labels, cpp_ext=system.cpp_ext)
    system.check_name(options.name)
    host = host_arena_bytes if host_arena_bytes is not None else measure_host_arena(tflite, info=info)
    budget = check_budget(tflite=tflite, info=info, target=target, host_arena_bytes=host, flash=flash, ram=ram,
                          allow_over_budget=allow_over_budget)
    files = project_files(tflite=tflite, info=info, options=options, target=target, board=board_obj, budget=budget,
                          source_name=source_name, sample_input=sample_input, reference_output=reference_output,
                          board_name=board_name, reference_input=reference_input, reference_by=reference_by)
    result = write_tree(Path(out_dir), files, force=force, dry_run=dry_run)
    return FirmwareResult(out_dir=Path(out_dir), name=options.name, target=target.name,
                          board=board_name, write=result, budget=budget, build_system=system.name,
                          warnings=tuple(warnings), reference_input=reference_input or "given by the caller",
                          reference_output=reference_by)


def reference_outputs(tflite: bytes, info: ModelInfo, sample_input: Sequence[np.ndarray]) -> tuple[list[np.ndarray], str]:
    """The firmware's expected output for ``sample_input`` and who computed it: host
    TFLM, or LiteRT's reference kernels (BUILTIN_REF) where tflite-micro cannot run.

    Remembered per (model, input) in this process: rendering one model for several
    targets (or twice, to check determinism) runs TFLM once.
    """
    key = (tflite, tuple((x.dtype.str, x.shape, x.tobytes()) for x in map(np.asarray, sample_input)))
    if key not in _REFERENCE_CACHE:
        if len(_REFERENCE_CACHE) >= 8:
            _REFERENCE_CACHE.pop(next(iter(_REFERENCE_CACHE)))
        _REFERENCE_CACHE[key] = _compute_reference(tflite, info, sample_input)
    outputs, by = _REFERENCE_CACHE[key]
    return [y.copy() for y in outputs], by


_REFERENCE_CACHE: dict[Any, tuple[list[np.ndarray], str]] = {}


def _compute_reference(tflite: bytes, info: ModelInfo, sample_input: Sequence[np.ndarray]) -> tuple[list[np.ndarray], str]:
    from edgeq.check.micro import host_outputs

    outputs = host_outputs(tflite, info, list(sample_input))
    if outputs is not None:
        return [np.asarray(y)[0:1] for y in outputs], TFLM_REFERENCE
    from edgeq.check.validation import ReferenceRunner

    runner = ReferenceRunner(tflite, info, [t.name for t in info.inputs], [t.name for t in info.outputs])
    return [y[0:1] for y in runner.run_raw(list(sample_input))], LITERT_FALLBACK


__all__ = ["FirmwareResult", "write_firmware", "check_budget", "project_files", "runner_files", "resolve_board", "check_target_ops",
           "qemu_command", "reference_outputs", "EXIT_CODES"]
