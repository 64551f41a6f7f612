"""The pipeline's memory step: the converted model's memory profile and, with
``--memory-plan auto``, an offline memory plan kept only where TFLM proves it pays.

Why a step of its own, after the TFLM check: the plan is judged on the real runtime
(``choose_plan`` bisects the host arena of the model with and without the plan and
compares every output byte), so it needs a model TFLM already runs and the inputs it ran;
and everything after it (the target's arena rule, the budget, the firmware's
``k...TensorArenaSize``) must see the planned figure, so it comes before them. The plan
changes only the model's metadata, never a weight or an op: outputs are identical by
construction and checked anyway.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from edgeq.check.memory_profile import MemoryProfile, plot, profile
from edgeq.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from edgeq.check.micro import MicroResult
    from edgeq.firmware.memory_plan import PlanReport
    from edgeq.firmware.op_order import OrderReport

MEMORY_PLANS = ("auto", "off")
#: Samples both models run on when a plan is tried: enough to catch a changed byte (the plan
#: moves buffers; a wrong one corrupts every sample alike), few enough to cost < 1 s.
PLAN_SAMPLES = 4


@dataclass(frozen=True)
class MemoryOutcome:
    """The profile of the converted model and what became of the plan."""

    data: bytes  # the model to ship: planned when the plan was kept, reordered when the order was
    profile: MemoryProfile  # of the model shipped, before planning (TFLM's own greedy figure inside)
    mode: str
    plan: "PlanReport | None" = None  # None: not tried (off, or TFLM did not run the model)
    chart: str | None = None  # memory_profile.png, where one was drawn (edgeq[plots])
    preplanned: bool = False  # the model came with an offline memory plan (e.g. from `edgeq quantize`): kept as is
    order: "OrderReport | None" = None  # the operator-order search (None: not tried)

    @property
    def kept(self) -> bool:
        """Whether the plan of the model shipped was kept (the reordered model's, if reordered)."""
        plan = self.order.plan if self.reordered and self.order is not None else self.plan
        return plan is not None and plan.kept

    @property
    def reordered(self) -> bool:
        return self.order is not None and self.order.kept

    @property
    def changed(self) -> bool:
        """Whether ``data`` differs from the converted model (a plan or an order kept)."""
        return self.kept or self.reordered

    @property
    def planned_bytes(self) -> int | None:
        """TFLM's non-persistent part with the kept plan."""
        plan = self.order.plan if self.reordered and self.order is not None else self.plan
        return plan.plan.planned_bytes if plan is not None and plan.kept else None

    def measured(self, micro: "MicroResult") -> "MicroResult":
        """``micro`` (TFLM's run of the model before planning) with the arena and allocation
        report of the planned model, when the plan was kept: what the arena rule, the budget
        and the report must see."""
        if self.reordered and self.order is not None:
            after, arena = self.order.measured, self.order.arena_with
        elif self.kept and self.plan is not None:
            after, arena = self.plan.measured_with, self.plan.arena_with
        else:
            return micro
        return replace(micro, arena_bytes=arena,
                       arena_reported_bytes=after.arena_reported_bytes if after else None,
                       arena_head_bytes=after.arena_head_bytes if after else None,
                       arena_tail_bytes=after.arena_tail_bytes if after else None,
                       arena_parts=after.arena_parts if after else ())

    def to_dict(self) -> dict[str, Any]:
        shipped = self.order.plan if self.reordered and self.order is not None else self.plan
        order = self.order.to_dict() if self.order is not None else None
        if order is not None and self.reordered:
            order["file_order_plan"] = self.plan.to_dict() if self.plan is not None else None
        return {"memory_plan": self.mode, "profile": self.profile.to_dict(),
                "plan": shipped.to_dict() if shipped is not None else None, "chart": self.chart,
                "preplanned": self.preplanned, "op_order": order}


def check_mode(mode: str) -> str:
    if mode not in MEMORY_PLANS:
        raise UserError(f"--memory-plan must be one of {', '.join(MEMORY_PLANS)}, not {mode!r}",
                        hint="auto keeps an offline memory plan only when it shrinks TFLM's arena; off never writes one")
    return mode


def target_scratch(data: bytes, target: Any) -> dict[int, int] | None:
    """The scratch buffers the target's kernels request per op (CMSIS-NN and ESP-NN targets;
    None for the others, whose host reference-kernel scratch is what the plan reserves)."""
    rule = getattr(target, "arena", None)
    if getattr(rule, "cmsis_nn", ""):
        from edgeq.firmware.cmsis_memory import per_op_scratch

        return per_op_scratch(data, rule.cmsis_nn)  # type: ignore[union-attr]
    if getattr(rule, "esp_nn", ""):
        from edgeq.firmware.esp_nn_memory import per_op_scratch as esp_nn_scratch

        return esp_nn_scratch(data, rule.esp_nn)  # type: ignore[union-attr]
    return None


def memory_step(data: bytes, micro: "MicroResult", inputs: "Sequence[np.ndarray] | None", *, mode: str,
                target: Any = None) -> MemoryOutcome:
    """Profile ``data``; with ``mode`` auto and a model TFLM ran (``micro``, on ``inputs``),
    try an offline plan on the first ``PLAN_SAMPLES`` of those inputs. With a ``target``
    (a build) the plan keeps room for its kernels' scratch buffers too, so the device's
    planner fits them as the host's does."""
    prof = profile(data)
    if mode == "off" or not micro.supported or micro.arena_bytes is None or not micro.outputs:
        return MemoryOutcome(data, prof, mode)
    from edgeq.firmware.memory_plan import choose_plan, read_plan

    if read_plan(data) is not None:  # TFLM already measured the model with its plan: nothing to redo
        return MemoryOutcome(data, prof, mode, preplanned=True)
    from edgeq.firmware.op_order import choose_order, reorder

    probe = [x[:PLAN_SAMPLES] for x in inputs] if inputs else None
    room = target_scratch(data, target) if target else None
    planned, report = choose_plan(data, inputs=probe, target_scratch=room)
    arena = report.arena_with if report.kept else micro.arena_bytes
    expected = micro.outputs
    if probe is None:  # TFLM ran zeros: compare the orders on probe inputs, the plan's
        from edgeq.check.micro import MicroRun
        from edgeq.firmware.memory_plan import probe_inputs
        from edgeq.model.tflite_info import parse

        probe = probe_inputs(data, PLAN_SAMPLES)
        expected = MicroRun(data, parse(data), probe, bisect=False).result().outputs
    order = choose_order(data, probe, expected, int(arena if arena is not None else micro.arena_bytes),
                         target_scratch=room)
    if order.kept:  # the profile of what ships: its op indices are the reordered file's
        return MemoryOutcome(order.data, profile(reorder(data, order.search.order)), mode, report, order=order)
    return MemoryOutcome(planned, prof, mode, report, order=order)


def save_memory_chart(outcome: MemoryOutcome, path: Path, *, final: Path) -> MemoryOutcome:
    """Draw ``memory_profile.png`` at ``path`` when matplotlib is installed (``edgeq[plots]``);
    the returned outcome names ``final``, where the file ends up (not the staging folder)."""
    import importlib.util

    path.unlink(missing_ok=True)  # maybe a hard link to the previous output's chart
    if importlib.util.find_spec("matplotlib") is None:
        return outcome
    plot(outcome.profile, path, planned_arena=outcome.planned_bytes)
    return replace(outcome, chart=str(final))


__all__ = ["MEMORY_PLANS", "MemoryOutcome", "PLAN_SAMPLES", "check_mode", "memory_step", "save_memory_chart",
           "target_scratch"]
