"""An operator order with a lower memory peak, for branchy models (issue 15, optional part).

Why: the lower bound edgeq's memory plan reaches is the peak of simultaneously live tensors
*for the op order in the file*, and the converter orders a residual or multi-branch graph
without looking at memory: it may run a shortcut branch first and keep its output alive
through the whole main branch, or the other way round. TFLM runs operators in the order of
the subgraph's list, so a different topological order of the same operators computes the
same bytes (each kernel sees the same inputs) with other tensor lifetimes.

How: the live bytes while op ``o`` runs after the set ``S`` of ops already run are
``resident(S)`` (tensors produced, or graph inputs, that an op outside ``S`` or the graph's
outputs still need) plus ``o``'s outputs and scratch: TFLM's allocation scopes
(``edgeq.check.tensor_lifetimes``) in set form. ``best_order`` minimises the largest of those
over all topological orders exactly, by memoised search over the sets of ops already run
(for a mostly sequential graph there are few such sets: one per combination of positions
in the parallel branches), within ``state_budget`` sets; beyond it, a greedy order (always
the ready op that keeps the peak lowest, ties in file order) is the fallback.

Only single-subgraph models without control flow are reordered; ops that touch a variable
tensor keep their relative order (their state passes through the variable, not a tensor
edge). The pipeline keeps a new order only when TFLM then measures a smaller arena and the
same output bytes (``edgeq.firmware.memory_step``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from edgeq.check.tensor_lifetimes import Graph, align
from edgeq.errors import ModelError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from edgeq.check.micro import MicroResult
    from edgeq.firmware.memory_plan import PlanReport

#: Sets of already-run ops the exact search may visit; ~1 s of Python at most.
STATE_BUDGET = 10_000
#: Beyond this many ops only the greedy order is tried (the exact search recurses once per op).
EXACT_MAX_OPS = 400
_CONTROL_FLOW = ("IF", "WHILE", "CALL_ONCE")


class _Budget(Exception):
    """The exact search met its state budget."""


@dataclass(frozen=True)
class OrderResult:
    """The best order found and the peaks it gives (bytes, TFLM's 16-byte alignment)."""

    order: tuple[int, ...]  # op indices of the file, in the new execution order
    peak: int  # lower bound with ``order``
    original_peak: int  # lower bound with the file's order
    exact: bool  # the search covered every topological order

    @property
    def changed(self) -> bool:
        return self.order != tuple(range(len(self.order)))

    @property
    def gain(self) -> int:
        return self.original_peak - self.peak

    def to_dict(self) -> dict[str, Any]:
        moved = sum(1 for k, j in enumerate(self.order) if k != j)
        return {"peak_bytes": self.peak, "original_peak_bytes": self.original_peak, "exact": self.exact,
                "moved_ops": moved}


def eligible(graph: Graph) -> bool:
    """Whether edgeq may reorder this graph's operators (see the module docstring)."""
    return len(graph.subgraph_offsets) == 1 and len(graph.ops) > 2 and not any(
        op.name in _CONTROL_FLOW for op in graph.ops)


class _Problem:
    """The graph as bitmasks: which op produces and which ops consume each planned tensor."""

    def __init__(self, graph: Graph, scratch: Mapping[int, int | Sequence[int]]) -> None:
        ops = graph.ops
        self.n = len(ops)
        producer: dict[int, int] = {}
        for j, op in enumerate(ops):
            for t in op.outputs:
                producer.setdefault(t, j)
        consumers: dict[int, int] = {}
        for j, op in enumerate(ops):
            for t in op.inputs:
                if t >= 0:
                    consumers[t] = consumers.get(t, 0) | (1 << j)
        outputs = set(graph.outputs)
        self.deps = [0] * self.n
        for j, op in enumerate(ops):
            for t in op.inputs:
                if t >= 0 and t in producer and producer[t] != j:
                    self.deps[j] |= 1 << producer[t]
        stateful = [j for j, op in enumerate(ops)
                    if any(t >= 0 and graph.tensor(t).kind == "variable" for t in (*op.inputs, *op.outputs))]
        for a, b in zip(stateful, stateful[1:]):
            self.deps[b] |= 1 << a
        # planned tensors: (bytes, producer or -1, consumer mask, kept to the end)
        self.tensors: list[tuple[int, int, int, bool]] = []
        for i, t in enumerate(graph.tensors):
            if t.planned and (i in producer or i in graph.inputs):
                self.tensors.append((t.aligned, producer.get(i, -1), consumers.get(i, 0), i in outputs))
        self.out_bytes = [0] * self.n
        self.dying: list[list[tuple[int, int]]] = [[] for _ in range(self.n)]  # (bytes, consumers) read by op j
        self.unread = [0] * self.n  # bytes of op j's outputs nothing reads: alive only while j runs
        for size, p, cons, keep in self.tensors:
            if p >= 0:
                self.out_bytes[p] += size
                if not cons and not keep:
                    self.unread[p] += size
            if not keep:
                for j in range(self.n):
                    if cons >> j & 1:
                        self.dying[j].append((size, cons))
        self.scratch = [0] * self.n
        for j, sizes in scratch.items():
            if 0 <= j < self.n:
                self.scratch[j] = sum(align(int(s)) for s in ((sizes,) if isinstance(sizes, int) else sizes))
        self.full = (1 << self.n) - 1
        self.start = sum(size for size, p, cons, keep in self.tensors if p < 0 and (keep or cons))
        self.scope0 = sum(size for size, p, _, _ in self.tensors if p < 0)  # TFLM's first scope: every input

    def after(self, done: int, resident: int, j: int) -> int:
        """Bytes alive between ops once ``j`` has run after ``done`` (``resident`` before it)."""
        now = done | 1 << j
        freed = sum(size for size, cons in self.dying[j] if cons & ~now == 0)
        return resident + self.out_bytes[j] - self.unread[j] - freed

    def step(self, resident: int, j: int) -> int:
        """Live bytes while op ``j`` runs, ``resident`` bytes alive before it."""
        return resident + self.out_bytes[j] + self.scratch[j]

    def ready(self, done: int) -> list[int]:
        return [j for j in range(self.n) if not done >> j & 1 and self.deps[j] & ~done == 0]

    def peak_of(self, order: Sequence[int]) -> int:
        done, resident = 0, self.start
        peak = self.scope0
        for j in order:
            peak = max(peak, self.step(resident, j))
            resident = self.after(done, resident, j)
            done |= 1 << j
        return peak


def best_order(graph: Graph, scratch: Mapping[int, int | Sequence[int]] | None = None, *,
               state_budget: int = STATE_BUDGET) -> OrderResult:
    """The topological order of ``graph``'s operators with the lowest peak of live bytes
    (``scratch``: bytes per op, as ``edgeq.check.memory_profile.profile`` takes them; None:
    TFLM's reference kernels'). The file's own order wins ties."""
    from edgeq.check.tensor_lifetimes import reference_scratch

    prob = _Problem(graph, reference_scratch(graph) if scratch is None else scratch)
    original = tuple(range(prob.n))
    base = prob.peak_of(original)
    if not eligible(graph):
        return OrderResult(original, base, base, False)
    memo: dict[int, tuple[int, int]] = {}

    def best(done: int, resident: int) -> tuple[int, int]:
        """(lowest peak of the ops not in ``done``, the op to run next for it)."""
        if done in memo:
            return memo[done]
        if len(memo) >= state_budget:
            raise _Budget
        if done == prob.full:
            return 0, -1
        choice = (1 << 62, -1)
        for j in prob.ready(done):
            here = prob.step(resident, j)
            if here >= choice[0]:
                continue  # cannot beat the choice so far (ties go to the lower op index)
            rest, _ = best(done | 1 << j, prob.after(done, resident, j))
            value = max(here, rest)
            if value < choice[0]:
                choice = (value, j)
        memo[done] = choice
        return choice

    try:
        if prob.n > EXACT_MAX_OPS:
            raise _Budget
        best(0, prob.start)
        order, done = [], 0
        while done != prob.full:
            j = memo[done][1]
            order.append(j)
            done |= 1 << j
        exact = True
    except _Budget:
        order, exact = _greedy(prob), False
    peak = prob.peak_of(order)
    if peak >= base:
        return OrderResult(original, base, base, exact)
    return OrderResult(tuple(order), peak, base, exact)


def _greedy(prob: _Problem) -> list[int]:
    order, done, resident = [], 0, prob.start
    while done != prob.full:
        j = min(prob.ready(done), key=lambda k: (prob.step(resident, k), k))
        order.append(j)
        resident = prob.after(done, resident, j)
        done |= 1 << j
    return order


def reorder(tflite: bytes, order: Sequence[int]) -> bytes:
    """``tflite`` with subgraph 0's operators in ``order`` (a permutation of their indices);
    tensors, buffers and metadata are untouched."""
    from ai_edge_litert import schema_py_generated as schema

    from edgeq.firmware.memory_plan import pack_aligned

    model = schema.ModelT.InitFromPackedBuf(bytes(tflite), 0)
    ops = model.subgraphs[0].operators or []
    if sorted(order) != list(range(len(ops))):
        raise ValueError("reorder: the order must be a permutation of the operators")
    model.subgraphs[0].operators = [ops[j] for j in order]
    return pack_aligned(model, len(tflite) + 1024)


@dataclass(frozen=True)
class OrderReport:
    """What ``choose_order`` found, measured and decided."""

    kept: bool
    reason: str
    search: OrderResult
    arena_without: int | None = None  # the host arena to beat (the file's order, with its plan if kept)
    arena_with: int | None = None  # the reordered model's (with its own plan if that was kept)
    plan: "PlanReport | None" = None  # the offline plan tried on the reordered model
    measured: "MicroResult | None" = None  # TFLM's run of the model kept (allocation report; no outputs)
    data: bytes = dataclasses.field(default=b"", repr=False)  # the model to ship, when kept

    def to_dict(self) -> dict[str, Any]:
        return {"kept": self.kept, "reason": self.reason, **self.search.to_dict(),
                "arena_without_bytes": self.arena_without, "arena_with_bytes": self.arena_with}


def choose_order(tflite: bytes, inputs: "Sequence[np.ndarray]", outputs: "Sequence[np.ndarray]", arena: int, *,
                 target_scratch: Mapping[int, int] | None = None, timeout: float = 600.0) -> OrderReport:
    """Reorder ``tflite``'s operators where that lowers the peak, and keep the new order only if
    TFLM then runs it on ``inputs`` with every output byte equal to ``outputs`` (the file's,
    stacked over the samples) and a host arena below ``arena`` (with an offline plan of its
    own where that shrinks it further). ``target_scratch`` is the file's ops' scratch on
    the build's target, for the reordered model's plan (remapped to the new order)."""
    from edgeq.check.micro import MicroRun
    from edgeq.check.tensor_lifetimes import read_graph
    from edgeq.firmware.memory_plan import choose_plan
    from edgeq.model.tflite_info import parse

    graph = read_graph(tflite)
    found = best_order(graph)
    if not found.changed:
        why = ("the file's operator order already has the lowest peak" if eligible(graph) else
               "edgeq reorders only single-subgraph models without control flow")
        return OrderReport(False, why, found, arena)
    reordered = reorder(tflite, found.order)
    try:
        run = MicroRun(reordered, parse(reordered), inputs).result(timeout)
    except ModelError as exc:
        return OrderReport(False, f"TFLM refused the reordered model: {exc.message}", found, arena)
    n = int(inputs[0].shape[0]) if inputs and inputs[0].ndim else 1
    same = len(run.outputs) == len(outputs) and all(
        a[:n].tobytes() == b.tobytes() for a, b in zip(outputs, run.outputs))
    if not same:
        return OrderReport(False, "the reordered model computed different output bytes: order dropped", found, arena)
    moved = {new: old for new, old in enumerate(found.order)}
    scratch = {k: target_scratch[old] for k, old in moved.items() if old in target_scratch} if target_scratch else None
    planned, plan = choose_plan(reordered, inputs=inputs, baseline=run, target_scratch=scratch, timeout=timeout)
    with_ = plan.arena_with if plan.kept else run.arena_bytes
    measured = plan.measured_with if plan.kept else dataclasses.replace(run, outputs=())
    if with_ is None or with_ >= arena:
        return OrderReport(False, f"the reordered model does not shrink the host arena ({arena:,} B without, "
                           f"{with_} B with): order dropped", found, arena, with_, plan)
    why = (f"running {found.to_dict()['moved_ops']} ops in another order lowers the peak from {found.original_peak:,} B "
           f"to {found.peak:,} B and the host arena from {arena:,} B to {with_:,} B; outputs identical")
    return OrderReport(True, why, found, arena, with_, plan, measured, planned if plan.kept else reordered)


__all__ = ["OrderReport", "OrderResult", "STATE_BUDGET", "best_order", "choose_order", "eligible", "reorder"]
