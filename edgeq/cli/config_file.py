"""``edgeq.toml``: a firmware repo's models and defaults, so CI builds them all with one command.

Why a file: a repo keeps several models, each with its target, calibration set, output
folder and gates; long command lines copied into scripts drift apart. The file is found
like ruff's and pytest's, in the current folder or a parent: ``edgeq.toml``, or
``pyproject.toml`` with a ``[tool.edgeq]`` table. Its keys are the command-line option
names without ``--``, so the file and ``--help`` document each other::

    [defaults]            # any command's options
    target = "cortex-m4"
    [models.kws]          # `edgeq build` builds every model; `edgeq build kws` one
    path = "models/kws.keras"
    calibration = "data/kws_calib.npy"

This module only reads and locates: which keys are valid is the CLI's knowledge
(``edgeq.cli.config_view``), so that the library does not depend on the command line.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeq.errors import UserError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

#: Environment override: a config file to use, or "none" to use no file at all.
CONFIG_ENV = "EDGEQ_CONFIG"
MAX_CONFIG_BYTES = 1 << 20
_HEADER = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$")
_KEY = re.compile(r"""^\s*("[^"]*"|'[^']*'|[A-Za-z0-9_.-]+)\s*=""")


class ConfigError(UserError):
    """edgeq.toml is invalid: the message names the file, line and key."""


@dataclass(frozen=True)
class Setting:
    """One value from the file and where it was written (``edgeq.toml:4 [defaults]``)."""

    value: Any
    line: int
    table: str

    def where(self, path: Path) -> str:
        return f"{path.name}:{self.line} [{self.table}]"


@dataclass(frozen=True)
class ModelEntry:
    """``[models.<name>]``: the model's path (absolute) and its own options."""

    name: str
    path: Path
    options: dict[str, Setting]
    line: int


@dataclass(frozen=True)
class Config:
    path: Path
    defaults: dict[str, Setting] = field(default_factory=dict)
    models: dict[str, ModelEntry] = field(default_factory=dict)

    @property
    def folder(self) -> Path:
        return self.path.parent

    def at(self, line: int) -> str:
        return f"{self.path}:{line}" if line else str(self.path)


def find_config(start: Path | None = None) -> Path | None:
    """The config file for ``start`` (default: the current folder), or None."""
    chosen = os.environ.get(CONFIG_ENV, "")
    if chosen.lower() == "none":
        return None
    if chosen:
        path = Path(chosen)
        if not path.is_file():
            raise ConfigError(f"{CONFIG_ENV}={chosen}: no such file", hint=f"unset {CONFIG_ENV} or point it at an edgeq.toml")
        return path
    folder = (start or Path.cwd()).resolve()
    for candidate in (folder, *folder.parents):
        toml = candidate / "edgeq.toml"
        if toml.is_file():
            return toml
        pyproject = candidate / "pyproject.toml"
        if pyproject.is_file() and _has_tool_table(pyproject):
            return pyproject
    return None


def _has_tool_table(pyproject: Path) -> bool:
    try:
        with pyproject.open("rb") as handle:
            head = handle.read(MAX_CONFIG_BYTES)
    except OSError:
        return False
    return re.search(rb"^\s*\[\s*tool\.edgeq[\].]", head, re.MULTILINE) is not None


def _lines(text: str) -> dict[tuple[str, str], int]:
    """(table, key) -> 1-based line, by a scan of the text (tomllib reports no positions)."""
    found: dict[tuple[str, str], int] = {}
    table = ""
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            table = header.group(1).replace(" ", "").replace('"', "").replace("'", "")
            found.setdefault((table, ""), number)
            continue
        key = _KEY.match(line)
        if key:
            found.setdefault((table, key.group(1).strip("\"'")), number)
    return found


def load_config(path: Path) -> Config:
    """Parse and check the file's shape (tables, ``path``); option keys are checked by the CLI."""
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: {size:,} bytes is too large for a config file (limit {MAX_CONFIG_BYTES:,})")
        text = path.read_text(encoding="utf-8")
        doc = tomllib.loads(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML ({exc})") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid TOML (nested too deeply)") from None
    prefix = ""
    if path.name == "pyproject.toml":
        doc = doc.get("tool", {}).get("edgeq", {})
        prefix = "tool.edgeq."
    lines = _lines(text)

    def line_of(table: str, key: str = "") -> int:
        return lines.get((prefix + table, key)) or lines.get((prefix + table, "")) or 0

    config = Config(path)
    for key in doc:
        if key not in ("defaults", "models"):
            raise ConfigError(f"{config.at(lines.get((prefix.rstrip('.'), key), 0) or line_of(key))}: unknown table or key "
                              f"'{key}'", hint="edgeq.toml has two tables: [defaults] and [models.<name>]")
    defaults = doc.get("defaults", {})
    if not isinstance(defaults, dict):
        raise ConfigError(f"{config.at(line_of('defaults'))}: 'defaults' must be a table")
    config.defaults.update({k: Setting(v, line_of("defaults", k), "defaults") for k, v in defaults.items()})
    models = doc.get("models", {})
    if not isinstance(models, dict):
        raise ConfigError(f"{config.at(line_of('models'))}: 'models' must be a table of [models.<name>] tables")
    for name, table in models.items():
        where = f"models.{name}"
        if not isinstance(table, dict):
            raise ConfigError(f"{config.at(line_of('models', name))}: [models.{name}] must be a table")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
            raise ConfigError(f"{config.at(line_of(where))}: model name {name!r} must be letters, digits, '_', '-', '.'")
        if "path" not in table:
            raise ConfigError(f"{config.at(line_of(where))}: [models.{name}] needs a 'path' (the model file or folder)")
        if not isinstance(table["path"], str) or not table["path"]:
            raise ConfigError(f"{config.at(line_of(where, 'path'))}: 'path' in [models.{name}] must be a string")
        options = {k: Setting(v, line_of(where, k), where) for k, v in table.items() if k != "path"}
        config.models[name] = ModelEntry(name, (config.folder / table["path"]).resolve(), options, line_of(where))
    return config


__all__ = ["CONFIG_ENV", "Config", "ConfigError", "ModelEntry", "Setting", "find_config", "load_config"]
