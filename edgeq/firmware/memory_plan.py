"""An offline memory plan for TFLM: tensor offsets in the model's ``OfflineMemoryAllocation``
metadata, kept only when TFLM then needs a smaller arena and computes the same bytes.

Why: TFLM's GreedyMemoryPlanner misses the tensor lower bound on some graphs (on
MobileNetV1-0.25 96x96 by a third: 73,728 B against 55,296 B), and the arena is what
decides whether a model fits. TFLM reads the plan at ``AllocateTensors`` (format in
``tensorflow/lite/micro/docs/memory_management.md``: int32 ``[version 0, subgraphs,
n, offset per tensor of every subgraph, -1 = plan at run time]``), keeps those offsets
fixed and fits everything else, kernels' scratch buffers included, around them. A plan
that ignored scratch buffers could push one above the plan and grow the arena, so each
op's scratch is planned as a buffer of its own (the larger of the host's and the
target's, when a target's are given) and left free for the planner.

The prediction is exact, not hoped for: ``edgeq.check.tensor_lifetimes`` replays TFLM's
lifetimes and its greedy planner (it matches TFLM's reported head on every model tried),
and ``choose_plan`` still measures both models with the real runtime before keeping one.
"""

from __future__ import annotations

import dataclasses
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from edgeq.check.tensor_lifetimes import (ONLINE, Graph, align, greedy_offsets, plan_size, read_graph,
                                          reference_scratch, requests)
from edgeq.errors import ModelError
from edgeq.firmware.plan_solver import Item, solve

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from edgeq.check.micro import MicroResult

METADATA_NAME = "OfflineMemoryAllocation"  # kOfflineMemAllocMetadata, micro_allocation_info.cc:30
Scratch = Mapping[int, "int | Sequence[int]"]


@dataclass(frozen=True)
class Plan:
    """Offsets for every tensor of every subgraph (-1: TFLM plans it) and what they give."""

    offsets: tuple[int, ...]
    planned_bytes: int  # TFLM's non-persistent arena with the plan (host kernels' scratch included)
    greedy_bytes: int  # the same without the plan: TFLM's own GreedyMemoryPlanner
    lower_bound: int  # live tensors + scratch at the busiest op (nothing can do better)
    method: str
    optimal: bool
    reserved_bytes: int = 0  # extent of the plan with every op's scratch room: no kernel whose scratch
    # fits the room (host's or target's) can make TFLM's non-persistent part larger than this
    target_planned_bytes: int | None = None  # the same two figures with the target's scratch buffers
    target_greedy_bytes: int | None = None

    @property
    def gain(self) -> int:
        """Bytes the plan saves on the host (and never less than on the target, if given)."""
        host = self.greedy_bytes - self.planned_bytes
        if self.target_planned_bytes is None or self.target_greedy_bytes is None:
            return host
        return min(host, self.target_greedy_bytes - self.target_planned_bytes)

    def to_dict(self) -> dict[str, Any]:
        return {"planned_bytes": self.planned_bytes, "greedy_bytes": self.greedy_bytes,
                "lower_bound_bytes": self.lower_bound, "method": self.method, "optimal": self.optimal,
                "reserved_bytes": self.reserved_bytes,
                "target_planned_bytes": self.target_planned_bytes, "target_greedy_bytes": self.target_greedy_bytes,
                "planned_tensors": sum(1 for o in self.offsets if o != ONLINE)}


def _sizes(value: int | Sequence[int]) -> tuple[int, ...]:
    return (int(value),) if isinstance(value, int) else tuple(int(v) for v in value)


def _reserved(graph: Graph, maps: Sequence[Scratch]) -> dict[int, int]:
    """Bytes to keep free per op: the largest of the given scratch requests, each aligned."""
    room: dict[int, int] = {}
    for m in maps:
        for j, value in m.items():
            room[j] = max(room.get(j, 0), sum(align(s) for s in _sizes(value)))
    return {j: b for j, b in room.items() if b and 0 <= j < len(graph.ops)}


def _head(graph: Graph, scratch: Scratch, offsets: Sequence[int] | None) -> int:
    reqs = requests(graph, scratch, offsets)
    return plan_size(reqs, greedy_offsets(reqs))


