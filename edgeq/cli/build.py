"""``edgeq build``: the whole pipeline for one model, or for every model of an edgeq.toml.

A typer adapter: it turns the command line (merged with edgeq.toml's values, the command
line winning) into one ``pipeline.build`` call per model and hands the report to the
shared renderer; errors go up to ``edgeq.cli.app.main`` untouched.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edgeq.context import run_context

from edgeq.cli.options import (
    BatchSize, Calibration, Debug, Epochs, EvalData, FloatFallback, Force, Io, Json, LayerReport, LearningRate, Loss,
    Dense, MaxDrop, MemoryPlan, Layout, Mode, Optimize, Strip, Qat, Samples, Scale, TrainData, emit_report, optimized, example_paths, qat_config,
)


def build_command(
    ctx: typer.Context,
    model: Annotated[Optional[Path], typer.Argument(help="Keras .keras/.h5, SavedModel folder, .tflite, or PyTorch .pt2 / pkg.module:factory.", show_default=False)] = None,
    target: Annotated[str, typer.Option("--target", "-t", help="Target name (see `edgeq targets`).")] = "cortex-m",
    calibration: Calibration = None,
    eval_data: EvalData = None,
    samples: Samples = None,
    io: Io = None,
    mode: Mode = "int8",
    allow_float_fallback: FloatFallback = False,
    scale: Scale = "0..1",
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output folder (default: build/<name>).")] = None,
    name: Annotated[Optional[str], typer.Option("--name", help="Model name for files and C symbols (default: file stem).")] = None,
    board: Annotated[Optional[str], typer.Option("--board", help="Board for the project scaffold, e.g. qemu-mps2-an386.")] = None,
    lang: Annotated[str, typer.Option("--lang", help="Model sources in c or cpp.")] = "cpp",
    labels: Annotated[Optional[Path], typer.Option("--labels", help="Text file, one class label per line, for the settings header.")] = None,
    flash: Annotated[Optional[int], typer.Option("--flash", help="Flash budget in bytes (overrides the target's).")] = None,
    ram: Annotated[Optional[int], typer.Option("--ram", help="RAM budget in bytes (overrides the target's).")] = None,
    allow_over_budget: Annotated[bool, typer.Option("--allow-over-budget", help="Write the project even if it exceeds the budget.")] = False,
    targets_dir: Annotated[Optional[Path], typer.Option("--targets-dir", help="Extra folder of target .toml files.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Run every check and list the files that would be written.")] = False,
    max_accuracy_drop: MaxDrop = None,
    example: Annotated[bool, typer.Option("--example", help="Use the bundled digits example model and data.")] = False,
    qat: Qat = False,
    train_data: TrainData = None,
    epochs: Epochs = 3,
    batch_size: BatchSize = 32,
    learning_rate: LearningRate = 1e-4,
    loss: Loss = None,
    layer_report: LayerReport = False,
    memory_plan: MemoryPlan = "auto",
    dense: Dense = None,
    optimize: Optimize = None,
    strip: Strip = False,
    layout: Layout = "nhwc",
    verify: Annotated[bool, typer.Option("--verify", help="Then build the project against real TFLM and run it (`edgeq verify`).")] = False,
    tflm_dir: Annotated[Optional[Path], typer.Option("--tflm-dir", help="With --verify: the TFLM tree (see `edgeq verify --help`).")] = None,
    force: Force = False,
    json_out: Json = False,
    debug: Debug = False,
) -> None:
    """Quantize, validate, check on TFLite Micro, and write the .tflite, C sources and a project.

    Without MODEL (or with a model's name), builds the models of edgeq.toml (`edgeq config`)."""
    run_context().note_debug(debug)
    from edgeq.cli.config_view import pick_models, run_models

    entries = None if example else pick_models(ctx.obj, model)
    if entries is not None:
        from edgeq.cli.config_view import entry_values

        def one(entry: object) -> dict:  # the command line wins over the file: only unset options take its values
            given = {k for k in ctx.params if getattr(ctx.get_parameter_source(k), "name", "") == "COMMANDLINE"}
            values = {k: v for k, v in entry_values(ctx.obj, entry, ctx.command).items() if k not in given}
            return _build_document({**ctx.params, **values, "model": entry.path})  # type: ignore[attr-defined]

        raise typer.Exit(run_models(entries, one, json_out=json_out))
    if model is None and not example:
        raise typer.BadParameter("give a MODEL (or --example, or models in an edgeq.toml)")
    report = _build_report(dict(ctx.params))
    if not verify or dry_run:
        return emit_report(report, json_out)
    from edgeq.cli.verify import verify_after_build

    verify_after_build(report, tflm_dir=tflm_dir, json_out=json_out, emit=emit_report)


def _build_report(p: dict) -> object:
    """One ``pipeline.build`` from the command's parameters (``ctx.params`` names)."""
    import edgeq.pipeline as pipeline
    from edgeq.firmware.step import FirmwareOptions

    if p["example"]:
        p["model"], calib_path, eval_path = example_paths()
        p["calibration"] = p["calibration"] or str(calib_path)
        p["eval_data"] = p["eval_data"] or eval_path
        p["name"] = p["name"] or "digits"
    dense, memory_plan = optimized(p["optimize"], p["dense"], p["memory_plan"])
    labels_list = None
    if p["labels"] is not None:
        from edgeq.firmware.sources import read_labels

        labels_list = tuple(read_labels(p["labels"]))
    return pipeline.build(
        p["model"], target=p["target"], out=p["out"], name=p["name"], force=p["force"], mode=p["mode"], io=p["io"],
        allow_float_fallback=p["allow_float_fallback"], calibration=p["calibration"], eval_data=p["eval_data"],
        samples=p["samples"], scale=p["scale"], max_accuracy_drop=p["max_accuracy_drop"],
        qat=qat_config(p["qat"], p["train_data"], p["epochs"], p["batch_size"], p["learning_rate"], p["loss"]),
        layer_report=p["layer_report"], memory_plan=memory_plan, dense=dense, strip=p["strip"],
        layout=p["layout"],
        firmware=FirmwareOptions(board=p["board"], lang=p["lang"], labels=labels_list, flash=p["flash"], ram=p["ram"],
                                 allow_over_budget=p["allow_over_budget"], targets_dir=p["targets_dir"],
                                 dry_run=p["dry_run"]),
    )


def _build_document(p: dict) -> dict:
    """One model of a config build: the report document, with the verify verdict under ``--verify``."""
    report = _build_report(p)
    doc = report.to_dict()  # type: ignore[attr-defined]
    if p["verify"] and not p["dry_run"]:
        from edgeq.firmware.verify import verify as run_verify

        result = run_verify(Path(report.out_dir), tflm_dir=p["tflm_dir"])  # type: ignore[attr-defined]
        doc["verify"] = result.to_dict()
        result.check()
    return doc


__all__ = ["build_command"]
