"""The typer annotations and small adapters the build and quantize commands share.

Kept apart from ``edgeq.cli.app`` so that module stays a page of commands; nothing here
imports TensorFlow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

ModelArg = Annotated[Path, typer.Argument(help="Keras .keras/.h5, SavedModel folder, .tflite file, or a PyTorch "
                                          ".pt2 / pkg.module:factory.", show_default=False)]
Calibration = Annotated[
    Optional[str],
    typer.Option("--calibration", "-c", help="Representative data: .npy (N, *input_shape), .npz ('x' or one array "
                 "per input name) or an image folder. 'random' only for smoke tests."),
]
EvalData = Annotated[
    Optional[Path],
    typer.Option("--eval-data", "-e", help="Validation data .npz with 'x' and optional labels 'y'. "
                 "Default: a held-out 20 % of the calibration data."),
]
Samples = Annotated[Optional[int], typer.Option("--samples", "-n", help="Calibration samples to use (default: up to 500).")]
Io = Annotated[Optional[str], typer.Option("--io", help="Input/output dtype: uint8 (int8 mode default), int8, float32, int16 (int16x8).")]
Mode = Annotated[str, typer.Option("--mode", help="int8 (full integer), int16x8, float16, dynamic or float32.")]
FloatFallback = Annotated[bool, typer.Option("--allow-float-fallback", help="int16x8 only: let ops without a 16x8 kernel stay float.")]
Scale = Annotated[str, typer.Option("--scale", help="Pixel scaling for image folders: 0..1, -1..1 or 0..255.")]
MaxDrop = Annotated[
    Optional[float],
    typer.Option("--max-accuracy-drop", help="Exit 1 when quantized top-1 accuracy is more than this many points below float."),
]
Force = Annotated[bool, typer.Option("--force", "-f", help="Replace existing outputs (and regenerate files you edited).")]
Json = Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout.")]
Debug = Annotated[bool, typer.Option("--debug", help="Show tracebacks and TensorFlow's own output on errors.")]
Qat = Annotated[bool, typer.Option("--qat", help="Quantization-aware training: fine-tune with fake quantization "
                                   "(tfmot), then convert full-integer. Needs --train-data; also reports PTQ.")]
TrainData = Annotated[Optional[Path], typer.Option("--train-data", help="Labelled training data for --qat: .npz with 'x' and 'y'.")]
Epochs = Annotated[int, typer.Option("--epochs", help="QAT epochs.")]
BatchSize = Annotated[int, typer.Option("--batch-size", help="QAT batch size.")]
LearningRate = Annotated[float, typer.Option("--learning-rate", help="QAT learning rate (Adam).")]
Loss = Annotated[Optional[str], typer.Option("--loss", help="QAT loss (a Keras name, e.g. sparse_categorical_crossentropy). "
                                             "Default: the model's compiled loss, else chosen from the labels.")]
LayerReport = Annotated[bool, typer.Option("--layer-report", help="Per-layer int8 error table (TF QuantizationDebugger) "
                                           "in the report; a PNG chart too with edgeq[plots].")]
MemoryPlan = Annotated[str, typer.Option("--memory-plan", help="auto: write an offline memory plan into the model, "
                                         "and reorder a branchy model's operators, when TFLM proves it shrinks the arena "
                                         "(outputs byte-identical); off: never.")]
Dense = Annotated[Optional[str], typer.Option("--dense", help="Dense-layer weights: per-channel (default), per-tensor, "
                                              "or auto (both; per-tensor kept where within the accuracy gate and smaller).")]
Layout = Annotated[str, typer.Option("--layout", help="PyTorch models: nhwc (default) makes image inputs channel-last "
                                      "in the .tflite and firmware; nchw keeps PyTorch's layout. Data files stay NCHW.")]
Strip = Annotated[bool, typer.Option("--strip", help="Ship the model without what TFLM never reads (tensor names, "
                                     "signatures, description): less flash; checked on TFLM to compute the same bytes.")]
Optimize = Annotated[Optional[str], typer.Option("--optimize", help="ram: every RAM-saving choice (--dense auto, "
                                                 "--memory-plan auto).")]


def optimized(optimize: str | None, dense: str | None, memory_plan: str) -> tuple[str | None, str]:
    """``--optimize ram`` as the explicit options it stands for; an explicit --dense wins."""
    if optimize is None:
        return dense, memory_plan
    if optimize != "ram":
        raise typer.BadParameter(f"--optimize takes ram, not {optimize!r}", param_hint="--optimize")
    return dense or "auto", "auto"


def qat_config(qat: bool, train_data: Optional[Path], epochs: int, batch_size: int, learning_rate: float,
                loss: Optional[str]) -> object:
    """--qat and its options → ``QatConfig`` (None without --qat); refuse options that would be ignored."""
    from edgeq.errors import UserError

    if not qat:
        if train_data is not None:
            raise UserError("--train-data is only used with --qat", hint="add --qat to fine-tune with quantization-aware training")
        return None
    if train_data is None:
        raise UserError("--qat needs labelled training data", hint="pass --train-data train.npz (arrays 'x' and 'y')")
    from edgeq.quantization.qat import QatConfig

    return QatConfig(train_data, epochs, batch_size, learning_rate, loss)


def emit_report(report: object, as_json: bool) -> None:
    from edgeq.console import print_json
    from edgeq.report import render_table

    if as_json:
        print_json(report.to_dict())  # type: ignore[attr-defined]
    else:
        render_table(report)  # type: ignore[arg-type]


def example_paths() -> tuple[Path, Path, Path]:
    from edgeq.cli.example import example_files

    return example_files()


__all__ = ["qat_config", "emit_report", "example_paths"]
