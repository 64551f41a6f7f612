"""Upper bounds on the arena memory ESP-NN kernels need beyond TFLM's reference kernels.

Why: the host arena comes from TFLM's reference kernels. ``espressif/esp-tflite-micro``
replaces seven of them (add, conv, depthwise_conv, fully_connected, mul, pooling,
softmax) with ``tensorflow/lite/micro/kernels/esp_nn/*.cc``, and three of those ask for
more arena than the reference kernel does:

- ``conv.cc`` and ``depthwise_conv.cc`` (esp-tflite-micro 99f49e1 = v1.4.0, unchanged
  in those lines since v1.3.4): for int8 input, ``Prepare()`` calls
  ``esp_nn_get_conv_scratch_size()`` / ``esp_nn_get_depthwise_conv_scratch_size()``
  (conv.cc:132-162, depthwise_conv.cc:256-287) and requests that many bytes with
  ``RequestScratchBufferInArena`` when it is > 0; padding comes from TFLM's
  ``ComputePaddingWithOffset`` (tensorflow/lite/kernels/padding.h:32-40), stride and
  ``depth_multiplier`` from the builtin options;
- ``softmax.cc:151-164``: int8 in and out, ``esp_nn_get_softmax_scratch_size(
  dims->data[1], dims->data[2])`` bytes;
- all three keep ``struct NodeData { OpData op_data; int buffer_idx; }`` (conv.cc:38-49,
  depthwise_conv.cc:38-49, softmax.cc:42-52) instead of the reference ``OpData``: at
  most one more 16-byte step of the persistent allocation (TFLM aligns arena buffers
  to 16, micro_arena_constants.h:24). add/mul/pooling/fully_connected request nothing
  the reference kernels do not.

The byte counts are ESP-NN's (``espressif/esp-nn``; ``esp_nn.h`` selects
``esp_nn_generic_opt.h`` on ESP32 and ``esp_nn_esp32s3.h`` on ESP32-S3 when
``CONFIG_NN_OPTIMIZED``, the default):

- ``generic`` (ESP32): ``esp_nn_get_conv_scratch_size_opt`` and
  ``esp_nn_get_depthwise_conv_scratch_size_opt`` return 0
  (src/convolution/esp_nn_conv_opt.c:20-26, esp_nn_depthwise_conv_opt.c:18-24), so
  those kernels request nothing; softmax: ``width * 4`` (src/softmax/esp_nn_softmax_opt.c:29-33).
- ``esp32s3``: ``esp_nn_get_conv_scratch_size_esp32s3``
  (src/convolution/esp_nn_conv_esp32s3.c:315-386 at d45b843 = v1.2.3; 98-145 at v1.2.0),
  ``esp_nn_get_depthwise_conv_scratch_size_esp32s3``
  (src/convolution/esp_nn_depthwise_conv_s8_esp32s3.c:348-443 at v1.2.3; 356-407 at
  v1.2.0), softmax ``width * 4`` (src/softmax/esp_nn_softmax_s8_esp32s3.c:16-20).
  esp-tflite-micro depends on ``espressif/esp-nn >=1.1.1``, so the component manager
  may resolve any of those releases, and the formulas changed in between: v1.1.1 -
  v1.2.0 is one family (``_V1_1``, v1.2.0's +32 alignment slack, which is >= v1.1.x's
  +16), v1.2.1 - v1.2.3 the other (``_V1_2``, v1.2.3's 64-byte slack, >= v1.2.1's 32).
  The bound takes the larger of the two per model: the version is not in the file.
  ``conv_scratch_esp32s3``/``depthwise_scratch_esp32s3`` agreed with those C functions
  (extracted verbatim from both releases and compiled on the host) on 20,000 random shapes.

Each ``RequestScratchBufferInArena`` also costs bookkeeping: a 12-byte
``ScratchBufferRequest`` and a 4-byte ``ScratchBufferHandle`` (micro_allocator.h:62-90),
a 24-byte ``AllocationInfo`` (micro_allocation_info.h:27-34) and the greedy planner's 40
bytes per buffer (greedy_memory_planner.h:99-108) — 80 bytes, counted as 96.

Like ``edgeq.firmware.cmsis_memory``: scratch buffers live only while their op runs, so
the extra is the largest one (16-byte aligned); persistent bytes and bookkeeping add up
over ops. Conv and depthwise kernels whose input is not int8 use the reference code
and add nothing. Rounded up where the file cannot tell: rank-1 softmax input (the
kernel reads ``dims->data[1]`` past the end) counts all its elements as the width.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgeq.firmware.cmsis_memory import align_up, tflite_ops

VARIANTS = ("generic", "esp32s3")
_V1_1 = "1.1"  # esp-nn v1.1.1 ... v1.2.0
_V1_2 = "1.2"  # esp-nn v1.2.1 ... v1.2.3
_NODE_DATA_EXTRA = 16
_SCRATCH_BOOKKEEPING = 96
_INT8 = 9  # TensorType.INT8 in the TFLite schema


@dataclass(frozen=True)
class _Facts:
    """What ``cmsis_memory.OpShape`` does not carry: tensor types and conv options."""

    in_type: int
    out_type: int
    stride_w: int = 1
    stride_h: int = 1
    dilation_w: int = 1
    dilation_h: int = 1
    depth_multiplier: int = 0


def _facts(tflite: bytes) -> list[_Facts]:
    """Per operator, in ``cmsis_memory.tflite_ops`` order: I/O types and conv/depthwise options."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(tflite, 0)
    facts: list[_Facts] = []
    for s in range(model.SubgraphsLength()):
        sg = model.Subgraphs(s)
        for o in range(sg.OperatorsLength()):
            op = sg.Operators(o)
            ins = op.InputsAsNumpy() if not op.InputsIsNone() else []
            outs = op.OutputsAsNumpy() if not op.OutputsIsNone() else []
            in_type = sg.Tensors(int(ins[0])).Type() if len(ins) and ins[0] >= 0 else -1
            out_type = sg.Tensors(int(outs[0])).Type() if len(outs) else -1
            kind = op.BuiltinOptionsType()
            table = op.BuiltinOptions()
            options = {schema.BuiltinOptions.Conv2DOptions: schema.Conv2DOptions,
                       schema.BuiltinOptions.DepthwiseConv2DOptions: schema.DepthwiseConv2DOptions}.get(kind)
            if options is None or table is None:
                facts.append(_Facts(in_type, out_type))
                continue
            opt = options()
            opt.Init(table.Bytes, table.Pos)
            facts.append(_Facts(
                in_type, out_type,
                stride_w=opt.StrideW() or 1, stride_h=opt.StrideH() or 1,
                dilation_w=opt.DilationWFactor() or 1, dilation_h=opt.DilationHFactor() or 1,
                depth_multiplier=opt.DepthMultiplier() if kind == schema.BuiltinOptions.DepthwiseConv2DOptions else 0,
            ))
    return facts


