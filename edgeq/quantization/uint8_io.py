"""Give a full-integer .tflite with an int8 interface a uint8 one, by editing the flatbuffer.

Why: edgeq's default interface is ``--io uint8`` (camera pixels and most sensor codecs are
bytes), and TF's converter gives Keras models that with ``inference_input_type=tf.uint8``.
Converters without that switch (litert-torch: PyTorch models always come out int8 in and
out) need it done afterwards, and the ready-made ways fail: TF's ``modify_model_interface``
leaves such models int8, and a uint8 wrapper built in the framework adds CAST/MUL ops on
float tensors that TFLM refuses. So this module adds what TF's converter itself adds for
a Keras uint8 model: one QUANTIZE op (uint8 -> int8) per input as the first operators and
one (int8 -> uint8) per output as the last, with the same scale and the zero point moved
by 128. That requantization has an effective scale of exactly 1, so it is exact in LiteRT
and TFLM alike, and the edited model computes what TF's uint8 conversion computes.

The edit goes through the schema's object API (``ai_edge_litert.schema_py_generated``),
never through hand-written offsets. Packing an unmodified TF-converted model that way
gives back the very same bytes (measured with TF 2.21; a litert-torch model comes back
with the same object tree, 64 bytes larger in layout). Two things the generated Python
code would lose are handled: the buffers keep the alignment they share in the input, up
to 16 bytes (the generated code ignores the schema's ``force_align: 16`` and aligns to
4, as TF's converter itself does, but a model realigned for an NPU or DMA must stay
aligned; TFLM kernels read int32 biases in place), and ops whose options this schema
does not know are refused, since the object API would silently drop them.
"""

from __future__ import annotations

import math
from typing import Any

from edgeq.errors import ModelError

#: The flatbuffer's signed 32-bit offsets; files above this use the external-buffer layout.
MAX_BYTES = 2 << 30
#: What TF's converter emits for QUANTIZE between uint8 and int8 (op_version.cc: v2 is for
#: int16 output, v3 per-channel, v4 int4); LiteRT and TFLM register v1.
QUANTIZE_VERSION = 1
#: TFLM's offline memory plan (micro_allocation_info.cc): int32 [version, subgraphs,
#: n_offsets, offset...], one offset per tensor of every subgraph in order; -1 = online.
OFFLINE_PLAN = b"OfflineMemoryAllocation"
ONLINE = -1
#: The most alignment buffers keep (the schema's ``force_align``).
BUFFER_ALIGNMENT = 16
_CALLERS = ("IF", "WHILE", "CALL_ONCE", "CALL")  # without options these call subgraph 0
_INPUT_HINT = "keep the converter's interface with --io int8, or convert with full-integer quantization"
_MALFORMED = "the file is corrupt or was written by a broken tool: re-export the model with its converter"


def _schema() -> Any:
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:  # pragma: no cover - a dependency of edgeq
        raise ModelError("the TFLite schema (ai-edge-litert) is not installed",
                         hint="pip install ai-edge-litert") from None
    return schema


