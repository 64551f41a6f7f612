"""Checks that make an untrusted .tflite safe to unpack, allocate by and hand to LiteRT/TFLM.

Why: models come from model zoos and colleagues, and the flatbuffer reader trusts what it
reads: a vector may claim 2^31 entries in a 1 KB file, one table may be referenced a
million times (the object API unpacks every reference anew), an index may point
anywhere, a shape may claim 4 GB. ``bound_tables`` walks the tree lazily first and
refuses more tables than the file's bytes can hold (nothing is allocated from a claimed
count); ``check_model`` then checks the unpacked model for what LiteRT, TFLM and edgeq
index or allocate by: tensor types, shapes, buffer/tensor/opcode/subgraph indices,
control-flow cycles, quantization parameters (finite, positive scales), UTF-8 strings.
Every refusal is a ``ModelError`` naming the tensor or operator; a model that passes can
be allocated by its shapes within the limits below. ``edgeq.model.tflite_info.parse`` runs both.

Limits (environment variables, in bytes; raise one for a model that really needs more):

- ``EDGEQ_MAX_TENSOR_BYTES`` (default 268435456 = 256 MiB): the largest tensor that is
  not a constant (input, output, activation, variable). A constant's bytes are in the
  file, so it is bounded by the file instead: its buffer must hold what its shape says.
- ``EDGEQ_MAX_ACTIVATION_BYTES`` (default 1073741824 = 1 GiB): all non-constant tensors
  of all subgraphs together, the most an interpreter allocates without reusing memory.
- ``MAX_RANK`` (16, fixed) dimensions per tensor (TFLite kernels take at most 6).

Why these figures: a microcontroller has a few MB of RAM, and the largest activations of
edge-Linux vision models are tens of MB (a 1024x1024x3 float32 input is 12 MiB), so no
model edgeq can deploy comes near them, while every host edgeq runs on can hold them.
"""

from __future__ import annotations

import math
import os
from typing import Any

from edgeq.errors import ModelError, UserError

DEFAULT_MAX_TENSOR_BYTES = 256 << 20
DEFAULT_MAX_ACTIVATION_BYTES = 1 << 30
MAX_RANK = 16
#: Bits per element; types whose size varies (strings, handles) count one byte each.
_BITS = {"FLOAT32": 32, "FLOAT16": 16, "INT32": 32, "UINT8": 8, "INT64": 64, "STRING": 8, "BOOL": 8, "INT16": 16,
         "COMPLEX64": 64, "INT8": 8, "FLOAT64": 64, "COMPLEX128": 128, "UINT64": 64, "RESOURCE": 8, "VARIANT": 8,
         "UINT32": 32, "UINT16": 16, "INT4": 4, "BFLOAT16": 16, "INT2": 2, "UINT4": 4}
_UNSIZED = {"STRING", "RESOURCE", "VARIANT"}
_ZERO_POINTS = {"INT8": (-128, 127), "UINT8": (0, 255), "INT16": (-32768, 32767), "UINT16": (0, 65535),
                "INT4": (-8, 7), "UINT4": (0, 15), "INT2": (-2, 1)}
_INT32 = (-(1 << 31), (1 << 31) - 1)
_CALLERS = ("IF", "WHILE", "CALL_ONCE")  # without their options TFLite calls subgraph 0
MALFORMED = "the file is corrupt or was written by a broken tool: re-export the model with the TFLite converter"

#: (index, name, shape, dtype, scale, zero point, channels, constant): ``TensorInfo``'s fields.
TensorFields = tuple[int, str, tuple[int, ...], str, "float | None", "int | None", int, bool]


