"""Typer adapters for ``edgeq emit`` and ``edgeq targets``.

Thin on purpose: parse options, call one library function, render its result (a table on
stdout, or with ``--json`` a versioned document). Errors propagate as ``EdgeqError`` to
``edgeq.cli.app.main``, the only place that maps them to exit codes. Heavy imports (numpy,
jinja2) happen inside the commands so ``edgeq --help`` stays fast.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer


class Lang(str, Enum):
    c = "c"
    cpp = "cpp"


def emit_command(
    model: Annotated[Path, typer.Argument(help="The .tflite model to turn into C/C++ sources.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the sources into (created if missing).", show_default=False)],
    name: Annotated[Optional[str], typer.Option("--name", help="Base name for files and symbols (made a valid C identifier). Default: the model file's stem.")] = None,
    lang: Annotated[Lang, typer.Option("--lang", help="Language of the array source: c (.c) or cpp (.cc).", case_sensitive=False)] = Lang.cpp,
    section: Annotated[Optional[str], typer.Option("--section", help="Linker section for the model array, e.g. .rodata.model.")] = None,
    namespace: Annotated[Optional[str], typer.Option("--namespace", help="C++ namespace for the array and resolver (--lang cpp).")] = None,
    labels: Annotated[Optional[Path], typer.Option("--labels", help="Text file, one class label per line, embedded in <name>_model_settings.h.")] = None,
    target: Annotated[Optional[str], typer.Option("--target", help="Target whose arena rule sizes k<Name>TensorArenaSize (default: cortex-m, safe on M0+..M55).")] = None,
    targets_dir: Annotated[Optional[Path], typer.Option("--targets-dir", help="Extra folder of target .toml files.")] = None,
    arena_bytes: Annotated[Optional[int], typer.Option("--arena-bytes", min=1, help="Host TFLM arena in bytes, if already known (skips measuring it; needed where tflite-micro is not installable).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite files in --out that edgeq did not write.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would be written; write nothing.")] = False,
    strip: Annotated[bool, typer.Option("--strip", help="Emit the model without what TFLM never reads (tensor names, signatures, description), proven on TFLM to compute the same bytes; the settings header keeps the names.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    """Write <name>_model_data.h/.cc, <name>_model_settings.h and <name>_op_resolver.h for a .tflite."""
    from edgeq.context import run_context

    run_context().note_debug(debug)
    from edgeq.firmware.emit import emit  # light: emit() starts TFLM's arena measurement first

    result = emit(model, out=out, name=name, lang=lang.value, section=section, namespace=namespace, labels=labels,
                  force=force, target=target, targets_dir=targets_dir, dry_run=dry_run, arena_bytes=arena_bytes,
                  strip=strip)
    from edgeq.console import cell, out as stdout, print_json, warn

    for message in result.warnings:
        warn(message)
    for path in result.write.kept:
        warn(f"kept {path}: you edited it (pass --force to overwrite)")
    if json_output:
        print_json(result.to_dict())
        return
    from rich.table import Table

    verb = "would write" if dry_run else "wrote"
    table = Table(title=cell(f"edgeq emit: {result.name} → {result.out_dir} ({verb})"), title_justify="left")
    table.add_column("file")
    table.add_column("action")
    for a in result.write.actions:
        table.add_row(cell(a.path), cell(a.action))
    stdout.print(table)
    stdout.print(cell(f"ops ({len(result.ops)}): {', '.join(result.ops)}"))
    if result.strip is not None:
        s = result.strip
        stdout.print(f"--strip: model {s.bytes_before:,} → {s.bytes_after:,} bytes ({s.saved:,} saved)", markup=False)
    if result.arena.host_bytes is not None:
        stdout.print(f"k{_camel(result.name)}TensorArenaSize = {result.arena.target_bytes} ({result.target}: {result.arena.rule})", markup=False)


def _camel(name: str) -> str:
    from edgeq.firmware.names import c_camel

    return c_camel(name)


__all__ = ["emit_command", "Lang"]