def with_uint8_io(tflite: bytes, *, inputs: bool = True, outputs: bool = True) -> bytes:
    """Return ``tflite`` with uint8 instead of int8 inputs (``inputs``) and outputs (``outputs``).

    For each int8, per-tensor quantized input of the main subgraph (subgraph 0) a uint8
    tensor is added (same shape and shape signature, same scale, zero point + 128) with a
    QUANTIZE op feeding the existing int8 tensor as one of the first operators; it becomes
    the subgraph input. Outputs likewise, with QUANTIZE ops as the last operators. The
    interface tensors keep the names users see (the internal int8 tensors become
    ``<name>_int8``) and signature_defs point at the new tensors, so a signature runner
    works with the same keys.

    Index stability (what later edits rely on): existing tensors, buffers, operator codes
    and metadata keep their indices; new tensors, their (empty) buffers and a QUANTIZE
    operator code if none exists are appended at the end, and an ``OfflineMemoryAllocation``
    plan gets ``-1`` (planned at run time) for the new tensors, inserted after subgraph 0's
    block. Other metadata is copied byte for byte, ``min_runtime_version`` included (an
    informational string neither runtime reads; QUANTIZE v1 needs 1.14.0, as do the int8
    versions of every arithmetic kernel, so only a model of pure data movement is understated).

    Models whose interface is already uint8 (or with both flags false) come back as the
    very same bytes; an interface mixing uint8 and int8 gets only the int8 tensors edited.
    The output is a function of the input bytes alone (deterministic). Raises
    ``ModelError`` for anything that cannot be converted exactly: a float, int16 or other
    interface, per-channel or missing quantization, an input that is also an output,
    entry points other than subgraph 0, files over 2 GiB or with external buffers.
    """
    data, schema, model = _read(tflite)
    main = model.subgraphs[0]
    ins = _to_convert(main, "input", schema) if inputs else []
    outs = _to_convert(main, "output", schema) if outputs else []
    if not ins and not outs:
        return data  # nothing to edit: no reason to refuse what would pass through untouched
    alignment = _refuse_lossy_round_trip(model, data)
    _refuse_other_entry_points(model, schema)
    _refuse_overlap(main, ins, outs)
    plan = _offline_plan(model)
    n_before = len(main.tensors)
    code = _quantize_opcode(model, schema)
    names = {t.name for t in main.tensors if t.name is not None}
    front, back, new_in, new_out = [], [], {}, {}
    for old in ins:
        new = _add_interface_tensor(model, main, old, names, schema)
        front.append(_quantize_op(schema, code, new, old))
        new_in[old] = new
    for old in outs:
        new = _add_interface_tensor(model, main, old, names, schema)
        back.append(_quantize_op(schema, code, old, new))
        new_out[old] = new
    main.operators = front + list(main.operators or []) + back
    main.inputs = [new_in.get(i, i) for i in _ints(main.inputs)]
    main.outputs = [new_out.get(i, i) for i in _ints(main.outputs)]
    for sig in model.signatureDefs or []:
        for entry in sig.inputs or []:
            entry.tensorIndex = new_in.get(int(entry.tensorIndex), int(entry.tensorIndex))
        for entry in sig.outputs or []:
            entry.tensorIndex = new_out.get(int(entry.tensorIndex), int(entry.tensorIndex))
    if plan is not None:
        _extend_plan(model, plan, n_before, len(main.tensors) - n_before)
    return _pack(model, schema, alignment)


def repack(tflite: bytes) -> bytes:
    """Unpack and pack ``tflite`` unchanged: the round trip ``with_uint8_io`` makes around its
    edit, public so that it can be checked on its own (same bytes for TF-converted models)."""
    data, schema, model = _read(tflite)
    return _pack(model, schema, _refuse_lossy_round_trip(model, data))


def _read(tflite: bytes) -> tuple[bytes, Any, Any]:
    """The bytes, the schema module and the unpacked model.

    Callers hand in a model ``edgeq.model.tflite_info.parse`` accepted (it bounds the tree before
    the object API allocates by it); whatever the reader still trips on becomes a ModelError.
    """
    data = bytes(tflite)
    schema = _schema()
    return data, schema, _unpack(data, schema)


def _unpack(data: bytes, schema: Any) -> Any:
    if len(data) > MAX_BYTES:
        raise ModelError(f"the model is {len(data):,} bytes; uint8 I/O editing handles models up to 2 GiB",
                         hint="keep the converter's int8 interface with --io int8")
    if len(data) < 16 or data[4:8] != b"TFL3":
        raise ModelError("this is not a TensorFlow Lite model (no 'TFL3' flatbuffer identifier)", hint=_MALFORMED)
    try:
        model = schema.ModelT.InitFromPackedBuf(data, 0)
    except Exception as exc:  # the flatbuffer reader trusts its input: any error means a broken file
        raise ModelError(f"the .tflite flatbuffer cannot be read ({type(exc).__name__})", hint=_MALFORMED) from None
    if not model.subgraphs or model.subgraphs[0].tensors is None or not model.buffers:
        raise ModelError("the .tflite has no main subgraph with tensors, or no buffers", hint=_MALFORMED)
    return model


