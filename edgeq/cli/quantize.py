"""``edgeq quantize``: the pipeline up to the checked .tflite, without firmware."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgeq.context import run_context

from edgeq.cli.options import (
    BatchSize, Calibration, Debug, Epochs, EvalData, FloatFallback, Force, Io, Json, LayerReport, LearningRate, Loss,
    Dense, MaxDrop, MemoryPlan, Layout, Mode, Optimize, Strip, ModelArg, Qat, Samples, Scale, TrainData, emit_report, optimized, qat_config,
)


def quantize_command(
    model: ModelArg,
    output: Annotated[Path, typer.Option("--output", "-o", help="The .tflite file to write.")],
    calibration: Calibration = None,
    eval_data: EvalData = None,
    samples: Samples = None,
    io: Io = None,
    mode: Mode = "int8",
    allow_float_fallback: FloatFallback = False,
    scale: Scale = "0..1",
    max_accuracy_drop: MaxDrop = None,
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
    force: Force = False,
    json_out: Json = False,
    debug: Debug = False,
) -> None:
    """Quantize, validate and check on TFLite Micro; write only the .tflite."""
    run_context().note_debug(debug)
    import edgeq.pipeline as pipeline

    dense_choice, plan = optimized(optimize, dense, memory_plan)
    report = pipeline.quantize(
        model, output=output, force=force, mode=mode, io=io, allow_float_fallback=allow_float_fallback,
        calibration=calibration, eval_data=eval_data, samples=samples, scale=scale,
        max_accuracy_drop=max_accuracy_drop,
        qat=qat_config(qat, train_data, epochs, batch_size, learning_rate, loss), layer_report=layer_report,
        memory_plan=plan, dense=dense_choice, strip=strip, layout=layout,
    )
    emit_report(report, json_out)


__all__ = ["quantize_command"]
