"""Memory profile of a .tflite under TFLM: per op its MACs, the bytes live there, scratch
requested, the peak op, and the lower bound on the non-persistent arena.

Why: RAM decides whether a model fits a microcontroller, and "which op needs the memory"
is the question a firmware engineer asks when it does not. The lower bound (the largest
sum of buffers live at one op, in TFLM's own lifetimes and 16-byte alignment, see
``edgeq.check.tensor_lifetimes``) tells whether a better memory plan can help at all
(``edgeq.firmware.memory_plan``) or only a smaller model can; the uint8 I/O line shows
what the uint8 input costs while it is live next to its int8 copy at the first QUANTIZE.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from edgeq.check.tensor_lifetimes import (Graph, Op, align, greedy_offsets, live_bytes, plan_size, read_graph,
                                          reference_scratch, requests)
from edgeq.text import printable

if TYPE_CHECKING:  # pragma: no cover
    from rich.table import Table

#: Elementwise ops counted as one operation per output element in ``macs``.
_ELEMENTWISE = {"ADD", "SUB", "MUL", "DIV", "SQUARED_DIFFERENCE", "MAXIMUM", "MINIMUM"}
#: The host (64-bit) planner's working memory while it plans (micro_allocation_info.h:27-34,
#: greedy_memory_planner.h:93-107): AllocationInfo per tensor and scratch buffer, the
#: planner's per-buffer arrays, a scratch request record.
_HOST_ALLOCATION_INFO, _PLANNER_PER_BUFFER, _HOST_SCRATCH_REQUEST = 32, 40, 16


@dataclass(frozen=True)
class OpMemory:
    """One operator of subgraph 0: its work and the arena bytes live while it runs."""

    index: int
    name: str
    macs: int
    live_bytes: int  # non-constant, non-persistent tensors live at the op (16-byte aligned)
    scratch_bytes: int  # what its kernel requests (aligned), from the caller's figures

    @property
    def total_bytes(self) -> int:
        return self.live_bytes + self.scratch_bytes

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "op": self.name, "macs": self.macs, "live_bytes": self.live_bytes,
                "scratch_bytes": self.scratch_bytes, "total_bytes": self.total_bytes}


@dataclass(frozen=True)
class MemoryProfile:
    """The profile of one model (see ``profile``)."""

    ops: tuple[OpMemory, ...]
    peak_op: int | None  # index of the first op at the lower bound
    lower_bound: int  # max over TFLM's scopes of live tensor + scratch bytes
    tensor_bound: int  # the same without scratch buffers
    greedy_bytes: int  # TFLM's GreedyMemoryPlanner on the same buffers (its non-persistent "head")
    planner_temp_bytes: int  # host estimate of what planning itself needs next to the persistent part
    uint8_io: tuple[dict[str, Any], ...]  # per uint8 input/output: its bytes and the op that converts it
    uint8_io_bound_cost: int  # how much lower the bound would be with int8 I/O
    total_macs: int
    flash_bytes: int  # the model file, which TFLM reads in place from flash

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "MemoryProfile":
        """Back from ``to_dict`` (what ``edgeq inspect`` keeps in its JSON document)."""
        ops = tuple(OpMemory(o["index"], o["op"], o["macs"], o["live_bytes"], o["scratch_bytes"]) for o in d["ops"])
        return cls(ops, d["peak_op"], d["lower_bound_bytes"], d["tensor_bound_bytes"], d["greedy_bytes"],
                   d["planner_temp_bytes"], tuple(dict(u) for u in d["uint8_io"]), d["uint8_io_bound_cost_bytes"],
                   d["total_macs"], d["flash_bytes"])

    @property
    def peak(self) -> OpMemory | None:
        return None if self.peak_op is None else self.ops[self.peak_op]

    def to_dict(self) -> dict[str, Any]:
        return {"ops": [o.to_dict() for o in self.ops], "peak_op": self.peak_op,
                "lower_bound_bytes": self.lower_bound, "tensor_bound_bytes": self.tensor_bound,
                "greedy_bytes": self.greedy_bytes, "planner_temp_bytes": self.planner_temp_bytes,
                "uint8_io": [dict(d) for d in self.uint8_io], "uint8_io_bound_cost_bytes": self.uint8_io_bound_cost,
                "total_macs": self.total_macs, "flash_bytes": self.flash_bytes}

    def summary(self, arena: int | None = None, *, head: int | None = None, tail: int | None = None) -> str:
        """One line: total MACs, flash, arena and arena / lower bound; with TFLM's allocation
        report (``head``: non-persistent, ``tail``: persistent bytes) how the arena splits."""
        peak = self.peak
        where = f" at op {peak.index} {printable(peak.name, keep='')}" if peak else ""
        text = (f"{_si(self.total_macs)} MACs, flash {self.flash_bytes:,} B, lower bound {self.lower_bound:,} B{where}, "
                f"TFLM plans {self.greedy_bytes:,} B")
        if self.lower_bound:
            text += f" ({self.greedy_bytes / self.lower_bound:.2f}x the lower bound)"
        if arena is not None:
            ratio = f", {arena / self.lower_bound:.2f}x the lower bound" if self.lower_bound else ""
            if tail is not None and head is not None:
                rest = max(0, arena - head - tail)
                text += (f"; arena {arena:,} B{ratio}: {tail:,} B persistent (TFLM's allocation report: tensor "
                         f"structs, kernel data, per-channel arrays), {head:,} B planned"
                         + (f", {rest:,} B needed only while TFLM allocates" if rest else ""))
            else:
                text += (f"; arena {arena:,} B{ratio}: {max(0, arena - self.greedy_bytes):,} B of it persistent "
                         "(tensor structs, kernel data, per-channel arrays)")
        return text


def _si(n: int) -> str:
    for unit, scale in (("G", 10**9), ("M", 10**6), ("k", 10**3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return str(n)


def op_macs(graph: Graph, op: Op) -> int:
    """Multiply-accumulates of one op from its shapes (0 where not modelled).

    Conv/depthwise/transpose conv/3-D conv, FULLY_CONNECTED, BATCH_MATMUL, the fused LSTM
    (four gates, input and recurrent weights) and SVDF are MACs; elementwise arithmetic
    (``_ELEMENTWISE``) counts one per output element, pooling one per window element,
    MEAN/SUM one per input element. Everything else (reshapes, activations, quantize) is 0.
    """
    def shape(k: int) -> tuple[int, ...]:
        if k >= len(op.inputs) or op.inputs[k] < 0:
            return ()
        return graph.tensor(op.inputs[k], op.subgraph).shape

    out = graph.tensor(op.outputs[0], op.subgraph).shape if op.outputs else ()
    n_out, w, x = math.prod(out) if out else 0, shape(1), shape(0)
    name = op.name
    if name in ("CONV_2D", "CONV_3D") and len(w) >= 4:
        per = math.prod(w[1:]) if name == "CONV_2D" else math.prod(w[:-1])
        return n_out * per
    if name == "DEPTHWISE_CONV_2D" and len(w) == 4:
        return n_out * w[1] * w[2]
    if name == "TRANSPOSE_CONV" and len(w) == 4:
        return math.prod(shape(2)) * w[0] * w[1] * w[2]
    if name == "FULLY_CONNECTED" and len(w) == 2:
        return n_out * w[1]
    if name == "BATCH_MATMUL" and len(x) >= 2:
        return n_out * (x[-2] if getattr(op.options, "adjX", False) else x[-1])
    if name == "UNIDIRECTIONAL_SEQUENCE_LSTM" and len(x) == 3 and out:
        units = out[-1]
        return x[0] * x[1] * 4 * units * (x[2] + units)
    if name == "SVDF" and len(x) == 2 and len(w) == 2:
        return x[0] * math.prod(w) + x[0] * math.prod(shape(2))
    if name in _ELEMENTWISE:
        return n_out
    if name in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        return n_out * int(getattr(op.options, "filterHeight", 1) or 1) * int(getattr(op.options, "filterWidth", 1) or 1)
    if name in ("MEAN", "SUM"):
        return math.prod(x) if x else 0
    return 0


def _planner_temp(graph: Graph, scratch_count: int) -> int:
    """What ``CommitStaticMemoryPlan`` takes from the arena while planning, on the 64-bit host
    (micro_allocator.cc:1117-1190): scratch requests, subgraph offsets, AllocationInfo per
    tensor and scratch buffer, and the planner's 40 bytes per planned buffer. When this is
    larger than the plan, no plan can shrink the arena (an unrolled LSTM of 300 tensors)."""
    buffers = len(requests(graph)) + scratch_count
    return (align(_HOST_SCRATCH_REQUEST * scratch_count) + align(8 * len(graph.subgraph_offsets))
            + align(_HOST_ALLOCATION_INFO * (len(graph.tensors) + scratch_count)) + _PLANNER_PER_BUFFER * buffers)


def profile(model: bytes | Graph, *, scratch: Mapping[int, int | Sequence[int]] | None = None) -> MemoryProfile:
    """The memory profile of ``model`` (.tflite bytes, or a ``read_graph`` result).

    ``scratch`` maps op indices of subgraph 0 to the bytes their kernels request (an int,
    or one int per buffer), e.g. CMSIS-NN's for a Cortex-M target; None means TFLM's
    reference kernels, what the host runtime requests (``reference_scratch``); ``{}`` none.
    """
    graph = model if isinstance(model, Graph) else read_graph(model)
    scratch = reference_scratch(graph) if scratch is None else scratch
    tensors_only = live_bytes(graph)
    with_scratch = live_bytes(graph, scratch)
    ops = []
    for j, op in enumerate(graph.ops):
        scopes = range(op.first, op.last + 1)
        live = max(tensors_only[t] for t in scopes)
        ops.append(OpMemory(j, op.name, op_macs(graph, op), live, max(with_scratch[t] for t in scopes) - live))
    bound = max(with_scratch, default=0)
    peak = next((o.index for o in ops if o.total_bytes == bound), None)
    reqs = requests(graph, scratch)
    scratch_count = len(reqs) - len(requests(graph))
    uint8, cost = _uint8_io(graph, with_scratch)
    return MemoryProfile(tuple(ops), peak, bound, max(tensors_only, default=0), plan_size(reqs, greedy_offsets(reqs)),
                         _planner_temp(graph, scratch_count), uint8, cost, sum(o.macs for o in ops), graph.model_bytes)


def _uint8_io(graph: Graph, load: list[int]) -> tuple[tuple[dict[str, Any], ...], int]:
    """uint8 inputs/outputs converted by a QUANTIZE op, and what they add to the bound."""
    found, saved = [], list(load)
    for role, indices in (("input", graph.inputs), ("output", graph.outputs)):
        for i in indices:
            t = graph.tensor(i)
            if t.dtype != "UINT8" or not t.planned:
                continue
            op = next((o for o in graph.ops if o.name == "QUANTIZE" and (i in o.inputs if role == "input" else i in o.outputs)), None)
            if op is None:
                continue
            found.append({"role": role, "tensor": printable(t.name, keep=""), "bytes": t.aligned, "op": op.index,
                          "live_bytes_at_op": max(load[s] for s in range(op.first, op.last + 1))})
            for s in range(max(t.first, 0), t.last + 1):
                saved[s] -= t.aligned
    return tuple(found), (max(load, default=0) - max(saved, default=0)) if found else 0


def _md(text: str) -> str:
    return printable(text, keep="").replace("|", "\\|")


def render_markdown(p: MemoryProfile, *, arena: int | None = None, planned: int | None = None,
                    allocation: Mapping[str, Any] | None = None) -> str:
    """The profile as Markdown for ``report.md``: the summary line, the persistent part's
    entries, then one row per op.

    ``arena`` is the measured arena (for the ratio), ``planned`` the non-persistent size
    with an offline memory plan, when one was kept; ``allocation`` is the TFLM check's
    ``MicroResult.to_dict()`` (its allocation report: head, tail and the tail's parts).
    """
    alloc = allocation or {}
    head, tail = alloc.get("arena_head_bytes"), alloc.get("arena_tail_bytes")
    lines = ["## Memory profile", "", p.summary(arena, head=head, tail=tail), ""]
    if planned is not None:
        lines += [f"With the offline memory plan TFLM's non-persistent part is {planned:,} B "
                  f"(without: {p.greedy_bytes:,} B).", ""]
    parts = dict(alloc.get("arena_parts") or {})
    if tail is not None and parts:
        other = tail - sum(parts.values())
        lines += ["| persistent part (TFLM's allocation report) | B |", "|---|---:|"]
        lines += [f"| {_md(name)} | {size:,} |" for name, size in parts.items()]
        if other > 0:
            lines += [f"| other (allocator, subgraph and scratch-buffer bookkeeping) | {other:,} |"]
        lines += [f"| **total persistent** | **{tail:,}** |", ""]
    for d in p.uint8_io:
        lines += [f"- uint8 {d['role']} `{_md(d['tensor'])}`: {d['bytes']:,} B, live next to its int8 copy at op "
                  f"{d['op']} (QUANTIZE, {d['live_bytes_at_op']:,} B live there)"]
    if p.uint8_io:
        lines += [f"- int8 I/O would lower the bound by {p.uint8_io_bound_cost:,} B", ""]
    lines += ["| # | op | MACs | live tensors (B) | scratch (B) | total (B) | |", "|---:|---|---:|---:|---:|---:|---|"]
    for o in p.ops:
        mark = "peak" if o.index == p.peak_op else ""
        lines.append(f"| {o.index} | {_md(o.name)} | {o.macs:,} | {o.live_bytes:,} | {o.scratch_bytes:,} | "
                     f"{o.total_bytes:,} | {mark} |")
    return "\n".join(lines) + "\n"


def rich_table(p: MemoryProfile | Mapping[str, Any]) -> Table:
    """The per-op table for ``edgeq inspect`` (names as plain text, never markup), from a
    profile or its ``to_dict()``."""
    from rich.table import Table
    from rich.text import Text

    if not isinstance(p, MemoryProfile):
        p = MemoryProfile.from_dict(p)

    table = Table(title="memory profile (per op, in TFLM's tensor lifetimes)", title_justify="left")
    for col in ("#", "op", "MACs", "live B", "scratch B", "total B", ""):
        table.add_column(col, justify="right" if col not in ("op", "") else "left")
    for o in p.ops:
        table.add_row(str(o.index), Text(printable(o.name, keep="")), f"{o.macs:,}", f"{o.live_bytes:,}",
                      f"{o.scratch_bytes:,}", f"{o.total_bytes:,}", "peak" if o.index == p.peak_op else "")
    return table


def plot(p: MemoryProfile, path: str | Path, planned_arena: int | None = None) -> Path:
    """``memory_profile.png``: live bytes per op as bars (scratch stacked on top), the lower
    bound and TFLM's greedy plan as lines, the peak op marked. ``planned_arena`` is the
    non-persistent part with edgeq's offline plan (the same scale as the bars: the
    persistent part comes on top of every line alike).

    Needs matplotlib (``pip install edgeq[plots]``); drawn without pyplot (no global
    state) and saved without a Software tag, so the same profile gives the same bytes.
    """
    from edgeq.errors import ToolMissingError

    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import FuncFormatter
    except ImportError:
        raise ToolMissingError("the memory profile plot needs matplotlib",
                               hint="pip install 'edgeq[plots]'") from None
    xs = list(range(len(p.ops)))
    fig = Figure(figsize=(max(6.0, min(24.0, 0.25 * len(xs) + 4)), 4.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.bar(xs, [o.live_bytes for o in p.ops], color="#4c72b0", label="live tensors")
    ax.bar(xs, [o.scratch_bytes for o in p.ops], bottom=[o.live_bytes for o in p.ops], color="#dd8452",
           label="scratch")
    ax.axhline(p.lower_bound, color="black", linestyle="--", linewidth=1, label=f"lower bound {p.lower_bound:,} B")
    ax.axhline(p.greedy_bytes, color="#c44e52", linewidth=1, label=f"TFLM greedy plan {p.greedy_bytes:,} B")
    if planned_arena is not None:
        ax.axhline(planned_arena, color="#55a868", linewidth=1.5, label=f"with edgeq's plan {planned_arena:,} B")
    if p.peak is not None:
        ax.annotate(f"peak: op {p.peak.index} {printable(p.peak.name, keep='')}", (p.peak.index, p.peak.total_bytes),
                    xytext=(4, 14), textcoords="offset points", ha="left", fontsize=8,
                    arrowprops={"arrowstyle": "->", "linewidth": 0.8})
    ax.set_xlabel("op index (execution order)")
    ax.set_ylabel("bytes")
    ax.set_xlim(-0.6, max(xs, default=0) + 0.6)
    top = max([p.lower_bound, p.greedy_bytes, planned_arena or 0] + [o.total_bytes for o in p.ops])
    ax.set_ylim(0, max(1, top) * 1.2)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{int(v):,}"))
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    target = Path(path)
    fig.savefig(target, format="png", metadata={"Software": None})
    return target


__all__ = ["MemoryProfile", "OpMemory", "op_macs", "plot", "profile", "render_markdown", "rich_table"]
