"""The build pipeline's bridge to targets and code generation.

Re-running ``build`` into its own earlier output has rules of its own (refresh generated
files, keep the ones the user edited, per the manifest ``edgeq.firmware`` keeps). To keep
those rules in one place *and* keep the output atomic, the previous output is mirrored
into the staging folder first (``edgeq.outdir.mirror``: hard links, symlinks kept as
symlinks and never followed) and the code generator applies its rules there; the staged
folder then replaces the old one in one ``renameat2(RENAME_EXCHANGE)``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping, Optional, Union

from edgeq import outdir
from edgeq.console import warn_and_keep
from edgeq.errors import OutputExistsError, UserError

MANIFEST = ".edgeq-manifest.json"
#: Files of ours that are rewritten on every build and so never count as "the user's".
OWN_OUTPUTS = ("report.json", "report.md")


@dataclass(frozen=True)
class FirmwareOptions:
    """What ``build`` passes to the firmware step: the project's board, language, labels,
    budgets and where to look for targets. ``None`` budgets mean the target's own."""

    board: Optional[str] = None
    lang: str = "cpp"
    labels: Optional[tuple[str, ...]] = None
    flash: Optional[int] = None
    ram: Optional[int] = None
    allow_over_budget: bool = False
    targets_dir: Optional[Union[str, Path]] = None
    dry_run: bool = False

    @classmethod
    def of(cls, value: "FirmwareOptions | Mapping[str, Any] | None") -> "FirmwareOptions":
        """``build(firmware=...)`` as given: these options, none, or (as before they were
        typed) a dict of the same names; an unknown name is a usage error, not a crash."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        unknown = sorted(set(value) - {f.name for f in fields(cls)})
        if unknown:
            raise UserError(f"unknown firmware option(s) {', '.join(map(repr, unknown))}",
                            hint=f"known: {', '.join(f.name for f in fields(cls))}")
        given = {k: v for k, v in value.items() if v is not None}  # None meant "the default" in the dict
        if given.get("labels") is not None:
            given["labels"] = tuple(given["labels"])
        return cls(**given)


def resolve_target(target_name: str, opts: FirmwareOptions, *, name: str | None = None) -> Any:
    """The target, with ``--board`` and the project name checked against it now: before
    minutes of conversion."""
    from edgeq.firmware.build_systems import load_build_system
    from edgeq.firmware.project import resolve_board
    from edgeq.firmware.targets import load_target

    target = load_target(target_name, targets_dir=opts.targets_dir)
    resolve_board(target, opts.board)  # unknown, or not one for this target
    if name is not None:
        load_build_system(target.build_system).check_name(name)
    return target


def check_out(out: Path, *, force: bool) -> None:
    """A non-empty folder is ours to refresh only if it holds our manifest, or with force;
    a place edgeq cannot write (a file, a read-only folder, a file in the path) is refused
    now, before minutes of conversion."""
    outdir.check_dest(out, kind="folder", flag="--out")
    if force or not out.is_dir() or not any(out.iterdir()):
        return
    if not (out / MANIFEST).is_file():
        raise OutputExistsError(
            f"output folder {out} is not empty and was not written by edgeq",
            hint="pass --force to replace it, or choose another --out",
        )


def _sample(run: Any) -> tuple[Any, Any, str, str | None]:
    """The firmware's embedded input, host TFLM's output for it (from the pipeline's
    TFLM check, which ran that input), the input's origin, and who computed the output
    (``None``: ``write_firmware`` computes it, falling back to LiteRT's reference
    kernels where tflite-micro is missing)."""
    from edgeq.firmware.sources import TFLM_REFERENCE

    if run.fw_output is None:
        return run.fw_input, None, run.fw_input_source, None
    return run.fw_input, run.fw_output, run.fw_input_source, TFLM_REFERENCE


def firmware_input(
    model: Any, data: bytes, info_: Any, opts: Any, eval_q: list[Any] | None, calib: Any,
) -> tuple[list[Any], str]:
    """The input a firmware embeds (batch 1, quantized, subgraph order) and its origin.

    Every firmware checks something: the first evaluation sample; else the first
    calibration sample (for a .tflite, the --calibration data if given, which is
    otherwise unused); else a fixed pseudo-random input valid for the input tensors.
    """
    from edgeq.model.calibration import load_model_samples
    from edgeq.firmware.sources import PSEUDO_RANDOM_SEED, pseudo_random_input
    from edgeq.check.validation import ReferenceRunner

    if eval_q is not None:
        return [x[0:1] for x in eval_q], "eval sample 0"
    if calib is None and model.format == "tflite" and opts.calibration is not None and str(opts.calibration) != "random":
        calib = load_model_samples(opts.calibration, model, scale=opts.scale, role="calibration", max_samples=1)
    if calib is not None and len(calib):
        runner = ReferenceRunner(data, info_, [s.name for s in model.inputs], [s.name for s in model.outputs])
        label = "calibration sample 0" + (" (random calibration data)" if calib.source == "random" else "")
        return runner.to_subgraph([x[0:1] for x in calib.xs]), label
    return pseudo_random_input(info_.inputs, seed=PSEUDO_RANDOM_SEED), f"pseudo-random (seed {PSEUDO_RANDOM_SEED})"


def refuse_early(model: Any, *, target: Any, settings: Any, opts: FirmwareOptions) -> None:
    """``BudgetError`` before conversion when the float model's lower bounds already exceed
    the target's flash or RAM (``edgeq.firmware.early_budget``)."""
    from edgeq.firmware.early_budget import refuse_early as _refuse

    _refuse(model.keras_model, target, mode=settings.mode, io=settings.io_type, flash=opts.flash, ram=opts.ram,
            allow_over_budget=opts.allow_over_budget)