def plan(model: bytes | Graph, *, scratch: Scratch | None = None, target_scratch: Scratch | None = None,
         node_budget: int = 20_000) -> Plan:
    """Offsets for all non-persistent, non-constant tensors that reach or approach the lower bound.

    ``scratch``: bytes the host's kernels request per op index of subgraph 0 (default: TFLM's
    reference kernels, ``reference_scratch``). ``target_scratch``: the target's (e.g.
    CMSIS-NN's); the plan leaves room for the larger of the two at every op.
    """
    graph = model if isinstance(model, Graph) else read_graph(model)
    host = reference_scratch(graph) if scratch is None else scratch
    room = _reserved(graph, [host] + ([target_scratch] if target_scratch else []))
    owners = [g for g, t in enumerate(graph.tensors) if t.planned]
    items = [Item(graph.tensors[g].aligned, graph.tensors[g].first, graph.tensors[g].last) for g in owners]
    items += [Item(b, graph.ops[j].first, graph.ops[j].last) for j, b in sorted(room.items())]
    solution = solve(items, node_budget=node_budget)
    offsets = [ONLINE] * len(graph.tensors)
    for g, o in zip(owners, solution.offsets):
        offsets[g] = int(o)
    # AllocateVariables (micro_allocator.cc:1072-1095) looks a variable of subgraph k up at its
    # *local* index in the plan: the entry of subgraph 0's tensor with that index must stay -1.
    for k in range(1, len(graph.subgraph_offsets)):
        end = graph.subgraph_offsets[k + 1] if k + 1 < len(graph.subgraph_offsets) else len(graph.tensors)
        for g in range(graph.subgraph_offsets[k], end):
            local = g - graph.subgraph_offsets[k]
            if graph.tensors[g].kind == "variable" and local < len(offsets):
                offsets[local] = ONLINE
    greedy, planned = _head(graph, host, None), _head(graph, host, offsets)
    target = (None, None)
    if target_scratch:
        target = (_head(graph, target_scratch, offsets), _head(graph, target_scratch, None))
    return Plan(tuple(offsets), planned, greedy, solution.lower_bound, solution.method, solution.optimal,
                max(solution.size, planned), *target)


def encode(offsets: Sequence[int], subgraphs: int) -> bytes:
    """The metadata buffer TFLM reads: int32 little endian ``[0, subgraphs, n, offsets...]``."""
    return struct.pack(f"<{3 + len(offsets)}i", 0, subgraphs, len(offsets), *offsets)


def read_plan(tflite: bytes) -> tuple[int, ...] | None:
    """The offsets of the model's ``OfflineMemoryAllocation`` entry, or None without one."""
    from ai_edge_litert import schema_py_generated as schema

    from edgeq.model.tflite_info import parse

    parse(tflite)  # the reader below trusts its input
    model = schema.Model.GetRootAs(tflite, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() is not None and entry.Name().decode("utf-8", "replace") == METADATA_NAME:
            if not 0 <= entry.Buffer() < model.BuffersLength():
                raise ModelError(f"the model's {METADATA_NAME} metadata points at buffer {entry.Buffer()}, "
                                 f"which does not exist ({model.BuffersLength()} buffers)")
            data = model.Buffers(entry.Buffer()).DataAsNumpy()
            raw = bytes(data) if not isinstance(data, int) else b""
            if len(raw) < 12 or len(raw) % 4:
                raise ModelError(f"the model's {METADATA_NAME} metadata has {len(raw)} bytes, not a list of int32")
            values = struct.unpack(f"<{len(raw) // 4}i", raw)
            if values[2] != len(values) - 3:
                raise ModelError(f"the model's {METADATA_NAME} metadata announces {values[2]} offsets "
                                 f"but holds {len(values) - 3}")
            return tuple(values[3:])
    return None


def write_plan(tflite: bytes, plan: Plan) -> bytes:
    """``tflite`` with ``plan`` as its ``OfflineMemoryAllocation`` metadata (an existing
    entry is replaced); every buffer stays 16-byte aligned, as the converter wrote it."""
    from ai_edge_litert import schema_py_generated as schema

    from edgeq.model.tflite_info import parse

    parse(tflite)
    model = schema.ModelT.InitFromPackedBuf(bytes(tflite), 0)
    total = sum(len(sg.tensors or []) for sg in model.subgraphs)
    if len(plan.offsets) != total:
        raise ModelError(f"the memory plan has {len(plan.offsets)} offsets but the model has {total} tensors",
                         hint="compute the plan from the same model you write it into")
    buffers = list(model.buffers or [])
    if any(int(b.offset or 0) > 1 for b in buffers):
        raise ModelError("the model keeps buffers outside its flatbuffer (a >2 GB layout); edgeq cannot rewrite it")
    payload = schema.BufferT()
    payload.data = list(encode(plan.offsets, len(model.subgraphs)))
    entries = [m for m in (model.metadata or []) if metadata_name(m) != METADATA_NAME]
    old = [int(m.buffer) for m in (model.metadata or []) if metadata_name(m) == METADATA_NAME]
    if old and 0 <= old[0] < len(buffers) and _only_user(model, old[0]):
        buffers[old[0]] = payload
        index = old[0]
    else:
        buffers.append(payload)
        index = len(buffers) - 1
    entry = schema.MetadataT()
    entry.name, entry.buffer = METADATA_NAME, index
    model.metadata = entries + [entry]
    model.buffers = buffers
    return pack_aligned(model, len(tflite) + 4 * total + 1024)


def pack_aligned(model: Any, size_hint: int) -> bytes:
    """Pack a ``schema.ModelT`` with every buffer's data 16-byte aligned (see ``_Aligned``)."""
    import flatbuffers

    model.buffers = [b if isinstance(b, _Aligned) else _Aligned(b) for b in model.buffers or []]
    builder = flatbuffers.Builder(size_hint)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def metadata_name(entry: Any) -> str:
    """A ``MetadataT`` entry's name as text (the object API gives bytes)."""
    name = entry.name
    return name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name or "")