def _refuse_lossy_round_trip(model: Any, data: bytes) -> int:
    """Refuse what the object API would not write back unchanged, or what lives outside the
    file; return the buffer alignment to keep."""
    if model.externalBuffers or model.externalBufferGroups or any(
            t.externalBuffer for sg in model.subgraphs for t in sg.tensors or []):
        raise ModelError("the .tflite keeps tensor data in external buffers, which uint8 I/O editing does not handle",
                         hint="convert the model into one self-contained .tflite")
    if any(b.offset or b.size for b in model.buffers):
        raise ModelError("the .tflite stores buffers after the flatbuffer (the >2 GiB layout), which uint8 I/O "
                         "editing does not handle", hint="keep the converter's int8 interface with --io int8")
    for si, sg in enumerate(model.subgraphs):
        for oi, op in enumerate(sg.operators or []):
            unknown = (op.builtinOptionsType and op.builtinOptions is None) or (
                op.builtinOptions2Type and op.builtinOptions2 is None)
            if unknown or op.largeCustomOptionsOffset or op.largeCustomOptionsSize:
                raise ModelError(f"operator {oi} of subgraph {si} has options this TFLite schema cannot copy "
                                 "(a newer converter, or the >2 GiB layout)",
                                 hint="upgrade ai-edge-litert, or keep the converter's int8 interface with --io int8")
    return _alignment(model, data)


def _subgraphs_called(model: Any, schema: Any) -> set[int]:
    """Every subgraph index an operator calls: all ``*subgraph*`` option fields, so new
    control-flow ops are covered; IF/WHILE/CALL_ONCE/CALL without options call subgraph 0."""
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    called: set[int] = set()
    for sg in model.subgraphs:
        for op in sg.operators or []:
            codes = model.operatorCodes or []
            oc = codes[op.opcodeIndex] if 0 <= op.opcodeIndex < len(codes) else None
            name = names.get(max(oc.builtinCode, oc.deprecatedBuiltinCode)) if oc is not None else None
            options = [o for o in (op.builtinOptions, op.builtinOptions2) if o is not None]
            if not options and name in _CALLERS:
                called.add(0)
            for opt in options:
                for field, value in vars(opt).items():
                    if "subgraph" in field.lower() and value is not None:
                        called.update(int(v) for v in (value if hasattr(value, "__len__") else [value]))
    return called


def _refuse_other_entry_points(model: Any, schema: Any) -> None:
    """Only subgraph 0 is edited: refuse models a caller could also enter elsewhere, and a
    subgraph 0 that an op calls (its caller would then hand int8 data to a uint8 input)."""
    for sig in model.signatureDefs or []:
        if sig.subgraphIndex != 0:
            key = (sig.signatureKey or b"").decode("utf-8", "replace")
            raise ModelError(f"signature {key!r} runs subgraph {sig.subgraphIndex}; uint8 I/O editing changes only "
                             "the main subgraph (0)", hint="export one signature per model, or keep --io int8")
    if 0 in _subgraphs_called(model, schema):
        raise ModelError("the main subgraph (0) is also called by a control-flow op; its interface cannot change",
                         hint=_MALFORMED)


def _ints(values: Any) -> list[int]:
    """A vector field as ints: the object API gives numpy arrays (never test them with ``or``) or None."""
    return [] if values is None else [int(v) for v in values]


def _tensor_name(t: Any) -> str:
    return (t.name or b"").decode("utf-8", "replace") or "<unnamed>"


