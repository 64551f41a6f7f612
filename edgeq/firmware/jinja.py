"""The one Jinja environment edgeq renders every generated file with.

Why one: the safety of generated code rests on its settings — ``StrictUndefined`` so a
misspelt variable fails the render instead of silently emitting an empty string,
``keep_trailing_newline`` so files end the way the template does, no HTML autoescaping
(this is C, not HTML) — and on the C-escaping filters. Registering them in one place
means no template can be rendered without them.
"""

from __future__ import annotations

import hashlib
import os
import stat
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
import jinja2.bccache

from edgeq.version import __version__
from edgeq.firmware.filters import FILTERS
from edgeq.resources import data_dir

_OPTIONS: dict[str, Any] = dict(
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
    autoescape=False,
    auto_reload=False,
)


def templates_dir() -> Path:
    """Where the packaged (or checked-out) ``templates/`` tree lives."""
    return data_dir("templates")


@lru_cache(maxsize=8)
def environment(root: str | None = None) -> jinja2.Environment:
    """Return the (cached) environment loading templates from ``root`` (default: packaged)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(root or str(templates_dir())), bytecode_cache=bytecode_cache(), **_OPTIONS
    )
    env.filters.update(FILTERS)
    return env


class _QuietCache(jinja2.FileSystemBytecodeCache):
    """A cache that is only ever an optimisation: a cache file that cannot be read or
    written (read-only home, full disk, a race with another edgeq) means compiling."""

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        try:
            super().load_bytecode(bucket)
        except (OSError, EOFError, ValueError):  # unreadable or truncated: compile instead
            bucket.reset()

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        try:
            super().dump_bytecode(bucket)
        except OSError:
            pass


@lru_cache(maxsize=1)
def bytecode_cache() -> jinja2.BytecodeCache | None:
    """Compiled templates under the user's cache folder, or None where there is none.

    Why: Jinja compiles every template it loads, ~35 ms for the four ``emit`` templates
    on each run of ``edgeq emit`` — a tenth of the whole process on a 10 MB model. Jinja
    invalidates an entry when its template's source changes; the folder name covers what
    it does not check (Jinja, Python and edgeq versions, environment options, filter
    names), so a changed environment never runs stale code. Bytecode is code: the folder
    must be private to this user (0700, owned, not a symlink), as Jinja's own default
    requires, or the cache is not used.
    """
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    key = repr((jinja2.__version__, sys.version, __version__, sorted(_OPTIONS.items(), key=str), sorted(FILTERS)))
    folder = os.path.join(base, "edgeq", "jinja-" + hashlib.sha256(key.encode()).hexdigest()[:16])
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        st = os.lstat(folder)
    except OSError:
        return None
    private = stat.S_ISDIR(st.st_mode) and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    if not private or (hasattr(os, "getuid") and st.st_uid != os.getuid()):
        return None
    return _QuietCache(folder)


def render(template: str, context: dict[str, Any], *, root: str | None = None) -> str:
    """Render ``template`` (a path relative to the templates root) with ``context``."""
    return environment(root).get_template(template).render(**context)


def list_templates(prefix: str, *, root: str | None = None) -> list[str]:
    """Template paths under ``prefix/`` ending in ``.j2``, sorted (stable output order)."""
    base = Path(root or templates_dir()) / prefix
    if not base.is_dir():
        return []
    return sorted(p.relative_to(Path(root or templates_dir())).as_posix() for p in base.rglob("*.j2") if p.is_file())


__all__ = ["FILTERS", "environment", "render", "list_templates", "templates_dir", "bytecode_cache"]
