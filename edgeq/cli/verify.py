"""The ``edgeq verify`` typer adapter: arguments in, ``edgeq.firmware.verify.verify`` out,
a table (or a versioned JSON envelope) on stdout, then exit 0 only on a match.

Kept out of ``cli.py`` so the command's options live next to the feature; ``cli.py``
registers it (``app.command("verify")(verify_command)``) and owns the error mapping: a
firmware that ran and did not match raises ``VerificationFailed`` (exit 1) *after* the
report is printed, so ``--json`` consumers get the figures and the exit code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

SCHEMA_VERSION = 1


def _row(table: Any, label: str, value: object) -> None:
    table.add_row(label, "-" if value is None else str(value))


def _bytes(n: int | None) -> str | None:
    return None if n is None else f"{n:,} bytes"


def render_table(result: Any) -> None:
    """The human view of a ``VerifyResult`` (stdout), the console tail when it failed."""
    from rich.table import Table

    from edgeq.console import out

    table = Table(title=f"edgeq verify: {result.name}", title_justify="left", show_header=False)
    table.add_column("what", no_wrap=True)
    table.add_column("value")
    _row(table, "project", result.project_dir)
    _row(table, "target / board", f"{result.target or '?'} / {result.board or 'host (native)'}")
    _row(table, "result", ("OK: " if result.ok else "FAILED: ") + result.message)
    _row(table, "firmware exit code", f"{result.firmware_exit_code} ({result.exit_meaning})")
    _row(table, "arena used / size", f"{_bytes(result.arena_used_bytes) or '-'} / {_bytes(result.arena_size_bytes)}")
    if result.min_arena_bytes is not None:
        how = {"device": "the runner's search on the target", "rebuild": "bisecting rebuilt images"}
        _row(table, "minimum arena", f"{_bytes(result.min_arena_bytes)} (by {how.get(result.min_arena_method or '', '?')})")
    _row(table, "TFLM tree", result.tflm_dir)
    _row(table, "TFLM library", f"{result.library} ({'cached' if result.library_cached else 'built now'})")
    _row(table, "seconds", f"library {result.library_seconds:.1f}, build {result.build_seconds:.1f}, "
                           f"run {result.run_seconds:.1f}, min arena {result.min_arena_seconds:.1f}")
    out.print(table)
    if not result.ok and result.console_tail:
        out.print("firmware console (tail):", markup=False)
        out.print("\n".join(result.console_tail), markup=False, highlight=False)


def verify_command(
    project_dir: Annotated[Path, typer.Argument(metavar="DIR", help="A project `edgeq build --target <cmake-tflm target>` wrote.", show_default=False)],
    tflm_dir: Annotated[
        Optional[Path],
        typer.Option("--tflm-dir", help="TFLM tree (create_tflm_tree.py), or a folder holding cmsis-nn/ and reference/ "
                     "trees. Default: $EDGEQ_TFLM_DIR, else ../shared/tflm next to an edgeq checkout."),
    ] = None,
    board: Annotated[Optional[str], typer.Option("--board", help="QEMU board to run on (default: the project's).")] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds one firmware run may take.")] = 120.0,
    find_min_arena: Annotated[bool, typer.Option("--find-min-arena", help="Also measure the smallest arena that works on the target.")] = False,
    jobs: Annotated[Optional[int], typer.Option("--jobs", "-j", help="Parallel compile jobs (default: CPU count).", min=1)] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    """Build the project against real TFLM (the TFLM library is compiled once per CPU and cached),
    run it under QEMU (or natively for host) and check its output against the TFLM reference."""
    from edgeq.context import run_context

    run_context().note_debug(debug)
    from edgeq.version import __version__
    from edgeq.firmware.verify import verify

    result = verify(project_dir, tflm_dir=tflm_dir, board=board, timeout=timeout, find_min_arena=find_min_arena, jobs=jobs)
    if json_out:
        from edgeq.console import print_json

        print_json({"schema_version": SCHEMA_VERSION, "kind": "verify", "edgeq_version": __version__, **result.to_dict()})
    else:
        render_table(result)
    result.check()


def verify_after_build(report: Any, *, tflm_dir: Optional[Path], json_out: bool, emit: Any) -> None:
    """``edgeq build --verify``: verify the project just written. With ``--json`` the build
    document gains a ``verify`` entry (one document on stdout); otherwise both tables print.
    ``emit`` is the CLI's report printer (passed in: nothing here imports the CLI)."""
    from edgeq.firmware.verify import verify
    from edgeq.errors import UserError

    if not report.out_dir or report.to_dict().get("firmware") is None:
        raise UserError("--verify needs a firmware project", hint="build for a CMake target (e.g. --target cortex-m4 --board qemu-mps2-an386, or host)")
    result = verify(Path(report.out_dir), tflm_dir=tflm_dir)
    if json_out:
        from edgeq.console import print_json

        print_json({**report.to_dict(), "verify": result.to_dict()})
    else:
        emit(report, False)
        render_table(result)
    result.check()


__all__ = ["verify_command", "verify_after_build", "render_table"]
