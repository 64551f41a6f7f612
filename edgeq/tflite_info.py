"""Read a .tflite flatbuffer: ops, op versions, tensors, quantization parameters.

Parsing uses the schema that ships with LiteRT (``ai_edge_litert.schema_py_generated``),
never a hand-written reader, so new schema fields do not silently break us. The
flatbuffer library trusts its input, so we check the identifier and every offset we
follow, and turn anything that still goes wrong into a ``ModelError``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeq.errors import ModelError

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

        return np.dtype(self.dtype.lower())

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


def _enum_names(enum_cls: type) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_") and isinstance(v, int)}


def parse(data: bytes) -> ModelInfo:
    """Parse .tflite bytes; raise ``ModelError`` for anything that is not a valid model."""
    if len(data) < 16 or data[4:8] != b"TFL3":
        raise ModelError(
            "this is not a TensorFlow Lite model (no 'TFL3' flatbuffer identifier)",
            hint="pass a .tflite produced by the TFLite converter, or a Keras/SavedModel model to convert",
        )
    try:
        return _parse(data)
    except ModelError:
        raise
    except Exception as exc:  # the generated reader raises IndexError/struct.error on bad offsets
        raise ModelError(
            f"the .tflite file is corrupt or truncated ({type(exc).__name__}: {exc})",
            hint="re-export the model; check the file was copied completely",
        ) from None


def _parse(data: bytes) -> ModelInfo:
    from ai_edge_litert import schema_py_generated as schema

    root = int.from_bytes(data[0:4], "little")
    if root >= len(data):
        raise ModelError("the .tflite file is truncated (root table beyond end of file)")
    model = schema.ModelT.InitFromPackedBuf(data, 0)
    if not model.subgraphs:
        raise ModelError("the .tflite model has no subgraphs")
    op_names = _enum_names(schema.BuiltinOperator)
    type_names = _enum_names(schema.TensorType)

    counts: dict[int, int] = {}
    for sg in model.subgraphs:
        for op in sg.operators or []:
            counts[op.opcodeIndex] = counts.get(op.opcodeIndex, 0) + 1
    ops: list[OpInfo] = []
    for i, code in enumerate(model.operatorCodes or []):
        builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
        name = op_names.get(builtin, f"UNKNOWN_{builtin}")
        custom = name == "CUSTOM"
        if custom:
            name = (code.customCode or b"").decode("utf-8", "replace")
        ops.append(OpInfo(name=name, version=int(code.version), custom=custom, count=counts.get(i, 0)))

    buffers = model.buffers or []
    main = model.subgraphs[0]
    tensors: list[TensorInfo] = []
    float_names: list[str] = []
    for idx, t in enumerate(main.tensors or []):
        dtype = type_names.get(int(t.type), f"TYPE_{t.type}")
        q = t.quantization
        scale = zp = None
        per_channel = 0
        if q is not None and q.scale is not None and len(q.scale) > 0:
            scale = float(q.scale[0])
            zp = int(q.zeroPoint[0]) if q.zeroPoint is not None and len(q.zeroPoint) else 0
            per_channel = len(q.scale) if len(q.scale) > 1 else 0
        buf = buffers[t.buffer] if 0 <= t.buffer < len(buffers) else None
        constant = bool(buf is not None and ((buf.data is not None and len(buf.data)) or (buf.size or 0) > 0))
        name = (t.name or b"").decode("utf-8", "replace")
        shape = tuple(int(d) for d in (t.shape if t.shape is not None else ()))
        tensors.append(TensorInfo(idx, name, shape, dtype, scale, zp, per_channel, constant))
        if dtype not in _INTEGER_TYPES and dtype != "RESOURCE":
            float_names.append(name)

    def pick(indices: Any) -> tuple[TensorInfo, ...]:
        return tuple(tensors[int(i)] for i in (indices if indices is not None else ()))

    return ModelInfo(
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        schema_version=int(model.version),
        description=(model.description or b"").decode("utf-8", "replace"),
        inputs=pick(main.inputs),
        outputs=pick(main.outputs),
        ops=tuple(ops),
        tensors=tuple(tensors),
        subgraphs=len(model.subgraphs),
        float_tensors=tuple(float_names),
    )


def read_tflite(path: str | Path) -> tuple[bytes, ModelInfo]:
    """Read and parse a .tflite file, with errors that name the file."""
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"no such model file: {p}", hint="check the path")
    data = p.read_bytes()
    try:
        return data, parse(data)
    except ModelError as exc:
        raise ModelError(f"{p}: {exc.message}", exc.hint) from None


def inspect(path: str | Path, *, micro: bool = True) -> dict[str, Any]:
    """Describe a .tflite: tensors, ops, I/O, integer-ness, and (with ``micro``) TFLM support and arena.

    Returns a plain dict because it is a report, not something code builds on; code that
    needs the structure calls ``read_tflite``.
    """
    data, info = read_tflite(path)
    doc: dict[str, Any] = {"schema_version": 1, "kind": "inspect", "path": str(path), **info.to_dict()}
    if micro:
        from edgeq.micro import check_micro

        doc["micro"] = check_micro(data, info, strict=False).to_dict()
    return doc
