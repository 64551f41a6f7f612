"""Firmware output: C arrays, op resolvers, model settings, TFLM project scaffolds.

Entry points: ``emit`` (sources for an existing firmware repo), ``write_firmware`` and
``check_budget`` (the project ``edgeq build --target`` writes). Submodules import
numpy/jinja2, so they are loaded on first use, not with ``edgeq``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from edgeq.codegen.budget import check_budget
    from edgeq.codegen.emit import emit
    from edgeq.codegen.firmware import write_firmware

__all__ = ["emit", "write_firmware", "check_budget"]

_LAZY = {"emit": "edgeq.codegen.emit", "write_firmware": "edgeq.codegen.firmware", "check_budget": "edgeq.codegen.budget"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'edgeq.codegen' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