def limit(name: str, default: int) -> int:
    """A byte limit from the environment variable ``name`` (a positive integer), else ``default``."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        value = 0
    if value <= 0:
        raise UserError(f"{name}={raw!r} is not a positive number of bytes", hint=f"e.g. {name}={default}")
    return value


def max_tensor_bytes() -> int:
    return limit("EDGEQ_MAX_TENSOR_BYTES", DEFAULT_MAX_TENSOR_BYTES)


def max_activation_bytes() -> int:
    return limit("EDGEQ_MAX_ACTIVATION_BYTES", DEFAULT_MAX_ACTIVATION_BYTES)


def enum_names(enum_cls: type) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_") and isinstance(v, int)}


def _refuse(message: str, hint: str = MALFORMED) -> None:
    raise ModelError(message, hint=hint)


def bound_tables(model: Any, size: int) -> None:
    """Refuse a flatbuffer (``schema.Model``, read lazily) with more tables than ``size`` bytes hold.

    Each table takes at least 4 bytes and is referenced once in a file a builder wrote,
    so a tree with more than ``size / 4`` tables shares tables by reference, which the
    object API would unpack once per reference (a 1 MB file could expand to billions of
    objects). Reads only counts, and uses none before checking it fits in the file.
    """
    budget = [size // 4 + 64]

    def spend(n: int) -> int:
        budget[0] -= n
        if budget[0] < 0:
            _refuse(f"the flatbuffer refers to more tables than a {size:,}-byte file can hold (its tables are shared "
                    "by reference, which no TFLite writer does)")
        return n

    def vector(n: int) -> int:
        if n < 0 or 4 * n > size:
            _refuse(f"a vector in the flatbuffer claims {n:,} entries, more than the {size:,}-byte file can hold")
        return spend(n)

    spend(1)
    for length in (model.OperatorCodesLength, model.BuffersLength, model.MetadataLength,
                   model.ExternalBufferGroupsLength, model.ExternalBuffersLength):
        vector(length())
    for i in range(vector(model.SignatureDefsLength())):
        sig = model.SignatureDefs(i)
        vector(sig.InputsLength()) + vector(sig.OutputsLength())
    for i in range(vector(model.SubgraphsLength())):
        sg = model.Subgraphs(i)
        for j in range(vector(sg.TensorsLength())):
            t = sg.Tensors(j)
            if t.Quantization() is not None:
                spend(2)  # the parameters and their details union
            sparsity = t.Sparsity()
            if sparsity is not None:
                spend(1 + 2 * vector(sparsity.DimMetadataLength()))  # each with two index-vector unions
            vector(t.VariantTensorsLength())
        for j in range(vector(sg.OperatorsLength())):
            op = sg.Operators(j)
            spend(int(op.BuiltinOptionsType() != 0) + int(op.BuiltinOptions2Type() != 0))


def text(value: Any, what: str) -> str:
    """A flatbuffer string as ``str``; a ModelError naming ``what`` when it is not UTF-8."""
    if value is None:
        return ""
    try:
        return bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        raise ModelError(f"{what} is not UTF-8 text", hint=MALFORMED) from None


def _index(value: Any, count: int, what: str, kind: str, *, optional: bool = False) -> int:
    i = int(value)
    if not (0 <= i < count or (optional and i == -1)):
        _refuse(f"{what} refers to {kind} {i}, but there {'is' if count == 1 else 'are'} {count} "
                f"({kind} indices run from 0 to {count - 1}{', or -1 for an absent optional input' if optional else ''})")
    return i


class _Checker:
    """The checks of one unpacked model (``schema.ModelT``), tensor by tensor and op by op."""

    def __init__(self, model: Any, size: int, schema: Any) -> None:
        self.model, self.size = model, size
        self.types = enum_names(schema.TensorType)
        self.buffers = model.buffers or []
        names = [text(m.name, f"the name of metadata entry {i}") for i, m in enumerate(model.metadata or []) if m]
        self.compressed = "COMPRESSION_METADATA" in names  # TFLM compression: buffers smaller than shapes
        self.stored = [self._stored(i, b) for i, b in enumerate(self.buffers)]
        self.activation_bytes = 0
        self.limit = max_tensor_bytes()

    def _stored(self, i: int, buf: Any) -> int:
        """Bytes buffer ``i`` holds: inline data, or a range of the file beyond the flatbuffer."""
        if buf is None:
            _refuse(f"buffer {i} is missing from the flatbuffer")
        inline = len(buf.data) if buf.data is not None else 0
        offset, size = int(buf.offset or 0), int(buf.size or 0)
        if offset > 1 and offset + size > self.size:  # offset 0/1: no external data (schema.fbs)
            _refuse(f"buffer {i} points at bytes {offset:,}..{offset + size:,}, beyond the end of the "
                    f"{self.size:,}-byte file", hint="the model file is truncated or corrupt: copy it again")
        return inline or (size if offset > 1 else 0)

    def tensor(self, t: Any, index: int, subgraph: int) -> TensorFields:
        where = f"tensor {index} of subgraph {subgraph}"
        if t is None:
            _refuse(f"{where} is missing from the flatbuffer")
        name = text(t.name, f"the name of {where}")
        label = f"tensor {name!r} ({where})"
        dtype = self.types.get(int(t.type))
        if dtype is None:
            _refuse(f"{label} has tensor type {int(t.type)}, which the TFLite schema does not define")
        shape = tuple(int(d) for d in t.shape) if t.shape is not None else ()
        if len(shape) > MAX_RANK:
            _refuse(f"{label} has {len(shape)} dimensions; edgeq reads at most {MAX_RANK}")
        if any(d < 0 for d in shape):
            _refuse(f"{label} has a negative dimension in its shape {list(shape)}")
        nbytes = (math.prod(shape) * _BITS.get(dtype, 64) + 7) // 8
        buffer = _index(t.buffer, len(self.buffers), label, "buffer")
        stored = self.stored[buffer]
        if stored and dtype not in _UNSIZED and t.sparsity is None and not self.compressed and stored < nbytes:
            _refuse(f"{label} is a constant of shape {list(shape)} ({nbytes:,} bytes of {dtype.lower()}), "
                    f"but its buffer {buffer} holds {stored:,} bytes")
        if not stored:
            if nbytes > self.limit:
                raise ModelError(
                    f"{label} has shape {list(shape)}: {nbytes:,} bytes of {dtype.lower()}, more than the limit of "
                    f"{self.limit:,} bytes per tensor (EDGEQ_MAX_TENSOR_BYTES)",
                    hint="no microcontroller or edge model has a tensor this large, so the file is probably malformed; "
                    "if the model is real, raise the limit: EDGEQ_MAX_TENSOR_BYTES=<bytes>")
            self.activation_bytes += nbytes
        scale, zero_point, channels = self._quantization(t.quantization, label, dtype, shape)
        return (index, name, shape, dtype, scale, zero_point, channels, bool(stored))

    @staticmethod
    def _quantization(q: Any, label: str, dtype: str, shape: tuple[int, ...]) -> tuple[float | None, int | None, int]:
        """(first scale, first zero point, channels) after checking what LiteRT and TFLM rely on."""
        if q is None or q.scale is None or len(q.scale) == 0:
            return None, None, 0
        import numpy as np

        scales = np.asarray(q.scale, dtype=np.float64)
        bad = scales[~(np.isfinite(scales) & (scales > 0))]
        if bad.size:
            _refuse(f"{label} has quantization scale {float(bad[0])!r}: scales must be finite and positive")
        zps = np.asarray(q.zeroPoint if q.zeroPoint is not None else (), dtype=np.int64)
        if zps.size != scales.size:
            _refuse(f"{label} has {scales.size} quantization scale(s) but {zps.size} zero point(s)")
        lo, hi = _ZERO_POINTS.get(dtype, _INT32)
        if int(zps.min()) < lo or int(zps.max()) > hi:
            _refuse(f"{label} has a zero point outside {lo}..{hi}, the range of {dtype.lower()}")
        channels = 0
        if scales.size > 1:
            dim = int(q.quantizedDimension)
            if not 0 <= dim < len(shape) or shape[dim] != scales.size:
                _refuse(f"{label} has {scales.size} per-channel scales along dimension {dim}, "
                        f"which its shape {list(shape)} does not have")
            channels = int(scales.size)
        return float(q.scale[0]), int(zps[0]), channels

    def operators(self, sg: Any, k: int, tensors: int, opcodes: list[str]) -> set[int]:
        """Check subgraph ``k``'s operators; return the subgraphs they call."""
        calls: set[int] = set()
        for j, op in enumerate(sg.operators or []):
            if op is None:
                _refuse(f"operator {j} of subgraph {k} is missing from the flatbuffer")
            name = opcodes[_index(op.opcodeIndex, len(opcodes), f"operator {j} of subgraph {k}", "operator code")]
            what = f"operator {j} ({name}) of subgraph {k}"
            offset, size = int(op.largeCustomOptionsOffset or 0), int(op.largeCustomOptionsSize or 0)
            if offset > 1 and offset + size > self.size:  # options stored beyond the flatbuffer (> 2 GB models)
                _refuse(f"{what} has custom options at bytes {offset:,}..{offset + size:,}, beyond the end of the "
                        f"{self.size:,}-byte file", hint="the model file is truncated or corrupt: copy it again")
            for i in op.inputs if op.inputs is not None else ():
                _index(i, tensors, f"an input of {what}", "tensor", optional=True)
            for key in ("outputs", "intermediates"):
                for i in getattr(op, key) if getattr(op, key) is not None else ():
                    _index(i, tensors, f"an {key[:-1]} of {what}", "tensor")
            called = [int(v) for opts in (op.builtinOptions, op.builtinOptions2) if opts is not None
                      for attr, value in vars(opts).items() if "ubgraph" in attr and value is not None
                      for v in (value if hasattr(value, "__len__") else (value,))]
            for v in called or ([0] if name in _CALLERS else []):
                calls.add(_index(v, len(self.model.subgraphs), f"{what} (control flow)", "subgraph"))
        return calls


