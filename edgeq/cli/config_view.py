"""``edgeq.toml`` meets the command line: checked keys, defaults for every command, many builds.

Why here and not in ``edgeq.cli.config_file``: which keys are valid, and what type each has, is
what the typer commands declare. Reading them from the commands keeps one source of
truth: a new option is configurable the day it is added, and a typo is caught with the
line it is on. Precedence, highest first: the command line, ``[models.<name>]``,
``[defaults]``, the option's built-in default.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from edgeq.cli.config_file import Config, ConfigError, ModelEntry, Setting
from edgeq.errors import EdgeqError, UserError

#: str-typed options that still name a file (``--calibration`` also takes "random").
_PATHLIKE = frozenset({"calibration"})


@dataclass(frozen=True)
class Option:
    """One command option as the config file sees it."""

    key: str  # the long option name without "--"
    name: str  # the Python parameter name
    annotation: Any
    minimum: Any = None
    maximum: Any = None

    @property
    def is_path(self) -> bool:
        return self.annotation is Path or self.key in _PATHLIKE


def command_options(command: Any) -> dict[str, Option]:
    """``{key: Option}`` for one typer/click command (arguments are not configurable)."""
    found: dict[str, Option] = {}
    for param in command.params:
        longs = [o for o in getattr(param, "opts", []) if o.startswith("--")]
        if not longs or getattr(param, "param_type_name", "option") == "argument":
            continue
        descriptor = getattr(param, "type_descriptor", None)
        annotation = getattr(descriptor, "annotation", str)
        found[longs[0][2:]] = Option(longs[0][2:], param.name, annotation, getattr(param, "min", None),
                                     getattr(param, "max", None))
    return found


def _typed(config: Config, option: Option, setting: Setting) -> Any:
    """The value, checked against the option's type; paths made relative to the file."""
    value, kind = setting.value, option.annotation
    ok = {bool: isinstance(value, bool), int: isinstance(value, int) and not isinstance(value, bool),
          float: isinstance(value, (int, float)) and not isinstance(value, bool)}.get(kind, isinstance(value, str))
    if not ok:
        wanted = {bool: "true or false", int: "an integer", float: "a number"}.get(kind, "a string")
        raise ConfigError(f"{config.at(setting.line)}: '{option.key}' in [{setting.table}] must be {wanted}, "
                          f"got {value!r}", hint=f"see `edgeq build --help` for --{option.key}")
    for bound, fails in ((option.minimum, lambda b: value < b), (option.maximum, lambda b: value > b)):
        if bound is not None and kind in (int, float) and fails(bound):
            raise ConfigError(f"{config.at(setting.line)}: '{option.key}' = {value!r} in [{setting.table}] is out of "
                              f"range (--{option.key} takes {option.minimum}..{option.maximum})")
    if option.is_path and not (option.key == "calibration" and value == "random"):
        return str((config.folder / value).resolve()) if not Path(value).is_absolute() else value
    return value


def _unknown(config: Config, key: str, setting: Setting, known: Iterable[str], what: str) -> ConfigError:
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f"did you mean '{close[0]}'?" if close else f"keys are {what}'s option names without '--' (see --help)"
    return ConfigError(f"{config.at(setting.line)}: unknown key '{key}' in [{setting.table}]", hint=hint)


