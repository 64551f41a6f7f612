"""Typer adapter for ``edgeq targets``: every target with its build system, kernels and budgets.

Kept apart from ``edgeq emit``'s adapter so each stays a page long; errors propagate as
``EdgeqError`` to ``edgeq.cli.app.main``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit, factor in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= factor and n % (factor // 4) == 0:
            return f"{n / factor:g} {unit}"
    return f"{n:,} B"


def targets_command(
    json_output: Annotated[bool, typer.Option("--json", help="Print the targets as JSON on stdout.")] = False,
    targets_dir: Annotated[Optional[Path], typer.Option("--targets-dir", help="Extra folder of target .toml files (also read: ~/.config/edgeq/targets).")] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    """List the build targets: build system, CPU, TFLM kernels, flash/RAM/PSRAM budgets, boards."""
    from edgeq.context import run_context

    run_context().note_debug(debug)
    from edgeq.console import out as stdout, print_json
    from edgeq.firmware.targets import list_targets

    targets = list_targets(targets_dir=targets_dir)
    if json_output:
        print_json({"schema_version": 1, "kind": "targets", "targets": [t.to_dict() for t in targets]})
        return
    from rich.table import Table

    rows = []
    for t in targets:
        cpu = t.cpu or "native"
        if t.fpu or t.float_abi:
            cpu += f" ({t.fpu or 'no fpu'}, {t.float_abi or 'soft'})"
        boards = [f"{b} (default)" if b == t.default_board else b for b in t.boards]
        shown = ", ".join(boards[:3]) + (f", +{len(boards) - 3} more (--json)" if len(boards) > 3 else "")
        rows.append({"name": t.name, "build system": t.build_system, "cpu": cpu, "kernels": t.kernels,
                     "flash": _size(t.flash_bytes), "RAM": _size(t.ram_bytes), "PSRAM": _size(t.psram_bytes),
                     "boards": shown or "-", "cpu core": t.cpu or "native"})
    # Like `pip list`: columns that do not fit are dropped, never squeezed to zero width.
    # The short fixed ones never wrap; boards wrap in their cell.
    wide = ("name", "build system", "cpu", "kernels", "flash", "RAM", "PSRAM", "boards")
    narrow = ("name", "build system", "cpu core", "flash", "RAM")
    columns = wide if stdout.width >= 140 else narrow
    title = "edgeq targets (descriptions: --json)" if columns == wide else \
        "edgeq targets (kernels, PSRAM, boards, descriptions: --json or a wider terminal)"
    table = Table(title=title, title_justify="left")
    for column in columns:
        wraps = column == "boards"
        table.add_column(column, no_wrap=not wraps, overflow="fold" if wraps else "ellipsis",
                         min_width=16 if wraps else None)
    for row in rows:
        table.add_row(*(row[c] for c in columns))
    stdout.print(table)


__all__ = ["targets_command"]