def _opcodes(model: Any, schema: Any) -> list[tuple[str, int, bool]]:
    """(name, version, custom) of each operator code, builtin codes checked against the schema."""
    names = enum_names(schema.BuiltinOperator)
    ops = []
    for i, code in enumerate(model.operatorCodes or []):
        if code is None:
            _refuse(f"operator code {i} is missing from the flatbuffer")
        builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
        name = names.get(builtin)
        if name is None:
            _refuse(f"operator code {i} is builtin operator {builtin}, which this TFLite schema does not define",
                    hint="the model needs a newer LiteRT and TFLM than the ones installed here, or the file is corrupt")
        if int(code.version) < 1:
            _refuse(f"operator code {i} ({name}) has version {int(code.version)}; versions start at 1")
        custom = name == "CUSTOM"
        if custom:
            name = text(code.customCode, f"the custom code of operator code {i}")
            if not name:
                _refuse(f"operator code {i} is a custom operator without a name")
        ops.append((name, int(code.version), custom))
    return ops


def _acyclic(calls: dict[int, set[int]]) -> None:
    """Refuse subgraphs that call themselves (TFLite would recurse until its stack overflows)."""
    state: dict[int, int] = {}  # 1: on the current path, 2: done
    for start in calls:
        if start in state:
            continue
        state[start] = 1
        stack = [(start, iter(sorted(calls[start])))]
        while stack:
            node, pending = stack[-1]
            nxt = next(pending, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                _refuse(f"subgraph {nxt} calls itself through control flow (IF/WHILE/CALL): it would never finish")
            elif nxt not in state:
                state[nxt] = 1
                stack.append((nxt, iter(sorted(calls.get(nxt, ())))))


def check_model(model: Any, size: int, schema: Any) -> tuple[list[tuple[str, int, bool]], list[TensorFields], list[int]]:
    """Check an unpacked ``schema.ModelT`` of ``size`` bytes; return its operator codes
    (name, version, custom), subgraph 0's tensors and how many operators use each code."""
    if not model.subgraphs:
        raise ModelError("the .tflite model has no subgraphs")
    checker = _Checker(model, size, schema)
    ops = _opcodes(model, schema)
    counts = [0] * len(ops)
    calls: dict[int, set[int]] = {}
    main: list[TensorFields] = []
    for k, sg in enumerate(model.subgraphs):
        if sg is None:
            _refuse(f"subgraph {k} is missing from the flatbuffer")
        text(sg.name, f"the name of subgraph {k}")
        tensors = [checker.tensor(t, i, k) for i, t in enumerate(sg.tensors or [])]
        for key in ("inputs", "outputs"):
            for i in getattr(sg, key) if getattr(sg, key) is not None else ():
                _index(i, len(tensors), f"subgraph {k}'s {key[:-1]} list", "tensor")
        calls[k] = checker.operators(sg, k, len(tensors), [op[0] for op in ops])
        for op in sg.operators or []:
            counts[int(op.opcodeIndex)] += 1
        main = main if k else tensors
    for key in ("inputs", "outputs"):
        if getattr(model.subgraphs[0], key) is None or not len(getattr(model.subgraphs[0], key)):
            _refuse(f"the model's main subgraph has no {key}: there is nothing to feed or read")
    _acyclic(calls)
    total, allowed = checker.activation_bytes, max_activation_bytes()
    if total > allowed:
        _refuse(f"the model's non-constant tensors need {total:,} bytes together, more than the limit of {allowed:,} "
                "(EDGEQ_MAX_ACTIVATION_BYTES)",
                hint="no microcontroller or edge model needs this much, so the file is probably malformed; "
                "if the model is real, raise the limit: EDGEQ_MAX_ACTIVATION_BYTES=<bytes>")
    for i, sig in enumerate(model.signatureDefs or []):
        if sig is None:
            _refuse(f"signature {i} is missing from the flatbuffer")
        what = f"signature {text(sig.signatureKey, f'the key of signature {i}')!r}"
        k = _index(sig.subgraphIndex, len(model.subgraphs), what, "subgraph")
        for entry in [*(sig.inputs or []), *(sig.outputs or [])]:
            _index(entry.tensorIndex, len(model.subgraphs[k].tensors or []),
                   f"{what} entry {text(entry.name, f'an entry name of {what}')!r}", "tensor")
    for i, meta in enumerate(model.metadata or []):
        _index(meta.buffer, len(checker.buffers), f"metadata entry {i}", "buffer")
    for b in model.metadataBuffer if model.metadataBuffer is not None else ():
        _index(b, len(checker.buffers), "the metadata buffer list", "buffer")
    text(model.description, "the model description")
    return ops, main, counts


__all__ = ["DEFAULT_MAX_TENSOR_BYTES", "DEFAULT_MAX_ACTIVATION_BYTES", "MAX_RANK", "MALFORMED", "limit",
           "max_tensor_bytes", "max_activation_bytes", "bound_tables", "check_model", "text", "enum_names"]