def check(config: Config, commands: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Validate every key and value; return typer's ``default_map`` (command -> {param: value})."""
    options = {name: command_options(cmd) for name, cmd in commands.items()}
    every = {key for table in options.values() for key in table}
    for key, setting in config.defaults.items():
        if key not in every:
            raise _unknown(config, key, setting, every, "a command")
    for entry in config.models.values():
        for key, setting in entry.options.items():
            if key not in options["build"]:
                raise _unknown(config, key, setting, options["build"], "edgeq build")
            _typed(config, options["build"][key], setting)
    default_map: dict[str, dict[str, Any]] = {}
    for command, table in options.items():
        chosen = {table[k].name: _typed(config, table[k], s) for k, s in config.defaults.items() if k in table}
        if chosen:
            default_map[command] = chosen
    return default_map


def entry_values(config: Config, entry: ModelEntry, build_command: Any) -> dict[str, Any]:
    """``[models.<name>]`` as build parameters (``name`` and ``out`` defaulted from the table name)."""
    options = command_options(build_command)
    values = {options[k].name: _typed(config, options[k], s) for k, s in entry.options.items()}
    values.setdefault("name", entry.name.replace("-", "_").replace(".", "_"))
    values.setdefault("out", str(config.folder / "build" / entry.name))
    return values


def sources(config: Config | None, build_command: Any, entry: ModelEntry | None) -> list[tuple[str, Any, str]]:
    """(key, value, where) for every build option: what ``edgeq config`` prints."""
    rows = []
    for key, option in sorted(command_options(build_command).items()):
        setting = None
        if entry is not None and key in entry.options:
            setting = entry.options[key]
        elif config is not None and key in config.defaults:
            setting = config.defaults[key]
        if setting is not None and config is not None:
            rows.append((key, _typed(config, option, setting), setting.where(config.path)))
        elif entry is not None and config is not None and key in ("name", "out"):
            derived = entry_values(config, entry, build_command)[option.name]
            rows.append((key, derived, f"from the model's name [models.{entry.name}]"))
        else:
            default = next((p.default for p in build_command.params if p.name == option.name), None)
            rows.append((key, default, "built-in default"))
    return rows


def pick_models(config: Config | None, model: Path | None) -> list[ModelEntry] | None:
    """The config models a ``build`` invocation means, or None for a plain one-model build."""
    if config is None or not config.models:
        return None
    if model is None:
        return list(config.models.values())
    if str(model) in config.models and not model.exists():
        return [config.models[str(model)]]
    return None


def run_models(entries: list[ModelEntry], build_one: Callable[[ModelEntry], dict[str, Any]],
               *, json_out: bool) -> int:
    """Build each model, go on after a failure, print one summary; return the worst exit code."""
    from edgeq.console import info, print_json

    results: list[dict[str, Any]] = []
    for entry in entries:
        info(f"── {entry.name}: {entry.path}")
        try:
            doc = build_one(entry)
            results.append({"name": entry.name, "exit_code": 0, "report": doc})
        except EdgeqError as exc:
            from edgeq.console import err
            from edgeq.text import printable

            err.print(f"error ({entry.name}): {printable(exc.message)}", markup=False)
            results.append({"name": entry.name, "exit_code": exc.exit_code,
                            "error": {"message": exc.message, "hint": exc.hint}})
    worst = max(r["exit_code"] for r in results)
    if json_out:
        print_json({"schema_version": 1, "kind": "build-set", "exit_code": worst, "models": results})
    else:
        _summary(results)
    return worst


def _summary(results: list[dict[str, Any]]) -> None:
    from rich.table import Table

    from edgeq.console import cell, out

    table = Table(title="edgeq build: models from the config file", title_justify="left")
    for column in ("model", "result", "target", "accuracy / agreement", "arena", "flash", "output"):
        table.add_column(column, overflow="fold")
    for r in results:
        if "error" in r:
            table.add_row(cell(r["name"]), cell(f"exit {r['exit_code']}: {r['error']['message'][:120]}"), "", "", "", "", "")
            continue
        doc = r["report"]
        v, fw = doc.get("validation") or {}, doc.get("firmware") or {}
        acc = v.get("quantized_accuracy")
        quality = f"{acc:.1%}" if acc is not None else (f"{v['agreement']:.1%} agree" if v.get("agreement") is not None
                                                        else (f"rmse {v['rmse']:.3g}" if v.get("rmse") is not None else "-"))
        arena = fw.get("arena_bytes")
        flash = ((fw.get("budget") or {}).get("flash") or {}).get("used")
        verdict = "ok" + (" + verified" if doc.get("verify") else "")
        table.add_row(cell(r["name"]), verdict, cell((doc.get("target") or {}).get("name", "-")), quality,
                      f"{arena:,} B" if isinstance(arena, int) else "-", f"{flash:,} B" if isinstance(flash, int) else "-",
                      cell(doc.get("out_dir") or fw.get("out_dir") or "-"))
    out.print(table)


def refuse_multi(option: str) -> UserError:
    return UserError(f"{option} cannot be combined with building several models from the config file",
                     hint="name one model: edgeq build <name>")


__all__ = ["Option", "command_options", "check", "entry_values", "sources", "pick_models", "run_models"]