def _to_convert(sg: Any, role: str, schema: Any) -> list[int]:
    """The int8 tensors of ``sg``'s inputs or outputs to give a uint8 twin; refuse other dtypes."""
    types = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    indices = _ints(sg.inputs if role == "input" else sg.outputs)
    if len(set(indices)) != len(indices):
        raise ModelError(f"the main subgraph lists one tensor twice as an {role}", hint=_MALFORMED)
    chosen = []
    for i in indices:
        if not 0 <= i < len(sg.tensors):
            raise ModelError(f"{role} tensor index {i} is out of range", hint=_MALFORMED)
        t = sg.tensors[i]
        name, dtype = _tensor_name(t), types.get(t.type, str(t.type))
        if t.type == schema.TensorType.UINT8:
            continue
        if t.type != schema.TensorType.INT8:
            raise ModelError(f"{role} {name!r} is {dtype}, not int8: only an int8 interface can be made uint8",
                             hint=_INPUT_HINT)
        q = t.quantization
        scales = [] if q is None or q.scale is None else [float(s) for s in q.scale]
        zps = [] if q is None or q.zeroPoint is None else [int(z) for z in q.zeroPoint]
        if len(scales) > 1 or len(zps) > 1:
            raise ModelError(f"{role} {name!r} is quantized per channel ({len(scales)} scales); a uint8 "
                             "interface needs one scale and zero point", hint="quantize model inputs and outputs per tensor")
        if len(scales) != 1 or len(zps) != 1 or (q is not None and q.details is not None):
            raise ModelError(f"{role} {name!r} is int8 without a scale and zero point, so uint8 has no meaning for it",
                             hint=_INPUT_HINT)
        if not (math.isfinite(scales[0]) and scales[0] > 0) or not -128 <= zps[0] <= 127:
            raise ModelError(f"{role} {name!r} has an invalid quantization (scale {scales[0]}, zero point {zps[0]})",
                             hint=_MALFORMED)
        if t.isVariable or t.sparsity is not None:
            raise ModelError(f"{role} {name!r} is a variable or sparse tensor, not a plain int8 interface tensor",
                             hint=_INPUT_HINT)
        chosen.append(i)
    return chosen


def _refuse_overlap(sg: Any, ins: list[int], outs: list[int]) -> None:
    """An input that is also an output (a pass-through) would need two tensors at one index;
    an input some op writes is no input: both mean the QUANTIZE ops could not be placed exactly."""
    both = (set(ins) | set(outs)) & set(_ints(sg.inputs)) & set(_ints(sg.outputs))
    if both:
        name = _tensor_name(sg.tensors[min(both)])
        raise ModelError(f"tensor {name!r} is both an input and an output of the model; uint8 I/O editing "
                         "cannot split it", hint="keep the converter's int8 interface with --io int8")
    written = {o for op in sg.operators or [] for o in _ints(op.outputs)}
    for i in ins:
        if i in written:
            raise ModelError(f"input {_tensor_name(sg.tensors[i])!r} is also written by an operator", hint=_MALFORMED)


def _offline_plan(model: Any) -> tuple[int, list[int]] | None:
    """The buffer index and int32 words of an ``OfflineMemoryAllocation`` plan, checked to
    cover every tensor as TFLM requires, so new tensors can be added to it; or None."""
    entries = [m for m in model.metadata or [] if m.name == OFFLINE_PLAN]
    if not entries:
        return None
    if len(entries) > 1:
        raise ModelError("the .tflite has more than one OfflineMemoryAllocation plan", hint=_MALFORMED)
    index = int(entries[0].buffer)
    if not 0 < index < len(model.buffers or []):
        raise ModelError("the OfflineMemoryAllocation metadata points at no buffer", hint=_MALFORMED)
    shared = [m for m in model.metadata if int(m.buffer) == index] + [
        t for sg in model.subgraphs for t in sg.tensors or [] if int(t.buffer) == index]
    raw = bytes(model.buffers[index].data if model.buffers[index].data is not None else b"")
    total = sum(len(sg.tensors or []) for sg in model.subgraphs)
    words = [int.from_bytes(raw[k:k + 4], "little", signed=True) for k in range(0, len(raw) - len(raw) % 4, 4)]
    if len(shared) > 1 or len(raw) % 4 or len(words) < 3 or words[2] != total or len(words) != 3 + total:
        raise ModelError(f"the OfflineMemoryAllocation plan does not hold one offset for each of the {total} tensors",
                         hint="re-run the memory planner on the model, or remove the plan")
    return index, words


def _extend_plan(model: Any, plan: tuple[int, list[int]], at: int, count: int) -> None:
    import numpy as np

    index, words = plan
    offsets = words[3:]
    offsets[at:at] = [ONLINE] * count
    words = words[:2] + [len(offsets)] + offsets
    model.buffers[index].data = np.array(words, dtype="<i4").view(np.uint8)


