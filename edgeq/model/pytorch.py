"""A PyTorch model (``model.pt2`` or ``pkg.module:factory``) as a ``LoadedModel``.

Why an adapter, not a second pipeline: everything after loading (data checks, validation
against the float model, the TFLM check, memory plan, firmware) works on the .tflite's
interface, so a PyTorch model presents that interface. With the default channel-last
layout, rank-3 and rank-4 inputs appear as NLC / NHWC (what litert-torch's
``to_channel_last_io`` gives the .tflite: no TRANSPOSE before the first op, and what a camera
or a microphone buffer already is); the float reference moves the axes back before calling
the PyTorch model. Data files stay in the model's own layout (NCHW, as PyTorch users have
them): they are checked against the PyTorch shapes and turned into the interface layout
once, as they are read (``LoadedModel.data_inputs`` / ``to_interface``). ``--layout nchw``
keeps PyTorch's layout at the interface too.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import numpy as np

from edgeq.errors import UserError
from edgeq.model.loaded import IOSpec, LoadedModel, sha256_path, to_interface_layout, to_model_layout

LAYOUTS = ("nhwc", "nchw")
_FACTORY = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")


def is_pytorch(spec: str | Path) -> bool:
    """A ``.pt2`` file, or ``pkg.module:factory`` (when no such file exists)."""
    text = str(spec)
    return text.lower().endswith(".pt2") or (bool(_FACTORY.match(text)) and not Path(text).exists())


def _spec(t: Any, channel_last: bool) -> IOSpec:
    shape = tuple(1 if d is None else int(d) for d in t.shape)
    if channel_last and len(shape) in (3, 4):
        shape = (shape[0], *shape[2:], shape[1])
    return IOSpec(t.name, (1, *shape[1:]), t.dtype)


def load_pytorch(spec: str | Path, *, layout: str = "nhwc") -> LoadedModel:
    """Load ``spec`` with torch (the ``edgeq[torch]`` extra); the interface in ``layout``."""
    from edgeq.model.torch_source import load_torch

    if layout not in LAYOUTS:
        raise UserError(f"--layout must be nhwc or nchw, not {layout!r}",
                        hint="nhwc (default) makes image inputs channel-last, as firmware buffers are; nchw keeps PyTorch's")
    text = str(spec)
    tm = load_torch(text)
    channel_last = layout == "nhwc"
    path = Path(text)
    digest = sha256_path(path) if path.is_file() else hashlib.sha256(text.encode()).hexdigest()
    inputs = tuple(_spec(t, channel_last) for t in tm.inputs)
    outputs = tuple(_spec(t, False) for t in tm.outputs)  # outputs keep the model's layout
    to_model = to_model_layout if channel_last else (lambda x: np.asarray(x))

    def predict(xs: list[np.ndarray]) -> list[np.ndarray]:
        return tm.predict([to_model(x) for x in xs])

    return LoadedModel(path, "pytorch", digest, inputs, outputs, _predict=predict, fixed_batch=None,
                       torch_model=tm, channel_last=channel_last,
                       data_inputs=tuple(_spec(t, False) for t in tm.inputs))


__all__ = ["LAYOUTS", "is_pytorch", "load_pytorch", "to_interface_layout", "to_model_layout"]
