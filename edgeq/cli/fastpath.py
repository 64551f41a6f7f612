"""A fast path past typer's argument parsing, for plain command lines of plain commands.

Why: typer 0.29 converts every parameter through a pydantic ``TypeAdapter``. Importing
pydantic and building a dozen adapters costs about 0.2 s on each run of ``edgeq emit``
— more than formatting a 10 MB model into C. When a command line consists only of a
command's options in their plain forms (``--opt VALUE``, ``--opt=VALUE``, ``-o VALUE``,
flags, the positional arguments), the values typer would pass are obvious: this module
computes exactly those and calls the same function. Anything else — ``--help``, an
unknown, repeated or missing option, ``--``, a value that starts with ``-``, a number or
choice typer would reject or convert differently — returns ``None`` and typer parses as
always, so usage messages and exit codes never change.

The option table is read from the command's own typer annotations (one source of truth);
a command using a typer feature this module does not model (callbacks, envvars, prompts,
custom parsers, path checks, counts, ...) is never fast-pathed. ``tests/test_cli_fastpath``
checks that typer and this module produce the same values.
"""

from __future__ import annotations

import os
import re
import sys
import types
import typing
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Sequence

try:  # typer >= 0.2x vendors click here; elsewhere there is no fast path
    from typer import _click
    from typer._click.exceptions import ClickException
    from typer._click.utils import PacifyFlushWrapper
    from typer.exceptions import Abort, Exit
except ImportError:  # pragma: no cover
    _click = None

_KINDS = {bool: "flag", str: "str", int: "int", Path: "path"}
# ParameterInfo attributes and the values under which typer does nothing beyond converting.
_PLAIN = {
    "callback": None, "envvar": None, "is_eager": False, "expose_value": True, "default_factory": None,
    "parser": None, "click_type": None, "shell_complete": None, "autocompletion": None, "clamp": False,
    "formats": None, "exists": False, "file_okay": True, "dir_okay": True, "writable": False,
    "resolve_path": False, "allow_dash": False, "path_type": None, "prompt": False, "count": False,
    "is_flag": None, "flag_value": None, "mode": None, "lazy": None, "atomic": False,
}
_DIGITS = re.compile(r"[0-9]{1,18}")
_DECL = re.compile(r"--[a-z][a-z0-9-]*|-[a-zA-Z]")  # "--help" is typer's own, never declared


@dataclass(frozen=True)
class _Param:
    name: str
    kind: str  # flag | str | int | path | enum
    enum: type[Enum] | None
    required: bool
    default: Any
    info: Any  # typer's OptionInfo / ArgumentInfo


@dataclass(frozen=True)
class _Spec:
    options: dict[str, _Param]  # every spelling ("--out", "-o") → parameter
    arguments: tuple[_Param, ...]
    params: tuple[_Param, ...]


def parse(command: Callable[..., Any], args: Sequence[str]) -> dict[str, Any] | None:
    """The keyword arguments typer would call ``command`` with for ``args``, or None to let
    typer parse (anything not plain; see the module docstring)."""
    spec = _spec(command) if _click is not None else None
    if spec is None:
        return None
    values: dict[str, Any] = {}
    positional: list[str] = []
    i = 0
    while i < len(args):
        token = args[i]
        if token.startswith("-") and token not in ("-", "--"):
            name, eq, inline = token.partition("=") if token.startswith("--") else (token, "", "")
            param = spec.options.get(name)
            if param is None or param.name in values:
                return None
            if param.kind == "flag":
                if eq:
                    return None
                values[param.name] = True
            else:
                if not eq:
                    i += 1
                    if i == len(args):
                        return None
                value = inline if eq else args[i]
                converted = _convert(param, value)
                if converted is None:
                    return None
                values[param.name] = converted
        elif token.startswith("-"):
            return None  # "-" and "--" mean something to click
        else:
            positional.append(token)
        i += 1
    if len(positional) != len(spec.arguments):
        return None
    for param, value in zip(spec.arguments, positional):
        converted = _convert(param, value)
        if converted is None:
            return None
        values[param.name] = converted
    for param in spec.params:
        if param.name not in values:
            if param.required:
                return None  # typer words the "missing option" error
            values[param.name] = param.default
    return values