def _only_user(model: Any, buffer: int) -> bool:
    """Whether nothing but the old plan's metadata entry points at ``buffer``."""
    tensors = any(int(t.buffer) == buffer for sg in model.subgraphs for t in sg.tensors or [])
    entries = sum(1 for m in model.metadata or [] if int(m.buffer) == buffer)
    return not tensors and entries == 1 and buffer != 0


class _Aligned:
    """A ``BufferT`` packed with its data 16-byte aligned (the schema's ``force_align: 16``,
    which the Python object API ignores): TFLM reads int32 biases and this plan in place."""

    def __init__(self, buf: Any) -> None:
        self.buf = buf

    def Pack(self, builder: Any) -> int:  # noqa: N802 (the object API's name)
        from ai_edge_litert import schema_py_generated as schema

        data = self.buf.data
        vector = None
        if data is not None:
            raw = bytes(bytearray(data)) if not hasattr(data, "tobytes") else data.tobytes()
            builder.StartVector(1, len(raw), 16)
            builder.head = builder.head - len(raw)
            builder.Bytes[builder.head : builder.head + len(raw)] = raw
            builder.vectorNumElems = len(raw)
            vector = builder.EndVector()
        schema.BufferStart(builder)
        if vector is not None:
            schema.BufferAddData(builder, vector)
        schema.BufferAddOffset(builder, int(self.buf.offset or 0))
        schema.BufferAddSize(builder, int(self.buf.size or 0))
        return int(schema.BufferEnd(builder))


@dataclass(frozen=True)
class PlanReport:
    """What ``choose_plan`` measured and decided."""

    kept: bool
    reason: str
    plan: Plan
    arena_without: int | None = None  # bisected minimal host arena, bytes
    arena_with: int | None = None
    flash_without: int = 0
    flash_with: int | None = None
    samples: int = 0
    outputs_identical: bool | None = None
    measured_with: "MicroResult | None" = None  # TFLM's run of the planned model (allocation report; no outputs)

    def to_dict(self) -> dict[str, Any]:
        return {"kept": self.kept, "reason": self.reason, "plan": self.plan.to_dict(),
                "arena_without_bytes": self.arena_without, "arena_with_bytes": self.arena_with,
                "flash_without_bytes": self.flash_without, "flash_with_bytes": self.flash_with,
                "samples": self.samples, "outputs_identical": self.outputs_identical}


