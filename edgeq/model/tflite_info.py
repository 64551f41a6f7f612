"""Read a .tflite flatbuffer: ops, op versions, tensors, quantization parameters.

Parsing uses the schema that ships with LiteRT (``ai_edge_litert.schema_py_generated``),
never a hand-written reader, so new schema fields do not silently break us. The file is
untrusted and the flatbuffer reader trusts its input, so ``parse`` bounds the tree before
unpacking it and checks every index, type, shape and quantization parameter that LiteRT,
TFLM or edgeq rely on (``edgeq.model.tflite_checks``, which also documents the size limits
``EDGEQ_MAX_TENSOR_BYTES`` and ``EDGEQ_MAX_ACTIVATION_BYTES``); whatever still goes wrong
becomes a ``ModelError``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeq.errors import EdgeqError, ModelError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

_INTEGER_TYPES = {"INT8", "UINT8", "INT16", "INT32", "INT64", "BOOL", "INT4", "UINT16", "UINT32"}


@dataclass(frozen=True)
class TensorInfo:
    """One tensor as firmware sees it: dtype, shape and (per-tensor) quantization."""

    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: float | None
    zero_point: int | None
    per_channel: int = 0  # number of channels when quantized per channel, else 0
    is_constant: bool = False

    @property
    def numpy_dtype(self) -> np.dtype:
        import numpy as np  # lazily: importing this module (the CLI does) must not load numpy

        try:
            return np.dtype(self.dtype.lower())
        except TypeError:
            raise ModelError(f"tensor {self.name!r} has type {self.dtype}, which edgeq cannot feed or read",
                             hint="give the model integer or float inputs and outputs") from None

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "name": self.name,
            "shape": list(self.shape),
            "dtype": self.dtype.lower(),
            "scale": self.scale,
            "zero_point": self.zero_point,
            "per_channel": self.per_channel,
            "constant": self.is_constant,
        }


@dataclass(frozen=True)
class OpInfo:
    """An operator code used by the model: builtin name (or custom code) and version."""

    name: str
    version: int
    custom: bool = False
    count: int = 0


@dataclass(frozen=True)
class ModelInfo:
    """Everything edgeq needs to know about a .tflite without running it."""

    size_bytes: int
    sha256: str
    schema_version: int
    description: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    ops: tuple[OpInfo, ...]
    tensors: tuple[TensorInfo, ...]
    subgraphs: int
    float_tensors: tuple[str, ...] = field(default=())

    @property
    def op_names(self) -> tuple[str, ...]:
        """Distinct op names, sorted: the order firmware resolvers register them in."""
        return tuple(sorted({op.name for op in self.ops}))

    @property
    def fully_integer(self) -> bool:
        return not self.float_tensors

    def to_dict(self) -> dict[str, Any]:
        return {
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
            "schema_version": self.schema_version,
            "subgraphs": self.subgraphs,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "ops": [{"name": o.name, "version": o.version, "custom": o.custom, "count": o.count} for o in self.ops],
            "tensors": [t.to_dict() for t in self.tensors],
            "fully_integer": self.fully_integer,
            "float_tensors": list(self.float_tensors),
        }


def parse(data: bytes) -> ModelInfo:
    """Parse .tflite bytes; raise ``ModelError`` for anything that is not a valid model."""
    if len(data) < 16 or data[4:8] != b"TFL3":
        raise ModelError(
            "this is not a TensorFlow Lite model (no 'TFL3' flatbuffer identifier)",
            hint="pass a .tflite produced by the TFLite converter, or a Keras/SavedModel model to convert",
        )
    try:
        return _parse(bytes(data))
    except EdgeqError:  # a refusal with its own message (or a bad limit setting)
        raise
    except Exception as exc:  # the generated reader raises IndexError/struct.error/ValueError on bad offsets
        detail = (str(exc).strip().splitlines() or [""])[0][:200]
        raise ModelError(
            f"the .tflite file is corrupt or truncated ({type(exc).__name__}: {detail})",
            hint="re-export the model; check the file was copied completely",
        ) from None


def _parse(data: bytes) -> ModelInfo:
    from ai_edge_litert import schema_py_generated as schema

    from edgeq.model.tflite_checks import bound_tables, check_model, text

    root = int.from_bytes(data[0:4], "little")
    if root + 4 > len(data):
        raise ModelError("the .tflite file is truncated (root table beyond end of file)")
    lazy = schema.Model.GetRootAs(data, 0)
    bound_tables(lazy, len(data))  # before the object API unpacks anything
    model = schema.ModelT.InitFromObj(lazy)
    opcodes, fields, counts = check_model(model, len(data), schema)
    main = [TensorInfo(*f) for f in fields]
    sg0 = model.subgraphs[0]
    return ModelInfo(
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        schema_version=int(model.version),
        description=text(model.description, "the model description"),
        inputs=tuple(main[int(i)] for i in (sg0.inputs if sg0.inputs is not None else ())),
        outputs=tuple(main[int(i)] for i in (sg0.outputs if sg0.outputs is not None else ())),
        ops=tuple(OpInfo(name, version, custom, counts[i]) for i, (name, version, custom) in enumerate(opcodes)),
        tensors=tuple(main),
        subgraphs=len(model.subgraphs),
        float_tensors=tuple(t.name for t in main if t.dtype not in _INTEGER_TYPES and t.dtype != "RESOURCE"),
    )


def read_tflite(path: str | Path) -> tuple[bytes, ModelInfo]:
    """Read and parse a .tflite file, with errors that name the file."""
    from edgeq.files import MAX_TFLITE_BYTES, regular_file

    p = regular_file(path, "model file", max_bytes=MAX_TFLITE_BYTES)
    data = p.read_bytes()
    try:
        return data, parse(data)
    except ModelError as exc:
        raise ModelError(f"{p}: {exc.message}", exc.hint) from None