def check_budget(run: Any, target: Any, opts: FirmwareOptions) -> Any:
    """Budget figures for the report; raises ``BudgetError`` (or ``UnsupportedOpError``
    for an op the target's TFLM copy lacks) before anything is written."""
    from edgeq.firmware.budget import check_budget as _check
    from edgeq.firmware.project import check_target_ops

    check_target_ops(run.info, target)
    return _check(
        tflite=run.data,
        info=run.info,
        target=target,
        host_arena_bytes=_host_arena(run),
        flash=opts.flash,
        ram=opts.ram,
        allow_over_budget=opts.allow_over_budget,
    )


def _host_arena(run: Any) -> int:
    """The arena rule's input: the bisected minimal host arena, never TFLM's allocation
    report, which omits what kernels allocate while preparing (``edgeq.firmware.arena``)."""
    if run.micro.arena_bytes is not None:
        return int(run.micro.arena_bytes)
    from edgeq.firmware.arena import measure_host_arena

    return measure_host_arena(run.data, info=run.info)


def write(dest: Path, previous: Path | None, run: Any, *, name: str, target: Any, force: bool,
          final: Path, dry_run: bool = False, opts: FirmwareOptions) -> dict[str, Any]:
    """Write firmware sources and the scaffold into ``dest`` (a staging folder, or the
    real output for a dry run); ``previous`` is the earlier output to refresh, if any.

    Returns the firmware part of the report, naming ``final`` (where the files end up),
    never the staging folder: reports must not change from one identical run to the next.
    The firmware step's warnings (e.g. a board budgeted as the default) join ``run.warnings``.
    """
    from edgeq.firmware.project import write_firmware

    if previous is not None and previous.is_dir() and not force and not dry_run:
        # The staging folder keeps build's own mode (0755 by umask), not a previous 0700.
        with outdir.mapped_errors(final):
            outdir.mirror(previous, dest, skip=OWN_OUTPUTS, keep_top_mode=False)
    sample_in, sample_out, sample_source, sample_by = _sample(run)
    result = write_firmware(
        dest,
        tflite=run.data,
        info=run.info,
        name=name,
        target=target,
        host_arena_bytes=_host_arena(run),
        sample_input=sample_in,
        reference_output=sample_out,
        reference_input=sample_source,
        **({"reference_by": sample_by} if sample_by else {}),
        source_name=run.model.path.name,
        board=opts.board,
        lang=opts.lang or "cpp",
        labels=list(opts.labels) if opts.labels is not None else None,
        force=force,
        dry_run=dry_run,
        flash=opts.flash,
        ram=opts.ram,
        allow_over_budget=opts.allow_over_budget,
    )
    for message in result.warnings:  # printed now and kept for the report, dry run or not
        warn_and_keep(run.warnings, message)
    doc = result.to_dict()
    doc["out_dir"] = str(final)
    if isinstance(doc.get("write"), dict):
        doc["write"]["out_dir"] = str(final)
    return doc