def _padding(stride: int, dilation: int, in_size: int, filter_size: int, out_size: int) -> int:
    """TFLM's ``ComputePaddingWithOffset`` (padding.h:32-40): the leading pad; VALID gives 0."""
    effective = (filter_size - 1) * dilation + 1
    return max((out_size - 1) * stride + effective - in_size, 0) // 2


def conv_scratch_esp32s3(version: str, *, in_w: int, in_h: int, in_ch: int, f_w: int, f_h: int,
                         out_w: int, out_h: int, out_ch: int, pad_w: int, pad_h: int,
                         stride_w: int, stride_h: int) -> int:
    """``esp_nn_get_conv_scratch_size_esp32s3`` of esp-nn ``version`` (``_V1_1``/``_V1_2``)."""
    align_buf = 64 if version == _V1_2 else 32
    if f_w == 1 and f_h == 1 and pad_w == 0 and pad_h == 0 and stride_w == 1 and stride_h == 1:
        new_ch = (in_ch + 7) & ~7
        transpose = 0 if in_w * in_h < 8 else 2 * (8 * new_ch)
        input_scratch = in_w * in_h * new_ch if in_ch % 8 else 0
        return input_scratch + new_ch * out_ch + transpose + align_buf
    row = f_w * in_ch
    window = f_w * f_h * in_ch
    if version == _V1_2 and row < 16 and window >= 16:  # im2col path (v1.2.1+)
        window_aligned = (window + 15) & ~15
        return out_ch * 4 + 16 + out_ch * window_aligned + 16 + window_aligned + align_buf
    new_ch = (in_ch + 15) & ~15
    input_scratch = 0 if pad_w == 0 and pad_h == 0 else (in_w + 2 * pad_w) * (in_h + 2 * pad_h) * in_ch
    filter_scratch = f_w * f_h * new_ch * out_ch
    if version == _V1_1:
        return input_scratch + filter_scratch + align_buf + out_ch * 4
    filter_alignment = ((row + 15) // 16) * 16 * f_h * out_ch
    pad_right = max(0, (out_w * stride_w + f_w - 1) - in_w)
    pad_bottom = max(0, (out_h * stride_h + f_h - 1) - in_h)
    boundary = (in_w + pad_right) * (in_h + pad_bottom) * in_ch if (pad_right > 0 or pad_bottom > 0) else 0
    return input_scratch + filter_scratch + filter_alignment + boundary + align_buf + out_ch * 4


def depthwise_scratch_esp32s3(version: str, *, in_w: int, in_h: int, ch: int, f_w: int, f_h: int, ch_mult: int,
                              out_w: int, out_h: int, pad_w: int, pad_h: int, stride_w: int, stride_h: int) -> int:
    """``esp_nn_get_depthwise_conv_scratch_size_esp32s3`` of esp-nn ``version``."""
    filter_size = f_w * f_h * ch * ch_mult
    if ch_mult == 1 and ch % 8 == 0 and f_w == 3 and f_h == 3:
        if ch % 16 == 0:
            if pad_w or pad_h:
                pad_width, pad_height = pad_w * 2, pad_h * 2
            else:
                pad_width = (out_w * stride_w + f_w - 1) - in_w
                pad_height = (out_h * stride_h + f_h - 1) - in_h
            if pad_width or pad_height:
                full_input = (in_w + pad_width) * (in_h + pad_height) * ch
                if version == _V1_2 and full_input > 40 * 1024:
                    return filter_size + (in_w + pad_width) * f_h * ch + 16
                return filter_size + full_input + 16
            return filter_size + 16
        if version == _V1_2 and ch >= 12:
            new_ch = (ch + 15) & ~15
            total_pad_w = pad_w * 2 + max(0, (out_w * stride_w + 2) - in_w)
            total_pad_h = pad_h * 2 + max(0, (out_h * stride_h + 2) - in_h)
            return 9 * new_ch + (in_w + total_pad_w) * (in_h + total_pad_h) * new_ch + out_w * out_h * new_ch + 64
        return 2 * (filter_size + in_w * in_h * ch) + 32
    if version == _V1_2 and ch_mult == 1 and ch % 8 == 0:  # other filter sizes
        total_s16 = 2 * (filter_size + in_w * in_h * ch)
        if total_s16 <= 48 * 1024:
            return total_s16 + 32
        return 2 * filter_size + 2 * in_w * f_h * ch + 32
    if version == _V1_2 and ch_mult == 1 and ch > 3:
        padded = (ch + 7) & ~7
        input_start = align_up(f_w * f_h * padded * 2, 16)
        out_start = align_up(input_start + in_w * in_h * padded * 2, 16)
        bias_start = align_up(out_start + out_w * out_h * padded, 16)
        return bias_start + 3 * padded * 4 + 16
    if ch_mult % 4 == 0:
        return 2 * (filter_size + in_w * in_h * ch) + 32
    return 32


def _op_cost(op, facts: _Facts, variant: str, version: str) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """(scratch bytes requested, persistent + bookkeeping bytes) of one op."""
    shape = lambda k: op.inputs[k][0] if len(op.inputs) > k else ()  # noqa: E731
    int8_in = facts.in_type == _INT8
    if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        scratch = 0
        if int8_in and len(shape(0)) == 4 and len(shape(1)) == 4 and len(op.output) == 4 and variant == "esp32s3":
            _, in_h, in_w, in_ch = shape(0)
            _, f_h, f_w, f_ch = shape(1)
            _, out_h, out_w, out_ch = op.output
            pad_w = _padding(facts.stride_w, facts.dilation_w, in_w, f_w, out_w)
            pad_h = _padding(facts.stride_h, facts.dilation_h, in_h, f_h, out_h)
            common = dict(in_w=in_w, in_h=in_h, f_w=f_w, f_h=f_h, out_w=out_w, out_h=out_h,
                          pad_w=pad_w, pad_h=pad_h, stride_w=facts.stride_w, stride_h=facts.stride_h)
            if op.name == "CONV_2D":
                scratch = conv_scratch_esp32s3(version, in_ch=in_ch, out_ch=out_ch, **common)
            else:
                ch_mult = facts.depth_multiplier or (f_ch // in_ch if in_ch else 1)
                scratch = depthwise_scratch_esp32s3(version, ch=in_ch, ch_mult=ch_mult, **common)
        return scratch, _NODE_DATA_EXTRA + (_SCRATCH_BOOKKEEPING if scratch > 0 else 0)
    if op.name == "SOFTMAX":
        scratch = 0
        if int8_in and facts.out_type == _INT8:
            dims = shape(0)
            width = dims[1] if len(dims) >= 2 else (dims[0] if dims else 1)
            scratch = width * 4  # esp_nn_get_softmax_scratch_size: every variant and version
        return scratch, _NODE_DATA_EXTRA + (_SCRATCH_BOOKKEEPING if scratch > 0 else 0)
    return 0, 0


def esp_nn_extra(tflite: bytes, variant: str) -> int:
    """Bound the arena bytes esp-tflite-micro's ESP-NN kernels add to the reference
    kernels' arena on ``variant`` (``generic`` = ESP32, ``esp32s3``)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown ESP-NN variant {variant!r} (expected one of {VARIANTS})")
    ops = tflite_ops(tflite)
    facts = _facts(tflite)
    if len(ops) != len(facts):  # pragma: no cover - both walk the same flatbuffer
        raise ValueError("operator lists disagree")
    best = 0
    for version in (_V1_1, _V1_2):
        costs = [_op_cost(op, f, variant, version) for op, f in zip(ops, facts)]
        scratch = max((align_up(s, 16) for s, _ in costs), default=0)
        best = max(best, scratch + sum(p for _, p in costs))
    return best


def per_op_scratch(tflite: bytes, variant: str) -> dict[int, int]:
    """Scratch bytes (16-byte aligned) each op of the main subgraph requests from ESP-NN on
    ``variant``, the larger of the two esp-nn formula families: an offline memory plan
    (``edgeq.firmware.memory_plan``) must leave the device's buffers room whichever esp-nn
    release the component manager resolves. Ops without scratch are left out."""
    from ai_edge_litert import schema_py_generated as schema

    if variant not in VARIANTS:
        raise ValueError(f"unknown ESP-NN variant {variant!r} (expected one of {VARIANTS})")
    model = schema.Model.GetRootAs(tflite, 0)
    main = model.Subgraphs(0).OperatorsLength() if model.SubgraphsLength() else 0
    found = {}
    for k, (op, facts) in enumerate(list(zip(tflite_ops(tflite), _facts(tflite)))[:main]):
        need = max(align_up(_op_cost(op, facts, variant, version)[0], 16) for version in (_V1_1, _V1_2))
        if need:
            found[k] = need
    return found


__all__ = ["VARIANTS", "esp_nn_extra", "per_op_scratch", "conv_scratch_esp32s3", "depthwise_scratch_esp32s3"]
