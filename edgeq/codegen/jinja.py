"""The one Jinja environment edgeq renders every generated file with.

Why one: the safety of generated code rests on its settings — ``StrictUndefined`` so a
misspelt variable fails the render instead of silently emitting an empty string,
``keep_trailing_newline`` so files end the way the template does, no HTML autoescaping
(this is C, not HTML) — and on the C-escaping filters. Registering them in one place
means no template can be rendered without them.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

from edgeq.codegen import names
from edgeq.codegen.c_array import format_c_bytes_text
from edgeq.resources import data_dir


def templates_dir() -> Path:
    """Where the packaged (or checked-out) ``templates/`` tree lives."""
    return data_dir("templates")


def _c_float(value: float | None) -> str:
    """A float literal that round-trips (repr) and is a float in C (``f`` suffix)."""
    if value is None:
        return "0.0f"
    text = repr(float(value))
    if text in ("inf", "-inf", "nan"):
        raise ValueError(f"non-finite value {text} cannot be a C constant")
    if "e" not in text and "." not in text:
        text += ".0"
    return text + "f"


def _c_int_list(values: Any) -> str:
    """``(1, 96, 96, 3)`` → ``1, 96, 96, 3`` for array initializers."""
    return ", ".join(str(int(v)) for v in values)


def _c_bytes(data: Any) -> str:
    """Initializer text for a bytes-like object (or numpy array's raw bytes)."""
    raw = data.tobytes() if hasattr(data, "tobytes") else bytes(data)
    return format_c_bytes_text(raw)


def _cmake_quote(text: str) -> str:
    """A quoted CMake argument: CMake expands ``${}`` and ``\\`` inside quotes, so escape them."""
    escaped = str(text).replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$").replace(";", "\\;")
    return f'"{escaped}"'


FILTERS = {
    "c_ident": names.c_identifier,
    "c_camel": names.c_camel,
    "c_macro": names.c_macro,
    "c_string": names.c_string,
    "c_comment": names.c_comment,
    "c_float": _c_float,
    "c_ints": _c_int_list,
    "c_bytes": _c_bytes,
    "cmake_quote": _cmake_quote,
}


@lru_cache(maxsize=8)
def environment(root: str | None = None) -> jinja2.Environment:
    """Return the (cached) environment loading templates from ``root`` (default: packaged)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(root or str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
        auto_reload=False,
    )
    env.filters.update(FILTERS)
    return env


def render(template: str, context: dict[str, Any], *, root: str | None = None) -> str:
    """Render ``template`` (a path relative to the templates root) with ``context``."""
    return environment(root).get_template(template).render(**context)


def list_templates(prefix: str, *, root: str | None = None) -> list[str]:
    """Template paths under ``prefix/`` ending in ``.j2``, sorted (stable output order)."""
    base = Path(root or templates_dir()) / prefix
    if not base.is_dir():
        return []
    return sorted(p.relative_to(Path(root or templates_dir())).as_posix() for p in base.rglob("*.j2") if p.is_file())


__all__ = ["FILTERS", "environment", "render", "list_templates", "templates_dir"]