def run(command: Callable[..., Any], values: dict[str, Any]) -> None:
    """Call ``command`` as typer's standalone mode would, then exit 0 like it does.

    Mirrors what typer does around a command: Ctrl-C exits 130, ``typer.Exit`` and
    click's errors exit with their codes, a closed stdout pipe exits 1 quietly.
    ``EdgeqError`` propagates to ``edgeq.cli.app.main`` exactly as it does through typer.
    """
    assert _click is not None
    try:
        try:
            command(**values)
        except KeyboardInterrupt:
            raise Exit(130) from None
        except EOFError:
            sys.stderr.write("\n")
            raise Abort() from None
        except ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except OSError as exc:
            import errno

            if exc.errno != errno.EPIPE:
                raise
            sys.stdout = typing.cast(typing.TextIO, PacifyFlushWrapper(sys.stdout))
            sys.stderr = typing.cast(typing.TextIO, PacifyFlushWrapper(sys.stderr))
            sys.exit(1)
    except Exit as exc:
        sys.exit(exc.exit_code)
    except Abort:
        _click.echo("Aborted!", file=sys.stderr)
        sys.exit(1)
    sys.exit(0)


def _convert(param: _Param, value: str) -> Any:
    """``value`` as typer converts it for ``param``, or None where typer might differ or refuse."""
    if not value or value.startswith("-") or "\x00" in value:
        return None
    if param.kind == "str":
        return value
    if param.kind == "path":
        try:
            os.stat(value)
        except OSError:
            return Path(value)  # typer checks nothing more on a path that does not exist
        return Path(value) if os.access(value, os.R_OK) else None  # "is not readable" is typer's to say
    if param.kind == "int":
        if not _DIGITS.fullmatch(value):
            return None
        number = int(value)
        low, high = param.info.min, param.info.max
        return None if (low is not None and number < low) or (high is not None and number > high) else number
    if param.kind == "enum":
        assert param.enum is not None
        fold = (lambda s: s) if param.info.case_sensitive else str.casefold
        matches = [m for m in param.enum if fold(str(m.value)) == fold(value)]
        return matches[0] if len(matches) == 1 else None
    return None


@lru_cache(maxsize=8)
def _spec(command: Callable[..., Any]) -> _Spec | None:
    """``command``'s parameters as typer reads them (``typer.utils.get_params_from_function``:
    ``Annotated`` option names and ``=`` defaults), or None if any of them uses something
    this module does not model."""
    from typer.models import ArgumentInfo, OptionInfo
    from typer.utils import get_params_from_function

    try:
        metas = get_params_from_function(command)
    except Exception:  # typer will say what is wrong with the declaration
        return None
    options: dict[str, _Param] = {}
    arguments: list[_Param] = []
    params: list[_Param] = []
    for name, meta in metas.items():
        info = meta.default
        if not isinstance(info, (OptionInfo, ArgumentInfo)) or any(getattr(info, k, v) != v for k, v in _PLAIN.items()):
            return None
        base = meta.annotation
        if typing.get_origin(base) in (typing.Union, types.UnionType) and type(None) in typing.get_args(base):
            rest = [a for a in typing.get_args(base) if a is not type(None)]
            if len(rest) != 1:
                return None
            base = rest[0]
        enum = base if isinstance(base, type) and issubclass(base, Enum) else None
        kind = "enum" if enum is not None else _KINDS.get(base)
        if kind is None:
            return None
        required = info.default is ...
        param = _Param(name, kind, enum, required, None if required else info.default, info)
        params.append(param)
        if isinstance(info, ArgumentInfo):
            if kind == "flag":
                return None
            arguments.append(param)
            continue
        decls = tuple(info.param_decls or ())
        if not decls or (kind == "flag" and info.default is not False):
            return None  # typer's derived names and --x/--no-x pairs are not modelled
        for decl in decls:
            if not _DECL.fullmatch(decl) or decl in options:
                return None
            options[decl] = param
    return _Spec(options, tuple(arguments), tuple(params))


__all__ = ["parse", "run"]