def _quantize_opcode(model: Any, schema: Any) -> int:
    """The index of a builtin QUANTIZE v1 operator code, appended when the model has none."""
    code = schema.BuiltinOperator.QUANTIZE
    codes = model.operatorCodes if model.operatorCodes is not None else []
    for i, oc in enumerate(codes):
        if max(oc.builtinCode, oc.deprecatedBuiltinCode) == code and oc.version == QUANTIZE_VERSION:
            return i
    oc = schema.OperatorCodeT()
    oc.builtinCode = code
    # Codes above 127 store PLACEHOLDER_FOR_GREATER_OP_CODES in the old int8 field.
    oc.deprecatedBuiltinCode = min(code, schema.BuiltinOperator.PLACEHOLDER_FOR_GREATER_OP_CODES)
    oc.version = QUANTIZE_VERSION
    codes.append(oc)
    model.operatorCodes = codes
    return len(codes) - 1


def _unique(base: bytes, taken: set[bytes]) -> bytes:
    name, n = base, 1
    while name in taken:
        name, n = base + b"_%d" % n, n + 1
    taken.add(name)
    return name


def _add_interface_tensor(model: Any, sg: Any, old: int, names: set[bytes], schema: Any) -> int:
    """Append the uint8 twin of int8 tensor ``old`` with an empty buffer of its own (as TF's
    converter gives every activation), move the user-visible name to it, rename the old one."""
    src = sg.tensors[old]
    q = schema.QuantizationParametersT()
    q.scale = [float(src.quantization.scale[0])]
    q.zeroPoint = [int(src.quantization.zeroPoint[0]) + 128]
    q.quantizedDimension = 0
    q.min, q.max = src.quantization.min, src.quantization.max
    t = schema.TensorT()
    t.shape = None if src.shape is None else [int(d) for d in src.shape]
    t.shapeSignature = None if src.shapeSignature is None else [int(d) for d in src.shapeSignature]
    t.hasRank = src.hasRank
    t.type = schema.TensorType.UINT8
    t.quantization = q
    t.name = src.name
    src.name = _unique((src.name or b"") + b"_int8", names)
    model.buffers.append(schema.BufferT())
    t.buffer = len(model.buffers) - 1
    sg.tensors.append(t)
    return len(sg.tensors) - 1


def _quantize_op(schema: Any, code: int, source: int, target: int) -> Any:
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = code, [source], [target]
    return op


def _alignment(model: Any, data: bytes) -> int:
    """The alignment (4, 8 or 16) all buffer data in ``data`` shares, read from where the
    unpacked numpy views point. One figure for the model, not one per buffer: a buffer
    that is 16-byte aligned by chance among 4-aligned ones needs no padding, a model whose
    every buffer is aligned (by a realigning tool) keeps it. Unknown positions count as 4."""
    import numpy as np

    base, found = np.frombuffer(data, dtype=np.uint8).ctypes.data, BUFFER_ALIGNMENT
    for b in model.buffers:
        if b.data is not None and len(b.data):
            pos = b.data.ctypes.data - base if isinstance(b.data, np.ndarray) else -1
            found = min(found, pos & -pos if 0 < pos < len(data) else 4)
    return max(found, 4)


def _pack(model: Any, schema: Any, alignment: int) -> bytes:
    import flatbuffers

    class AlignedBuffer(schema.BufferT):  # type: ignore[misc, name-defined]
        """BufferT whose data starts on an ``alignment``-byte boundary (the generated code
        ignores the schema's ``force_align: 16`` and aligns vectors to 4)."""

        def Pack(self, builder: Any) -> int:  # noqa: N802 - the generated API's name
            if self.data is not None and len(self.data):
                builder.Prep(alignment, len(self.data))  # the vector's own Prep then adds no padding
            return int(super().Pack(builder))

    copies = []
    for b in model.buffers:
        copies.append(AlignedBuffer())
        copies[-1].__dict__.update(vars(b))
    model.buffers = copies
    try:
        builder = flatbuffers.Builder(1024)
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
        out = bytes(builder.Output())
    except Exception as exc:  # flatbuffers raises on >2 GiB or on values that do not fit their fields
        raise ModelError(f"the edited model cannot be written ({type(exc).__name__}: {exc})"[:300],
                         hint="keep the converter's int8 interface with --io int8") from None
    if len(out) > MAX_BYTES:
        raise ModelError("the edited model would exceed 2 GiB", hint="keep the converter's int8 interface with --io int8")
    return out


__all__ = ["with_uint8_io", "repack", "QUANTIZE_VERSION", "OFFLINE_PLAN"]
