"""The typer app and the CLI boundary: one module per command beside it registers here.

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


from edgeq.cli.bench import bench_command  # noqa: E402  (typer only; paramiko loads on use)
from edgeq.cli.build import build_command  # noqa: E402  (typer + the shared annotations: cheap)
from edgeq.cli.compare import compare_command  # noqa: E402
from edgeq.cli.config import config_command  # noqa: E402
from edgeq.cli.emit import emit_command  # noqa: E402
from edgeq.cli.inspect import inspect_command  # noqa: E402
from edgeq.cli.quantize import quantize_command  # noqa: E402
from edgeq.cli.targets import targets_command  # noqa: E402
from edgeq.cli.verify import verify_command  # noqa: E402

# Registration order is the order of `edgeq --help`: the pipeline first, then its pieces.
app.command("build")(build_command)
app.command("quantize")(quantize_command)
app.command("compare")(compare_command)
app.command("inspect")(inspect_command)
app.command("bench")(bench_command)
app.command("emit")(emit_command)
app.command("targets")(targets_command)
app.command("verify")(verify_command)
app.command("config")(config_command)


def main(argv: Optional[list[str]] = None) -> None:
    """Entry point: run the app and map errors to exit codes (see README, "Exit codes").

    Typer's standalone mode already turns usage errors into exit 2 and Ctrl-C into 130;
    everything edgeq raises on purpose is an ``EdgeqError`` and is handled here alone.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    start_run(debug="--debug" in args)  # commands add their own --debug (or edgeq.toml's)
    if argv is None:  # the real command line, not a caller's in-process run: own SIGINT for good
        from edgeq.cli import interrupt
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
    from edgeq.cli.config_file import find_config, load_config

    path = find_config()
    if path is None or not args or args[0] in ("--help", "--version", "-h") or "--help" in args:
        return {}
    import typer.main

    from edgeq.cli.config_view import check

    config = load_config(path)
    return {"default_map": check(config, typer.main.get_command(app).commands), "obj": config}


def _fast_emit(args: list[str]) -> None:
    """Run a plain ``edgeq emit`` command line without typer's parser, or return.

    Why: typer's per-parameter pydantic coercion costs ~0.2 s, a third of the whole
    ``emit`` run on a 10 MB model. ``edgeq.cli.fastpath`` computes the same values from
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
        from edgeq.cli import fastpath as cli_fastpath

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

from edgeq.cli.crash import step_of  # noqa: E402  (re-exported: the one-line message's step)


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
