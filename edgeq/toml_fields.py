"""Strict reading of edgeq's TOML definition files (targets, boards, build systems).

Why a module of its own: ``edgeq.firmware.targets`` and ``edgeq.firmware.build_systems`` both read such
files with the same rules (bounded size, a known ``schema_version``, typed fields, no
unknown keys, every error naming the file and the field), and targets validate against
build systems, so the shared reader sits below both instead of in one of them.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any, Callable

from edgeq.errors import TargetError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SCHEMA_VERSION = 1
_FLAG_RE = re.compile(r"^-[A-Za-z0-9_=+.,:/-]+$")


class Fields:
    """Pops typed fields from a TOML table; whatever is left over is an unknown key."""

    def __init__(self, table: dict[str, Any], where: str) -> None:
        self.table = dict(table)
        self.where = where

    def fail(self, key: str, why: str) -> TargetError:
        return TargetError(f"{self.where}: field '{key}' {why}", hint="see targets/*.toml shipped with edgeq for the format")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ..., check: Callable[[Any], bool] | None = None, why: str = "") -> Any:
        if key not in self.table:
            if default is ...:
                raise self.fail(key, "is required")
            return default
        value = self.table.pop(key)
        if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
            names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
            raise self.fail(key, f"must be {names}, got {type(value).__name__} {value!r}")
        if check is not None and not check(value):
            raise self.fail(key, f"{why} (got {value!r})")
        return value

    def size(self, key: str, default: Any = ..., minimum: int = 0) -> int | None:
        return self.get(key, int, default, lambda v: v >= minimum, f"must be an integer >= {minimum}")

    def flags(self, key: str) -> tuple[str, ...]:
        values = self.get(key, list, [])
        for v in values:
            if not isinstance(v, str) or not _FLAG_RE.match(v):
                raise self.fail(key, f"has an invalid compiler flag {v!r} (expected e.g. '-O2', '-ffunction-sections')")
        return tuple(values)

    def done(self) -> None:
        if self.table:
            unknown = ", ".join(sorted(self.table))
            raise TargetError(f"{self.where}: unknown field(s): {unknown}", hint="check the spelling; unknown keys are errors so typos cannot pass silently")


MAX_TOML_BYTES = 1 << 20  # a real target or board file is a few KB


def read_toml(path: Path) -> dict[str, Any]:
    """Parse one definition file; a user's --targets-dir is untrusted: bound its size and depth."""
    try:
        if not path.is_file():
            raise TargetError(f"{path}: not a regular file", hint="target definitions are <name>.toml files")
        if path.stat().st_size > MAX_TOML_BYTES:
            raise TargetError(f"{path}: {path.stat().st_size:,} bytes is too large for a target definition "
                              f"(limit {MAX_TOML_BYTES:,})", hint="a target file holds a few tables of settings")
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise TargetError(f"{path}: cannot read ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise TargetError(f"{path}: invalid TOML ({exc})") from None
    except RecursionError:  # tomllib recurses once per nesting level
        raise TargetError(f"{path}: invalid TOML (nested too deeply)", hint="target files use flat tables") from None
    version = doc.pop("schema_version", None)
    if version != SCHEMA_VERSION:
        raise TargetError(f"{path}: field 'schema_version' must be {SCHEMA_VERSION}, got {version!r}", hint="this edgeq reads schema_version = 1")
    return doc


__all__ = ["Fields", "read_toml", "MAX_TOML_BYTES", "SCHEMA_VERSION"]
