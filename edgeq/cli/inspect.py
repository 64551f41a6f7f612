"""``edgeq inspect``: what a .tflite holds and whether TFLite Micro runs it (``check.inspection``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgeq.context import run_context

from edgeq.cli.options import Debug, Json


def inspect_command(
    model: Annotated[Path, typer.Argument(help="A .tflite file.", show_default=False)],
    no_micro: Annotated[bool, typer.Option("--no-micro", help="Skip the TFLite Micro run (ops are still checked).")] = False,
    json_out: Json = False,
    debug: Debug = False,
) -> None:
    """Show tensors, quantization parameters, ops and versions, and TFLite Micro support and arena."""
    run_context().note_debug(debug)
    from edgeq.cli.inspect_view import render_inspect
    from edgeq.check.inspection import inspect as do_inspect

    doc = do_inspect(model, micro=not no_micro)
    if json_out:
        from edgeq.console import print_json

        print_json(doc)
    else:
        render_inspect(doc)


__all__ = ["inspect_command"]
