"""Typer adapter for ``edgeq config``: the settings a build would use, and where each came from.

Why a command: with three places a value can come from (command line, edgeq.toml's
tables, built-in defaults) a user debugging CI must be able to ask, not guess.
"""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer


def config_command(
    ctx: typer.Context,
    model: Annotated[Optional[str], typer.Argument(help="A model name from [models.<name>] (default: all).", show_default=False)] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the resolved settings as JSON on stdout.")] = False,
) -> None:
    """Show the edgeq.toml in effect, its models, and every build option's value and source."""
    from edgeq.cli.config_file import CONFIG_ENV, find_config
    from edgeq.cli.config_view import sources
    from edgeq.console import out, print_json
    from edgeq.errors import UserError

    config = ctx.obj
    build = ctx.find_root().command.commands["build"]  # type: ignore[attr-defined]
    if config is None and find_config() is None:
        entries: list[Any] = [None]
    elif model is not None:
        if model not in config.models:
            known = ", ".join(config.models) or "none"
            raise UserError(f"no model {model!r} in {config.path} (models: {known})")
        entries = [config.models[model]]
    else:
        entries = list(config.models.values()) or [None]
    docs = []
    for entry in entries:
        rows = sources(config, build, entry)
        docs.append({"model": entry.name if entry else None, "path": str(entry.path) if entry else None,
                     "options": {key: {"value": _plain(value), "from": where} for key, value, where in rows}})
    if json_output:
        print_json({"schema_version": 1, "kind": "config", "file": str(config.path) if config else None, "models": docs})
        return
    from rich.table import Table
    from rich.text import Text

    out.print(f"config file: {config.path if config else f'none found (edgeq.toml or [tool.edgeq] here or above; {CONFIG_ENV})'}",
              markup=False)
    for doc in docs:
        title = f"edgeq build {doc['model']}  ({doc['path']})" if doc["model"] else "edgeq build (defaults)"
        table = Table(title=title, title_justify="left")
        for column in ("option", "value", "from"):
            table.add_column(column, overflow="fold")
        for key, item in doc["options"].items():
            if item["from"] != "built-in default" or item["value"] not in (None, False):
                table.add_row(Text(f"--{key}"), Text(str(item["value"])), Text(item["from"]))
        out.print(table)


def _plain(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool, type(None))) else str(value)


__all__ = ["config_command"]
