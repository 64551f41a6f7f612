"""The typer CLI: thin adapters over the library API.

This is the only module that turns ``EdgeqError`` into output and exit codes:
0 ok, 1 a quality gate failed, 2 bad input / refused, 3 internal error (a bug: any other
exception, reported in one line), 130 interrupted.
"""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from edgeq.context import run_context, start_run
from edgeq.errors import EdgeqError
from edgeq.version import __version__

app = typer.Typer(
    name="edgeq",
    help="Quantize a TensorFlow/Keras model, prove it runs on TensorFlow Lite Micro, "
    "emit firmware sources, and benchmark it on edge Linux devices.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    add_completion=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"edgeq {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """edgeq: TensorFlow/Keras → quantized .tflite → TFLite Micro firmware / edge Linux benchmark."""


from edgeq.cli_options import (  # noqa: E402  (typer annotations shared by the commands)
    BatchSize, Calibration, Debug, Epochs, EvalData, FloatFallback, Force, Io, Json, LayerReport, LearningRate, Loss,
    MaxDrop, Mode, ModelArg, Qat, Samples, Scale, TrainData, emit_report as _emit_report, example_paths as _example_paths,
    qat_config as _qat_config,
)


@app.command()
def build(
    ctx: typer.Context,
    model: Annotated[Optional[Path], typer.Argument(help="Keras .keras/.h5, SavedModel folder or .tflite file.", show_default=False)] = None,
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
    verify: Annotated[bool, typer.Option("--verify", help="Then build the project against real TFLM and run it (`edgeq verify`).")] = False,
    tflm_dir: Annotated[Optional[Path], typer.Option("--tflm-dir", help="With --verify: the TFLM tree (see `edgeq verify --help`).")] = None,
    force: Force = False,
    json_out: Json = False,
    debug: Debug = False,
) -> None:
    """Quantize, validate, check on TFLite Micro, and write the .tflite, C sources and a project.

    Without MODEL (or with a model's name), builds the models of edgeq.toml (`edgeq config`)."""
    run_context().note_debug(debug)
    from edgeq.config_cli import pick_models, run_models

    entries = None if example else pick_models(ctx.obj, model)
    if entries is not None:
        from edgeq.config_cli import entry_values

        def one(entry: object) -> dict:  # the command line wins over the file: only unset options take its values
            given = {k for k in ctx.params if getattr(ctx.get_parameter_source(k), "name", "") == "COMMANDLINE"}
            values = {k: v for k, v in entry_values(ctx.obj, entry, ctx.command).items() if k not in given}
            return _build_document({**ctx.params, **values, "model": entry.path})  # type: ignore[attr-defined]

        raise typer.Exit(run_models(entries, one, json_out=json_out))
    if model is None and not example:
        raise typer.BadParameter("give a MODEL (or --example, or models in an edgeq.toml)")
    report = _build_report(dict(ctx.params))
    if not verify or dry_run:
        return _emit_report(report, json_out)
    from edgeq.verify_command import verify_after_build

    verify_after_build(report, tflm_dir=tflm_dir, json_out=json_out, emit=_emit_report)


def _build_report(p: dict) -> object:
    """One ``pipeline.build`` from the command's parameters (``ctx.params`` names)."""
    import edgeq.pipeline as pipeline
    from edgeq.firmware_step import FirmwareOptions

    if p["example"]:
        p["model"], calib_path, eval_path = _example_paths()
        p["calibration"] = p["calibration"] or str(calib_path)
        p["eval_data"] = p["eval_data"] or eval_path
        p["name"] = p["name"] or "digits"
    labels_list = None
    if p["labels"] is not None:
        from edgeq.codegen.sources import read_labels

        labels_list = tuple(read_labels(p["labels"]))
    return pipeline.build(
        p["model"], target=p["target"], out=p["out"], name=p["name"], force=p["force"], mode=p["mode"], io=p["io"],
        allow_float_fallback=p["allow_float_fallback"], calibration=p["calibration"], eval_data=p["eval_data"],
        samples=p["samples"], scale=p["scale"], max_accuracy_drop=p["max_accuracy_drop"],
        qat=_qat_config(p["qat"], p["train_data"], p["epochs"], p["batch_size"], p["learning_rate"], p["loss"]),
        layer_report=p["layer_report"],
        firmware=FirmwareOptions(board=p["board"], lang=p["lang"], labels=labels_list, flash=p["flash"], ram=p["ram"],
                                 allow_over_budget=p["allow_over_budget"], targets_dir=p["targets_dir"],
                                 dry_run=p["dry_run"]),
    )


def _build_document(p: dict) -> dict:
    """One model of a config build: the report document, with the verify verdict under ``--verify``."""
    report = _build_report(p)
    doc = report.to_dict()  # type: ignore[attr-defined]
    if p["verify"] and not p["dry_run"]:
        from edgeq.codegen.verify import verify as run_verify

        result = run_verify(Path(report.out_dir), tflm_dir=p["tflm_dir"])  # type: ignore[attr-defined]
        doc["verify"] = result.to_dict()
        result.check()
    return doc


@app.command()
def quantize(
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
    force: Force = False,
    json_out: Json = False,
    debug: Debug = False,
) -> None:
    """Quantize, validate and check on TFLite Micro; write only the .tflite."""
    run_context().note_debug(debug)
    import edgeq.pipeline as pipeline

    report = pipeline.quantize(
        model, output=output, force=force, mode=mode, io=io, allow_float_fallback=allow_float_fallback,
        calibration=calibration, eval_data=eval_data, samples=samples, scale=scale,
        max_accuracy_drop=max_accuracy_drop,
        qat=_qat_config(qat, train_data, epochs, batch_size, learning_rate, loss), layer_report=layer_report,
    )
    _emit_report(report, json_out)


from edgeq.compare_command import compare_command  # noqa: E402  (typer + pathlib only: cheap)

app.command("compare")(compare_command)


@app.command()
def inspect(
    model: Annotated[Path, typer.Argument(help="A .tflite file.", show_default=False)],
    no_micro: Annotated[bool, typer.Option("--no-micro", help="Skip the TFLite Micro run (ops are still checked).")] = False,
    json_out: Json = False,
    debug: Debug = False,
) -> None:
    """Show tensors, quantization parameters, ops and versions, and TFLite Micro support and arena."""
    run_context().note_debug(debug)
    from edgeq.inspect_view import render_inspect
    from edgeq.inspection import inspect as do_inspect

    doc = do_inspect(model, micro=not no_micro)
    if json_out:
        from edgeq.console import print_json

        print_json(doc)
    else:
        render_inspect(doc)


from edgeq.bench.command import bench_command  # noqa: E402  (typer only; paramiko loads on use)

app.command("bench")(bench_command)

from edgeq.codegen.command import emit_command  # noqa: E402  (typer only)
from edgeq.codegen.targets_command import targets_command  # noqa: E402

from edgeq.verify_command import verify_command  # noqa: E402

app.command("emit")(emit_command)
app.command("targets")(targets_command)
app.command("verify")(verify_command)

from edgeq.config_command import config_command  # noqa: E402  (typer only)

app.command("config")(config_command)


def main(argv: Optional[list[str]] = None) -> None:
    """Entry point: run the app and map errors to exit codes (see README, "Exit codes").

    Typer's standalone mode already turns usage errors into exit 2 and Ctrl-C into 130;
    everything edgeq raises on purpose is an ``EdgeqError`` and is handled here alone.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    start_run(debug="--debug" in args)  # commands add their own --debug (or edgeq.toml's)
    if argv is None:  # the real command line, not a caller's in-process run: own SIGINT for good
        from edgeq import interrupt
        from edgeq.workdir import own_temp_root, sweep_stale

        interrupt.guard()
        sweep_stale()  # what killed runs left in $TMPDIR
        own_temp_root()  # and from here on, everything this run puts there is in one folder of ours
    try:
        code = _run(args)
    except KeyboardInterrupt:  # a second Ctrl-C while the first one's message was printed
        code = 130
    if argv is None:
        final = interrupt.settle(code)
        if final != code:  # the Ctrl-C was swallowed somewhere below; it still counts
            sys.stderr.write("\ninterrupted\n")
        code = final
    sys.exit(code)


def _run(args: list[str]) -> int:
    """Run one command line; return its exit code (errors printed, one line each)."""
    try:
        extra = _config_settings(args)
        if not extra:
            _fast_emit(args)  # returns only when typer must parse
        app(args=args, prog_name="edgeq", **extra)
        return 0
    except SystemExit as exc:  # typer's standalone mode always leaves this way
        if exc.code == 130:  # typer's answer to a KeyboardInterrupt, silent on its own
            sys.stderr.write("\ninterrupted\n")
        if exc.code is None or isinstance(exc.code, int):
            return int(exc.code or 0)
        sys.stderr.write(f"{exc.code}\n")
        return 1
    except EdgeqError as exc:
        if run_context().debug:
            import traceback

            from edgeq.console import last_captured

            traceback.print_exc()
            if last_captured:
                sys.stderr.write("\n".join(["--- TensorFlow output ---", *last_captured]) + "\n")
        _print_error(exc)
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("\ninterrupted\n")
        return 130
    except Exception as exc:  # not SystemExit: typer's own exits pass through
        _internal_error(exc, args)
        return INTERNAL_ERROR


def _config_settings(args: list[str]) -> dict:
    """typer's ``default_map`` and ``obj`` from the edgeq.toml that applies here, if any.

    Checked before any command runs, so a typo'd key fails every command with its line
    number instead of being ignored; ``--help`` and ``--version`` work regardless.
    """
    from edgeq.config import find_config, load_config

    path = find_config()
    if path is None or not args or args[0] in ("--help", "--version", "-h") or "--help" in args:
        return {}
    import typer.main

    from edgeq.config_cli import check

    config = load_config(path)
    return {"default_map": check(config, typer.main.get_command(app).commands), "obj": config}


def _fast_emit(args: list[str]) -> None:
    """Run a plain ``edgeq emit`` command line without typer's parser, or return.

    Why: typer's per-parameter pydantic coercion costs ~0.2 s, a third of the whole
    ``emit`` run on a 10 MB model. ``edgeq.cli_fastpath`` computes the same values from
    the same annotations and falls back to typer for anything but a plain command line.
    """
    if args[:1] != ["emit"] or "_EDGEQ_COMPLETE" in os.environ:
        return
    # emit does no linear algebra: OpenBLAS's thread pool, started when numpy loads, would
    # only spin on the core the array is formatted on (~0.1 s of CPU). A user's setting wins.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    values = None
    # A short run that makes no reference cycles worth collecting: the cyclic collector
    # would only walk the ~10^5 objects numpy, Jinja and typer create as they load
    # (~95 passes, 15-20 ms), and once more at exit (~45 ms). Memory is bounded by the
    # model's size either way; files and the TFLM child are closed explicitly.
    collecting = gc.isenabled()
    gc.disable()
    try:
        from edgeq import cli_fastpath

        values = cli_fastpath.parse(emit_command, args[1:])
        if values is not None:
            cli_fastpath.run(emit_command, values)  # exits, like typer's standalone mode
    finally:
        if values is not None:
            gc.freeze()  # exiting: the interpreter's final collection skips frozen objects
        if collecting:  # as it was, for typer's path and for callers of main() in-process
            gc.enable()


#: Exit code for exceptions edgeq did not raise on purpose (README, "Exit codes").
INTERNAL_ERROR = 3

from edgeq.crash import step_of  # noqa: E402  (re-exported: the one-line message's step)


def _internal_error(exc: Exception, args: list[str]) -> None:
    """One line for a bug (exit 3); the traceback only with --debug."""
    if run_context().debug:
        import traceback

        from edgeq.console import last_captured

        traceback.print_exc()
        if last_captured:
            sys.stderr.write("\n".join(["--- TensorFlow output ---", *last_captured]) + "\n")
    command = next((a for a in args if not a.startswith("-")), "")
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    first = lines[0][:300] if lines else ""
    message = f"internal error while {step_of(exc, command)}: {type(exc).__name__}" + (f": {first}" if first else "")
    hint = ("this is a bug in edgeq: re-run the same command with --debug and report its output to the edgeq "
            "maintainers (an issue on the project)" if not run_context().debug else "please report this traceback to the edgeq maintainers")
    _print_error(EdgeqError(message, hint))


def _print_error(exc: EdgeqError) -> None:
    from edgeq.console import err

    from edgeq.text import printable

    err.print("[bold red]error:[/] ", end="", markup=True)
    err.print(printable(exc.message), markup=False)  # messages quote names from models and files
    if exc.hint:
        err.print("[cyan]hint:[/] ", end="", markup=True)
        err.print(printable(exc.hint), markup=False)


__all__ = ["app", "main", "Path"]
