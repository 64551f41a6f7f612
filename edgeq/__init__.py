"""edgeq: from a trained TensorFlow/Keras model to a microcontroller or an edge Linux box.

The public API mirrors the CLI. Every function imports TensorFlow lazily, so importing
``edgeq`` (and ``edgeq --help``) stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edgeq.version import __version__

__all__ = ["__version__", "build", "quantize", "inspect", "emit", "bench", "verify"]

if TYPE_CHECKING:  # pragma: no cover
    from edgeq.pipeline import build, quantize
    from edgeq.check.inspection import inspect
    from edgeq.firmware.emit import emit
    from edgeq.remote.runner import bench
    from edgeq.firmware.verify import verify

_LAZY = {
    "build": "edgeq.pipeline",
    "quantize": "edgeq.pipeline",
    "inspect": "edgeq.check.inspection",
    "emit": "edgeq.firmware.emit",
    "bench": "edgeq.remote.runner",
    "verify": "edgeq.firmware.verify",
}


def __getattr__(name: str) -> Any:
    """Resolve API functions on first use: importing them drags in TensorFlow or paramiko."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'edgeq' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
