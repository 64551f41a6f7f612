"""``LoadedModel``: one interface for every model format edgeq reads.

Everything downstream (calibration, conversion, validation) talks to ``LoadedModel`` in
terms of the serving signature's input/output *names*, because the converter reorders
outputs in the .tflite (measured: a two-output model came back as output_1, output_0).
A module of its own so that the loaders of each format (``loading`` for Keras, SavedModel
and .tflite, ``pytorch`` for PyTorch) build the same class without importing each other.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgeq.errors import ModelError
from edgeq.text import first_line

#: Lines TensorFlow puts before the one that says what went wrong.
TF_CONTEXT = ("Graph execution error", "Detected at node")


@dataclass(frozen=True)
class IOSpec:
    """A model input or output as the serving signature names it, with batch 1."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"


@dataclass
class LoadedModel:
    """A model ready to convert: its format, fingerprint, I/O and a float reference."""

    path: Path
    format: str  # "keras", "tf_keras", "saved_model", "tflite", "pytorch"
    sha256: str
    inputs: tuple[IOSpec, ...]
    outputs: tuple[IOSpec, ...]
    keras_model: Any = None
    tflite_bytes: bytes | None = None
    _predict: Callable[[list[np.ndarray]], list[np.ndarray]] | None = field(default=None, repr=False)
    saved_model_dir: Path | None = None  # a SavedModel input: the folder its serving function is re-saved from
    #: The batch size the serving signature accepts, when it is fixed (e.g. 1 for a model
    #: exported with ``input_signature=[tf.TensorSpec([1, ...])]``); None = any batch.
    fixed_batch: int | None = None
    #: Why the model cannot be converted (found while loading), raised by ``export_for_conversion``.
    conversion_blocker: str | None = None
    #: PyTorch models (``edgeq.model.pytorch``): the ``TorchModel``, whether the .tflite's image
    #: inputs are channel-last, and the inputs as data files give them (the model's own layout).
    torch_model: Any = None
    channel_last: bool = False
    data_inputs: tuple[IOSpec, ...] | None = None

    def to_interface(self, xs: list[np.ndarray]) -> list[np.ndarray]:
        """Arrays in the layout of ``data_inputs`` → the layout of ``inputs`` (the .tflite's)."""
        if not self.channel_last:
            return list(xs)
        return [to_interface_layout(x) for x in xs]

    @property
    def user_input_names(self) -> list[str]:
        """Input names as the user knows them (Keras layer names), for .npz keys."""
        if self.keras_model is None:
            return []
        return [getattr(t, "name", "") for t in getattr(self.keras_model, "inputs", [])]

    @property
    def user_output_names(self) -> list[str]:
        """Output names as the user knows them (the Keras layers producing them), for labels."""
        outs = getattr(self.keras_model, "outputs", None) or []
        hist = [getattr(t, "_keras_history", None) for t in outs]
        return [str(getattr(h[0], "name", "")) if h else "" for h in hist]

    @property
    def has_float_reference(self) -> bool:
        return self._predict is not None

    def predict(self, xs: list[np.ndarray], batch: int = 64) -> list[np.ndarray]:
        """Float outputs in signature order for inputs in signature order (any number of samples).

        A signature with a fixed batch is fed exactly that many samples per call (one at a
        time for batch 1), the last chunk padded by repeating its final sample and trimmed.
        """
        if self._predict is None:
            raise ModelError("this model has no float reference (it is already a .tflite)")
        n = len(xs[0])
        step = self.fixed_batch or batch
        chunks: list[list[np.ndarray]] = []
        for start in range(0, n, step):
            part = [x[start : start + step] for x in xs]
            got = len(part[0])
            if self.fixed_batch and got < step:
                part = [np.concatenate([p, np.repeat(p[-1:], step - got, axis=0)]) for p in part]
            chunks.append([y[:got] for y in self._call(part)])
        return [np.concatenate([c[i] for c in chunks]) for i in range(len(self.outputs))]

    def _call(self, xs: list[np.ndarray]) -> list[np.ndarray]:
        """One forward pass; TensorFlow's shape errors become a message naming the shapes."""
        assert self._predict is not None
        try:
            return self._predict(xs)
        except Exception as exc:
            if type(exc).__name__ not in ("InvalidArgumentError", "ValueError", "TypeError"):
                raise
            got = ", ".join(str(tuple(x.shape)) for x in xs)
            want = ", ".join(str((self.fixed_batch or "N", *s.shape[1:])) for s in self.inputs)
            raise ModelError(
                f"{self.path.name} rejected inputs of shape {got} (it expects {want}): "
                f"{type(exc).__name__}: {first_line(exc, skip=TF_CONTEXT)}",
                hint="check that the data matches the model's input shape and dtype",
            ) from None


def sha256_path(path: Path) -> str:
    """SHA-256 of a file, or of a directory's sorted relative paths and contents."""
    h = hashlib.sha256()
    if path.is_file():
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()
    for p in sorted(q for q in path.rglob("*") if q.is_file()):
        h.update(p.relative_to(path).as_posix().encode() + b"\0")
        h.update(p.read_bytes())
    return h.hexdigest()


def to_interface_layout(x: np.ndarray) -> np.ndarray:
    """NCHW → NHWC (rank 4), NCL → NLC (rank 3), anything else unchanged: the rule
    ``to_channel_last_io`` applies to the .tflite's inputs."""
    x = np.asarray(x)
    return np.ascontiguousarray(np.moveaxis(x, 1, -1)) if x.ndim in (3, 4) else x


def to_model_layout(x: np.ndarray) -> np.ndarray:
    """The inverse of ``to_interface_layout``."""
    x = np.asarray(x)
    return np.ascontiguousarray(np.moveaxis(x, -1, 1)) if x.ndim in (3, 4) else x


__all__ = ["IOSpec", "LoadedModel", "TF_CONTEXT", "sha256_path", "to_interface_layout", "to_model_layout"]
