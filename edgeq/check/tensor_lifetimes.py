"""TFLM's memory model of a .tflite, in Python: which buffers it plans, when each is live,
and where its GreedyMemoryPlanner puts them.

Why a replica and not an approximation: a lower bound or an offline plan is only worth
something if it uses the lifetimes TFLM itself uses, and "would TFLM's planner fit the
kernels' scratch buffers around this plan" can only be answered by running its
algorithm. Mirrored from TFLM 90b983c2 (``/work/shared/tflm/reference``):

- which tensors are planned (``micro_allocation_info.cc:197-205``): not constant (the
  flatbuffer buffer has no inline data, ``micro_allocator.cc:195-222``), not a variable
  (variables are persistent, ``micro_allocator.cc:1072-1095``) and more than 0 bytes
  (``memory_helpers.cc:126-141``: elements x type size; int4 counts one byte);
- the clock is TFLM's "allocation scope" (``MarkAllocationLifetimes``, :233-334): a
  subgraph's inputs are created and used at the scope the subgraph starts in, each
  operator opens the next scope (outputs created there, inputs and outputs used there),
  a control-flow op (IF, WHILE, CALL_ONCE, :54-101) opens one scope per called subgraph
  and marks it recursively, and the subgraph outputs are used until its last scope;
  only the first creation and the last use count (:37-52);
- a kernel's scratch buffer lives in its op's scopes (:298-318);
- buffers are rounded up to 16 bytes (``CreatePlan``, ``micro_allocator.cc:106-127``,
  ``MicroArenaBufferAlignment``) and all tensors of all subgraphs are one list, subgraph
  after subgraph, followed by the scratch buffers in request order (:103-144);
- ``greedy_offsets`` is ``GreedyMemoryPlanner::CalculateOffsetsIfNeeded``
  (``memory_planner/greedy_memory_planner.cc:162-310``) step by step, including its stable
  size sort and its offline-planned buffers placed first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping, Sequence

from edgeq.errors import ModelError

if TYPE_CHECKING:  # pragma: no cover
    from edgeq.model.tflite_info import ModelInfo

ALIGN = 16  # MicroArenaBufferAlignment()
ONLINE = -1  # kOnlinePlannedBuffer
#: TfLiteTypeSizeOf (memory_helpers.cc:48-104) by schema type name; int4 is one byte a value.
TYPE_BYTES = {"FLOAT16": 2, "BFLOAT16": 2, "FLOAT32": 4, "FLOAT64": 8, "INT16": 2, "INT32": 4, "UINT32": 4,
              "UINT8": 1, "UINT16": 2, "INT8": 1, "INT64": 8, "UINT64": 8, "BOOL": 1, "RESOURCE": 4,
              "COMPLEX64": 8, "COMPLEX128": 16, "INT4": 1}
_CONTROL_FLOW = {"IF": ("thenSubgraphIndex", "elseSubgraphIndex"), "WHILE": ("condSubgraphIndex", "bodySubgraphIndex"),
                 "CALL_ONCE": ("initSubgraphIndex",)}


def align(n: int) -> int:
    """``n`` rounded up to TFLM's 16-byte arena alignment."""
    return -(-n // ALIGN) * ALIGN


@dataclass(frozen=True)
class Tensor:
    """One tensor as TFLM's allocation info sees it."""

    subgraph: int
    index: int  # within its subgraph
    name: str
    dtype: str
    shape: tuple[int, ...]
    nbytes: int  # elements x type size (TfLiteEvalTensorByteLength)
    kind: str  # "activation" (planned), "constant", "variable" (persistent) or "empty" (0 bytes)
    first: int = ONLINE  # allocation scope of its creation, -1 if never reached
    last: int = ONLINE

    @property
    def planned(self) -> bool:
        """Whether TFLM's memory planner places it (``needs_allocating``)."""
        return self.kind == "activation"

    @property
    def aligned(self) -> int:
        return align(self.nbytes)


@dataclass(frozen=True)
class Op:
    """One operator of one subgraph, with the scopes it spans (more than one for control flow)."""

    subgraph: int
    index: int
    name: str
    inputs: tuple[int, ...]  # tensor indices within the subgraph, -1 for an omitted optional input
    outputs: tuple[int, ...]
    first: int
    last: int
    options: object = None  # the schema's builtin options object (strides, adj_x, time_major...)


@dataclass(frozen=True)
class Graph:
    """What the memory model needs of a model: every tensor and operator, with TFLM's lifetimes."""

    tensors: tuple[Tensor, ...]  # all subgraphs, in TFLM's order (the offline plan's order)
    ops: tuple[Op, ...]  # subgraph 0's operators, in execution order
    subgraph_offsets: tuple[int, ...]  # first global tensor index of each subgraph
    inputs: tuple[int, ...]  # subgraph 0's input and output tensor indices
    outputs: tuple[int, ...]
    model_bytes: int
    scopes: int  # number of allocation scopes (0 .. scopes-1)

    def tensor(self, index: int, subgraph: int = 0) -> Tensor:
        return self.tensors[self.subgraph_offsets[subgraph] + index]


@dataclass(frozen=True)
class Buffer:
    """A planner request: 16-byte-aligned size, first and last scope, optional fixed offset."""

    size: int
    first: int
    last: int
    offline: int = ONLINE

    def overlaps(self, other: "Buffer") -> bool:
        return not (self.first > other.last or other.first > self.last)


def read_graph(data: bytes, info: ModelInfo | None = None) -> Graph:
    """The memory model of the .tflite ``data``; ``ModelError`` for a malformed model.

    ``info`` is the already-checked ``edgeq.model.tflite_info.parse(data)``; without it the bytes
    are parsed (and so checked) first: the flatbuffer reader trusts its input.
    """
    from ai_edge_litert import schema_py_generated as schema

    from edgeq.model.tflite_checks import enum_names
    from edgeq.model.tflite_info import parse

    if info is None:
        info = parse(data)
    model = schema.ModelT.InitFromPackedBuf(bytes(data), 0)
    types, builtins = enum_names(schema.TensorType), enum_names(schema.BuiltinOperator)
    opnames = [info.ops[i].name if info.ops[i].custom else builtins[max(int(c.builtinCode), int(c.deprecatedBuiltinCode))]
               for i, c in enumerate(model.operatorCodes or [])]
    buffers = model.buffers or []
    raw: list[list[dict]] = []
    offsets, total = [], 0
    for sg in model.subgraphs:
        offsets.append(total)
        rows = []
        for i, t in enumerate(sg.tensors or []):
            dtype = types[int(t.type)]
            shape = tuple(int(d) for d in t.shape) if t.shape is not None else ()
            nbytes = math.prod(shape) * TYPE_BYTES.get(dtype, 0)
            buf = buffers[int(t.buffer)] if 0 <= int(t.buffer) < len(buffers) else None
            constant = buf is not None and buf.data is not None and len(buf.data) > 0
            kind = ("constant" if constant else "variable" if t.isVariable else "empty" if nbytes == 0 else "activation")
            name = t.name.decode("utf-8", "replace") if isinstance(t.name, bytes) else str(t.name or "")
            rows.append({"subgraph": len(raw), "index": i, "name": name, "dtype": dtype, "shape": shape,
                         "nbytes": nbytes, "kind": kind, "first": ONLINE, "last": ONLINE})
        raw.append(rows)
        total += len(rows)
    marker = _Marker(model, raw, opnames)
    marker.mark(0)
    tensors = tuple(Tensor(**row) for rows in raw for row in rows)
    sg0 = model.subgraphs[0]
    return Graph(tensors=tensors, ops=tuple(marker.ops[0]), subgraph_offsets=tuple(offsets),
                 inputs=tuple(int(i) for i in sg0.inputs), outputs=tuple(int(i) for i in sg0.outputs),
                 model_bytes=len(data), scopes=marker.scope + 1)


class _Marker:
    """``AllocationInfoBuilder::MarkAllocationLifetimes`` over the unpacked model."""

    def __init__(self, model: object, raw: list[list[dict]], opnames: list[str]) -> None:
        self.model, self.raw, self.opnames = model, raw, opnames
        self.scope = 0
        self.ops: dict[int, list[Op]] = {}
        self.depth = 0

    def _created(self, row: dict, scope: int) -> None:
        if row["first"] == ONLINE:
            row["first"] = scope

    def _used(self, row: dict, scope: int) -> None:
        row["last"] = scope

    def mark(self, k: int) -> None:
        self.depth += 1
        if self.depth > 64:  # tflite_checks refuses cycles; nesting this deep is no real model
            raise ModelError("the model's control flow nests more than 64 subgraphs deep",
                             hint="edgeq plans memory for models without deeply nested IF/WHILE")
        sg, rows = self.model.subgraphs[k], self.raw[k]  # type: ignore[attr-defined]
        for i in sg.inputs if sg.inputs is not None else ():
            self._created(rows[int(i)], self.scope)
            self._used(rows[int(i)], self.scope)
        ops = self.ops.setdefault(k, []) if k not in self.ops else []
        for j, op in enumerate(sg.operators or []):
            self.scope += 1
            outs = tuple(int(i) for i in op.outputs) if op.outputs is not None else ()
            ins = tuple(int(i) for i in op.inputs) if op.inputs is not None else ()
            for i in outs:
                self._created(rows[i], self.scope)
            start = self.scope
            name = self.opnames[int(op.opcodeIndex)]
            for attr in _CONTROL_FLOW.get(name, ()):
                called = getattr(op.builtinOptions, attr, None)
                if called is not None and 0 <= int(called) < len(self.raw):
                    self.scope += 1
                    self.mark(int(called))
            for i in ins:
                if i >= 0:
                    self._used(rows[i], self.scope)
            for i in outs:
                self._used(rows[i], self.scope)
            ops.append(Op(k, j, name, ins, outs, start, self.scope, op.builtinOptions))
        for i in sg.outputs if sg.outputs is not None else ():
            self._created(rows[int(i)], self.scope)
            self._used(rows[int(i)], self.scope)
        self.depth -= 1


def scratch_buffers(graph: Graph, scratch: Mapping[int, int | Sequence[int]] | None) -> list[tuple[int, Buffer]]:
    """(op index, planner request) per scratch buffer, in request order (op by op).

    ``scratch`` maps an op index of subgraph 0 to the bytes its kernel requests: one int
    for one buffer, a sequence for several (each is aligned on its own, as TFLM does).
    """
    found = []
    for j, sizes in sorted((scratch or {}).items()):
        if not 0 <= j < len(graph.ops):
            raise ModelError(f"scratch bytes were given for op {j}, but the model has {len(graph.ops)} operators")
        op = graph.ops[j]
        for size in (sizes,) if isinstance(sizes, int) else sizes:
            if size < 0:
                raise ModelError(f"op {j} ({op.name}) requests {size} scratch bytes; sizes are never negative")
            found.append((j, Buffer(align(int(size)), op.first, op.last)))
    return found


def requests(graph: Graph, scratch: Mapping[int, int | Sequence[int]] | None = None,
             offsets: Sequence[int] | None = None) -> list[Buffer]:
    """The planner's ``AddBuffer`` calls, in TFLM's order: planned tensors, then scratch.

    ``offsets`` is an offline plan (one entry per tensor of every subgraph, -1 = online).
    """
    found = []
    for g, t in enumerate(graph.tensors):
        fixed = offsets[g] if offsets is not None else ONLINE
        if t.planned or (t.kind == "variable" and fixed != ONLINE):  # micro_allocation_info.cc:209-214
            found.append(Buffer(t.aligned, t.first, t.last, int(fixed)))
    return found + [b for _, b in scratch_buffers(graph, scratch)]


def greedy_offsets(buffers: Sequence[Buffer]) -> list[int]:
    """Where TFLM's ``GreedyMemoryPlanner`` puts each buffer (same order as ``buffers``)."""
    n = len(buffers)
    if not n:
        return []
    fixed = [i for i in range(n) if buffers[i].offline != ONLINE]
    # Online buffers are filled in from the tail (reverse order), then bubble-sorted, largest
    # first: a stable sort, so among equal sizes the buffer added last is placed first.
    online = [i for i in reversed(range(n)) if buffers[i].offline == ONLINE]
    online.sort(key=lambda i: -buffers[i].size)
    order = fixed + online
    result = [ONLINE] * n
    placed: list[tuple[int, int]] = []  # (offset, buffer) sorted by offset, ties in insertion order
    for rank, i in enumerate(order):
        want = buffers[i]
        if want.offline != ONLINE:
            offset = want.offline
        elif rank == 0:
            offset = 0
        else:
            offset = 0
            for off, j in placed:  # the offset-ordered list, simultaneously active entries only
                other = buffers[j]
                if not want.overlaps(other):
                    continue
                if off - offset >= want.size:
                    break
                offset = max(offset, off + other.size)
        result[i] = offset
        k = len(placed)
        while k and placed[k - 1][0] > offset:  # inserted after entries with the same offset
            k -= 1
        placed.insert(k, (offset, i))
    return result


def plan_size(buffers: Sequence[Buffer], offsets: Sequence[int]) -> int:
    """``GetMaximumMemorySize``: the highest end of any placed buffer."""
    return max((o + b.size for o, b in zip(offsets, buffers)), default=0)


def live_bytes(graph: Graph, scratch: Mapping[int, int | Sequence[int]] | None = None) -> list[int]:
    """Bytes of planned buffers live at each scope (aligned): tensors plus scratch."""
    load = [0] * graph.scopes
    for b in requests(graph, scratch):
        for t in range(max(b.first, 0), b.last + 1):  # never created: TFLM's first scope is -1
            load[t] += b.size
    return load


def reference_scratch(graph: Graph) -> dict[int, tuple[int, ...]]:
    """Scratch buffers TFLM's reference kernels (the host runtime) request, per op of subgraph 0.

    From the kernels' Prepare() functions in TFLM 90b983c2: UNIDIRECTIONAL_SEQUENCE_LSTM
    four of batch x units x cell-state type size (unidirectional_sequence_lstm.cc:86-94),
    the int8/int16 MEAN/SUM accumulator and index buffers (reduce_common.cc:197-282),
    TRANSPOSE_CONV's int32/int64 output buffer (transpose_conv.cc:193-209), int4 filters
    unpacked (conv_common.cc:204-211, depthwise_conv_common.cc:202-209,
    fully_connected.cc:69-76), ADD_N's pointer table and MIRROR_PAD's index tables.
    Ops not listed request none.
    """
    found: dict[int, tuple[int, ...]] = {}
    for j, op in enumerate(graph.ops):
        t = [graph.tensor(i, op.subgraph) if i >= 0 else None for i in op.inputs]
        out = graph.tensor(op.outputs[0], op.subgraph) if op.outputs else None
        sizes: tuple[int, ...] = ()
        if op.name == "UNIDIRECTIONAL_SEQUENCE_LSTM" and out is not None and len(t) > 19 and t[19] is not None:
            batch = out.shape[1] if getattr(op.options, "timeMajor", False) and len(out.shape) == 3 else out.shape[0]
            sizes = (batch * out.shape[-1] * TYPE_BYTES.get(t[19].dtype, 4),) * 4
        elif op.name in ("MEAN", "SUM") and t and t[0] is not None and out is not None and len(t) > 1 and t[1] is not None:
            acc = (4 * math.prod(out.shape),) if t[0].dtype in ("INT8", "INT16") else ()
            sizes = acc + (4 * len(t[0].shape), 4 * math.prod(t[1].shape))
        elif op.name in ("REDUCE_MAX", "REDUCE_MIN", "REDUCE_ALL", "REDUCE_ANY") and len(t) > 1 and t[0] and t[1]:
            sizes = (4 * len(t[0].shape), 4 * math.prod(t[1].shape))
        elif op.name == "TRANSPOSE_CONV" and out is not None and len(t) > 2 and t[2] is not None:
            sizes = {"INT8": (4 * math.prod(out.shape),), "INT16": (8 * math.prod(out.shape),)}.get(t[2].dtype, ())
        elif op.name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED") and len(t) > 1 and t[1] is not None:
            sizes = (math.prod(t[1].shape),) if t[1].dtype == "INT4" else ()
        elif op.name == "ADD_N" and out is not None and out.dtype in ("FLOAT32", "INT8"):
            sizes = (8 * len(t),)  # pointers of the 64-bit host
        elif op.name == "MIRROR_PAD" and t and t[0] is not None:
            sizes = (4 * len(t[0].shape),) * 2
        if sizes:
            found[j] = sizes
    return found


__all__ = ["ALIGN", "ONLINE", "Buffer", "Graph", "Op", "Tensor", "align", "greedy_offsets", "live_bytes",
           "plan_size", "read_graph", "reference_scratch", "requests", "scratch_buffers"]
