"""``edgeq inspect`` as a library call: one .tflite described as a JSON-ready document.

Why apart from ``edgeq.model.tflite_info``: the document includes the TFLite Micro verdict,
and ``edgeq.check.micro`` builds on ``tflite_info`` (its ``ModelInfo``), so the call that needs
both sits above them; ``tflite_info`` stays a pure reader. ``edgeq.inspect`` is this.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgeq.check.memory_profile import profile
from edgeq.errors import ModelError
from edgeq.model.tflite_info import read_tflite


def inspect(path: str | Path, *, micro: bool = True) -> dict[str, Any]:
    """Describe a .tflite: tensors, ops, I/O, integer-ness, its memory profile (per op MACs,
    live bytes and scratch, the peak op and the lower bound), and (with ``micro``) TFLM
    support and arena.

    Returns a plain dict because it is a report, not something code builds on; code that
    needs the structure calls ``read_tflite``. Always valid JSON: ``parse`` refuses
    non-finite scales, and the document is checked for NaN/Infinity before it is returned.
    """
    data, info = read_tflite(path)
    doc: dict[str, Any] = {"schema_version": 1, "kind": "inspect", "path": str(path), **info.to_dict()}
    doc["memory"] = profile(data).to_dict()
    if micro:
        from edgeq.check.micro import check_micro

        doc["micro"] = check_micro(data, info, strict=False).to_dict()
    try:
        json.dumps(doc, allow_nan=False)
    except ValueError:
        raise ModelError(f"{path}: the model holds a value JSON cannot represent (NaN or infinity)",
                         hint="re-export the model with the TFLite converter") from None
    return doc


__all__ = ["inspect"]
