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

from edgeq.codegen.filters import FILTERS
from edgeq.resources import data_dir


def templates_dir() -> Path:
    """Where the packaged (or checked-out) ``templates/`` tree lives."""
    return data_dir("templates")


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
