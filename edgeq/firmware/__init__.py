"""Firmware: targets and build systems (``targets``, ``build_systems``: data under
``targets/``), the arena rule and kernels' scratch sizes (``arena``, ``cmsis_memory``,
``esp_nn_memory``), the flash/RAM budget (``budget``), C arrays, names and the op resolver
(``c_array``, ``names``, ``resolver``), Jinja rendering and the project scaffold (``jinja``,
``filters``, ``sources``, ``scaffold``, ``project``), the pipeline's firmware step (``step``),
``emit`` for an existing firmware repo, and ``verify`` on real TFLM in QEMU.

Entry points: ``emit`` (sources for an existing firmware repo), ``write_firmware`` and
``check_budget`` (the project ``edgeq build --target`` writes). Submodules import
numpy/jinja2, so they are loaded on first use, not with ``edgeq``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from edgeq.firmware.budget import check_budget
    from edgeq.firmware.emit import emit
    from edgeq.firmware.project import write_firmware

__all__ = ["emit", "write_firmware", "check_budget"]

_LAZY = {"emit": "edgeq.firmware.emit", "write_firmware": "edgeq.firmware.project", "check_budget": "edgeq.firmware.budget"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'edgeq.firmware' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
