"""Upper bounds on the arena memory CMSIS-NN kernels need beyond TFLM's reference kernels.

Why: the host arena comes from TFLM's reference kernels, which request no im2col or
kernel-sum buffers; CMSIS-NN kernels do, and how much depends on the core's code path
(``none``: Armv6-M/Armv7-M without DSP, ``dsp``: Cortex-M4/M7/M33, ``mve``: Helium on
Cortex-M55/M85). The formulas mirror CMSIS-NN's ``*_get_buffer_size`` functions
(arm_convolve/depthwise/avgpool/fully_connected/transpose_conv, CMSIS-NN 4ab83cc as
pinned by TFLM 90b983c2) and TFLM's ``kernels/cmsis_nn/*.cc`` Prepare() functions,
rounded *up* wherever a kernel picks among code paths we cannot see from the file
(e.g. the depthwise 3x3 fast path needs no buffer; we count one anyway).

Scratch buffers live in the arena only while their op runs, so the extra is the
largest one; persistent buffers (kernel sums) add up over ops.

The operator graph is read with the flatbuffer schema that ``edgeq.model.tflite_info`` uses;
``ModelInfo`` has tensors but not which op uses which tensor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

VARIANTS = ("none", "dsp", "mve", "any")
_CH_IN_BLOCK_MVE = 124  # arm_nnsupportfunctions.h


@dataclass(frozen=True)
class CmsisExtra:
    """Largest scratch buffer of any one op, and persistent bytes summed over ops."""

    scratch_bytes: int
    persistent_bytes: int

    @property
    def total(self) -> int:
        return self.scratch_bytes + self.persistent_bytes


@dataclass(frozen=True)
class OpShape:
    name: str
    inputs: tuple[tuple[tuple[int, ...], bool], ...]  # (shape, is_constant) per input
    output: tuple[int, ...]


def align_up(n: int, a: int) -> int:
    """``n`` rounded up to a multiple of ``a`` (CMSIS-NN and ESP-NN align their buffers so)."""
    return -(-n // a) * a


def tflite_ops(tflite: bytes) -> list[OpShape]:
    """Every operator of every subgraph, in order, with its input shapes (and which are
    constant) and its first output's shape: what the kernels' buffer sizes depend on."""
    from ai_edge_litert import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_") and isinstance(v, int)}
    model = schema.Model.GetRootAs(tflite, 0)
    codes = [max(model.OperatorCodes(i).BuiltinCode(), model.OperatorCodes(i).DeprecatedBuiltinCode()) for i in range(model.OperatorCodesLength())]

    def constant(tensor) -> bool:  # type: ignore[no-untyped-def]
        index = tensor.Buffer()
        if not 0 < index < model.BuffersLength():
            return False
        buffer = model.Buffers(index)
        return buffer.DataLength() > 0 or buffer.Size() > 0  # Size(): data outside the flatbuffer (>2 GB models)

    ops: list[OpShape] = []
    for s in range(model.SubgraphsLength()):
        sg = model.Subgraphs(s)
        for o in range(sg.OperatorsLength()):
            op = sg.Operators(o)
            inputs = []
            for i in op.InputsAsNumpy() if not op.InputsIsNone() else []:
                if i < 0:
                    inputs.append(((), False))
                    continue
                t = sg.Tensors(int(i))
                inputs.append((tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else (), constant(t)))
            outs = op.OutputsAsNumpy() if not op.OutputsIsNone() else []
            out_shape = tuple(int(d) for d in sg.Tensors(int(outs[0])).ShapeAsNumpy()) if len(outs) and sg.Tensors(int(outs[0])).ShapeLength() else ()
            ops.append(OpShape(names.get(codes[op.OpcodeIndex()], "?"), tuple(inputs), out_shape))
    return ops


def _op_extra(op: OpShape, variant: str) -> tuple[int, int]:
    """(scratch, persistent) bytes one op needs on ``variant``; see the module docstring."""
    ins = op.inputs
    shape = lambda k: ins[k][0] if len(ins) > k else ()  # noqa: E731
    if op.name == "CONV_2D" and len(shape(1)) == 4:
        _, kh, kw, cin = shape(1)
        return 4 * align_up(kh * kw * cin, 16), 0
    if op.name == "DEPTHWISE_CONV_2D" and len(shape(1)) == 4 and len(shape(0)) == 4:
        _, kh, kw, cout = shape(1)
        cin = shape(0)[3]
        if variant == "mve":
            if cin == 1 and cout > 1:
                return 4 * align_up(kh * kw, 16) + kh * kw * cout, 0
            return (4 * _CH_IN_BLOCK_MVE * kh * kw if cin == cout else 0), 0
        if variant == "dsp":
            return (2 * cin * kh * kw if cin == cout else 0), 0
        return 0, 0
    if op.name == "FULLY_CONNECTED" and len(shape(1)) == 2:
        # Helium: arm_fully_connected_s8_get_buffer_size_mve = output depth x 4, a *scratch* buffer
        # (TFLM keeps it as persistent kernel sums only with KERNELS_OPTIMIZED_FOR_SPEED, which
        # edgeq's projects do not define): the largest one counts, not the sum over layers.
        return (4 * shape(1)[0] if variant == "mve" else 0), 0
    if op.name == "AVERAGE_POOL_2D" and len(shape(0)) == 4:
        return (4 * shape(0)[3] if variant == "dsp" else 0), 0
    if op.name in ("UNIDIRECTIONAL_SEQUENCE_LSTM", "SVDF"):
        rows = sum(s[0] for s, const in ins if const and len(s) == 2)
        units = op.output[-1] if op.output else 0
        return 16 * units, 4 * rows
    if op.name in ("TRANSPOSE_CONV", "BATCH_MATMUL"):
        out_elems = math.prod(op.output) if op.output else 0
        in_elems = sum(math.prod(s) for s, _ in ins[:2] if s)
        return 8 * out_elems + in_elems, 0
    return 0, 0


def cmsis_nn_extra(tflite: bytes, variant: str) -> CmsisExtra:
    """Bound the CMSIS-NN arena extra for ``variant`` (``any`` = worst of all three)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown CMSIS-NN variant {variant!r}")
    chosen = ("none", "dsp", "mve") if variant == "any" else (variant,)
    ops = tflite_ops(tflite)
    best = CmsisExtra(0, 0)
    for v in chosen:
        extras = [_op_extra(op, v) for op in ops]
        candidate = CmsisExtra(max((s for s, _ in extras), default=0), sum(p for _, p in extras))
        if candidate.total > best.total:
            best = candidate
    return best


def per_op_scratch(tflite: bytes, variant: str) -> dict[int, int]:
    """Scratch bytes each op of the main subgraph requests on ``variant`` (``any``: the
    largest of the three), for an offline memory plan that leaves the device's scratch
    buffers room (``edgeq.firmware.memory_plan``); ops without scratch are left out."""
    from ai_edge_litert import schema_py_generated as schema

    if variant not in VARIANTS:
        raise ValueError(f"unknown CMSIS-NN variant {variant!r}")
    chosen = ("none", "dsp", "mve") if variant == "any" else (variant,)
    model = schema.Model.GetRootAs(tflite, 0)
    main = model.Subgraphs(0).OperatorsLength() if model.SubgraphsLength() else 0
    found = {}
    for k, op in enumerate(tflite_ops(tflite)[:main]):
        need = max(_op_extra(op, v)[0] for v in chosen)
        if need:
            found[k] = need
    return found


__all__ = ["CmsisExtra", "OpShape", "VARIANTS", "align_up", "cmsis_nn_extra", "per_op_scratch", "tflite_ops"]