def probe_inputs(tflite: bytes, count: int = 3, seed: int = 0) -> list[np.ndarray]:
    """``count`` deterministic inputs per model input (full integer range, or normal floats),
    stacked along the batch dimension as ``edgeq.check.micro.MicroRun`` takes them."""
    import numpy as np

    from edgeq.model.tflite_info import parse

    info = parse(tflite)
    rng = np.random.default_rng(seed)
    stack = all(t.shape and t.shape[0] == 1 for t in info.inputs)
    n = count if stack else 1
    arrays = []
    for t in info.inputs:
        shape = (n, *t.shape[1:]) if stack else t.shape
        dtype = t.numpy_dtype
        if np.issubdtype(dtype, np.integer):
            lim = np.iinfo(dtype)
            arrays.append(rng.integers(lim.min, int(lim.max) + 1, size=shape).astype(dtype))
        else:
            arrays.append(rng.standard_normal(shape).astype(dtype))
    return arrays


def choose_plan(tflite: bytes, *, scratch: Scratch | None = None, target_scratch: Scratch | None = None,
                samples: int = 3, inputs: Sequence[np.ndarray] | None = None, baseline: MicroResult | None = None,
                timeout: float = 600.0) -> tuple[bytes, PlanReport]:
    """The model with a memory plan if that measurably shrinks TFLM's host arena and leaves
    every output byte unchanged on ``samples`` deterministic inputs, else ``tflite`` unchanged.

    Both models run on the real TFLM runtime (bisected minimal arena, 16-byte steps) at once.
    A plan the replica predicts to save nothing is not measured: the build measures the
    model anyway. ``inputs`` (model dtypes, stacked along the batch) replace the probe
    inputs, e.g. the quantized evaluation samples; ``baseline`` is the caller's own
    ``edgeq.check.micro`` result for ``tflite`` on those ``inputs`` (bisected, with outputs), which
    saves measuring the unplanned model again. ``ModelError`` only for a model TFLM cannot
    run without a plan either.
    """
    from edgeq.check.micro import MicroRun
    from edgeq.model.tflite_info import parse

    info = parse(tflite)
    graph = read_graph(tflite, info)
    proposal = plan(graph, scratch=scratch, target_scratch=target_scratch)
    if proposal.gain <= 0:
        why = (f"TFLM's planner already reaches {proposal.greedy_bytes:,} B, and no plan that reserves every op's "
               f"scratch room (lower bound {proposal.lower_bound:,} B with it) does better; no plan needed")
        return tflite, PlanReport(False, why, proposal, flash_without=len(tflite))
    planned = write_plan(tflite, proposal)
    if inputs is None:
        if baseline is not None:
            raise ValueError("choose_plan: a baseline needs the inputs it was measured on")
        inputs = probe_inputs(tflite, samples)
    samples = int(inputs[0].shape[0]) if inputs and inputs[0].ndim else 1
    trial_run = MicroRun(planned, parse(planned), inputs)
    if baseline is None or baseline.arena_bytes is None or not baseline.outputs:
        baseline = MicroRun(tflite, info, inputs).result(timeout)
    base = baseline
    try:
        trial = trial_run.result(timeout)
    except ModelError as exc:
        return tflite, PlanReport(False, f"TFLM refused the planned model: {exc.message}", proposal,
                                  base.arena_bytes, None, len(tflite), len(planned), samples)
    same = len(base.outputs) == len(trial.outputs) and all(
        a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
        for a, b in zip(base.outputs, trial.outputs))
    without, with_ = base.arena_bytes, trial.arena_bytes
    smaller = without is not None and with_ is not None and with_ < without
    kept = smaller and same
    if kept:
        why = f"the plan shrinks the host arena from {without:,} B to {with_:,} B; outputs identical"
    elif not same:
        why = "the planned model computed different output bytes: plan dropped"
    else:
        why = f"the plan does not shrink the host arena ({without} B without, {with_} B with): plan dropped"
    report = PlanReport(kept, why, proposal, without, with_, len(tflite), len(planned), samples, same,
                        dataclasses.replace(trial, outputs=()))
    return (planned if kept else tflite), report


__all__ = ["METADATA_NAME", "Plan", "PlanReport", "choose_plan", "encode", "metadata_name", "pack_aligned", "plan",
           "probe_inputs",
           "read_plan", "write_plan"]
