"""The ``edgeq compare`` typer adapter: arguments in, ``compare_modes`` out, table or JSON.

Kept out of ``cli.py`` so the command's options live next to the feature; ``cli.py``
registers it (``app.command("compare")(compare_command)``) and still owns error mapping.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def compare_command(
    model: Annotated[Path, typer.Argument(help="Keras .keras/.h5 file, SavedModel folder or PyTorch .pt2 (the float model).", show_default=False)],
    calibration: Annotated[
        Optional[str],
        typer.Option("--calibration", "-c", help="Representative data for int8/int16x8: .npy, .npz or an image folder."),
    ] = None,
    eval_data: Annotated[
        Optional[Path],
        typer.Option("--eval-data", "-e", help="Evaluation data .npz with 'x' and optional labels 'y' "
                     "(default: a held-out 20 % of the calibration data)."),
    ] = None,
    samples: Annotated[Optional[int], typer.Option("--samples", "-n", help="Calibration samples to use (default: up to 500).")] = None,
    scale: Annotated[str, typer.Option("--scale", help="Pixel scaling for image folders: 0..1, -1..1 or 0..255.")] = "0..1",
    json_out: Annotated[bool, typer.Option("--json", help="Print the comparison as JSON on stdout.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and TensorFlow's own output on errors.")] = False,
) -> None:
    """Convert the model in every mode (int8, int16x8, float16, dynamic, float32) and compare
    size, accuracy, error vs float, TFLM support and arena, and host latency."""
    from edgeq.context import run_context

    run_context().note_debug(debug)
    from edgeq.compare import compare_modes

    report = compare_modes(model, calibration=calibration, eval_data=eval_data, samples=samples, scale=scale)
    if json_out:
        from edgeq.console import print_json

        print_json(report.to_dict())
    else:
        report.render_table()
