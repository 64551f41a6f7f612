"""The tensor arena a target needs, derived from the arena TFLM needs on the host.

Why a rule and not the host figure: the host runtime (x86-64, reference kernels) and a
Cortex-M build (32-bit pointers, CMSIS-NN kernels with scratch buffers) lay out the
same model differently. Measured ``arena_used_bytes()`` (host / M4F / M3 / M55):
hello_world 1184/772/772/916, micro_speech 7312/6836/6836/7812, an int8 LSTM
3936/4052/4052/4100, person_detect 85024/82308/82308/82356 — the host is *not* an
upper bound (M55 and the LSTM exceed it). The rule, with parameters in each target's
``[arena]`` table (README "Arena rule" has the full table of measurements)::

    target = align16( ceil(host * (100 + scale_percent) / 100)
                      + cmsis_nn_extra(model, code path)
                      + headroom_bytes )

``cmsis_nn_extra`` (``edgeq.codegen.cmsis_memory``) bounds what CMSIS-NN adds to the
reference kernels: the largest per-op scratch buffer plus the kernel sums; 32-bit
pointers only make the rest smaller. The percentage and headroom absorb differences
between the TFLM version that measured the host figure and the one the firmware uses
(about 270 B between two TFLM builds here) and planner layout effects.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edgeq.errors import ToolMissingError

if TYPE_CHECKING:  # pragma: no cover
    from edgeq.micro import MicroRun
    from edgeq.targets import Target
    from edgeq.tflite_info import ModelInfo

# Light on purpose (no numpy, no flatbuffer schema at import): ``edgeq emit`` imports
# this to start TFLM's measurement before anything heavy loads.


@dataclass(frozen=True)
class ArenaFigure:
    """The arena written to ``k<Name>TensorArenaSize`` and how it was derived."""

    target_bytes: int
    host_bytes: int | None
    cmsis_nn_bytes: int
    rule: str

    def to_dict(self) -> dict[str, object]:
        return {"target_bytes": self.target_bytes, "host_bytes": self.host_bytes,
                "cmsis_nn_extra_bytes": self.cmsis_nn_bytes, "rule": self.rule}


def target_arena(host_bytes: int, *, tflite: bytes | None, target: Target) -> ArenaFigure:
    """Apply ``target``'s arena rule to a host-measured arena (integer maths: deterministic).

    ``tflite`` gives the CMSIS-NN term; without it only the percentage and headroom apply.
    """
    from edgeq.codegen.cmsis_memory import cmsis_nn_extra

    rule = target.arena
    scaled = -(-host_bytes * (100 + rule.scale_percent) // 100)
    extra = cmsis_nn_extra(tflite, rule.cmsis_nn).total if (tflite is not None and rule.cmsis_nn) else 0
    raw = scaled + extra + rule.headroom_bytes
    aligned = -(-raw // rule.align_bytes) * rule.align_bytes
    path = f"CMSIS-NN ({rule.cmsis_nn}) buffers {extra} B + " if rule.cmsis_nn else ""
    text = f"host {host_bytes} B x (1 + {rule.scale_percent}%) + {path}headroom {rule.headroom_bytes} B, aligned to {rule.align_bytes}"
    return ArenaFigure(target_bytes=aligned, host_bytes=host_bytes, cmsis_nn_bytes=extra, rule=text)


def measure_host_arena(tflite: bytes, *, info: ModelInfo | None = None, timeout: float = 300.0) -> int:
    """TFLM's "Arena allocation total" on this host: the input of the arena rule.

    Measured by ``edgeq.micro``'s worker (a child process whose probes survive TFLM
    segfaults), the same run ``edgeq build`` makes, so ``emit`` and ``build`` write the
    same ``k<Name>TensorArenaSize``. The rule was calibrated against QEMU runs with this
    figure as input; the host's *minimal* arena (``micro.arena_bytes``) is larger by the
    temporary allocations of kernel preparation, which the rule's margin covers on the
    target. ``ToolMissingError`` if tflite-micro is not installed.
    """
    run = start_host_arena_measurement(tflite, info=info)
    return finish_host_arena_measurement(run, tflite=tflite, info=info, timeout=timeout)


def _require_runtime() -> None:
    from edgeq.micro import runtime_available

    if not runtime_available():
        raise ToolMissingError(
            "measuring the tensor arena needs the tflite-micro Python package",
            hint="pip install tflite-micro (x86-64 Linux only), or pass the host arena with --arena-bytes "
            "(e.g. from `edgeq inspect` on an x86-64 Linux machine)",
        )


def start_host_arena_measurement(tflite: bytes | None = None, *, info: ModelInfo | None = None, path: Path | None = None) -> "MicroRun":
    """Start the measurement without waiting, so the caller can format C meanwhile.

    With ``path`` instead of bytes it starts before the caller has read or parsed the
    model (``edgeq emit`` does this first thing); ``finish_host_arena_measurement``
    then checks that the worker measured the bytes the caller read.
    """
    _require_runtime()
    from edgeq.micro import MicroRun

    if tflite is None:
        if path is None:
            raise TypeError("start_host_arena_measurement needs the model bytes or its path")
        return MicroRun.report(Path(path))
    from edgeq.tflite_info import parse

    return MicroRun(tflite, info if info is not None else parse(tflite), None, bisect=False)


def cancel_host_arena_measurement(run: "MicroRun") -> None:
    """Stop a measurement whose result is no longer wanted."""
    run.cancel()


def finish_host_arena_measurement(
    run: "MicroRun", *, tflite: bytes | None = None, info: ModelInfo | None = None, timeout: float = 300.0
) -> int:
    """Wait for ``run``'s figure. A run started from a path needs the bytes the caller
    read (``tflite``, ``info``): if the file changed in between, those are measured again."""
    from edgeq.micro import StaleModelError

    if tflite is not None and info is None:
        from edgeq.tflite_info import parse

        info = parse(tflite)
    try:
        result = run.result(timeout, info=info, expect_sha256=info.sha256 if run.from_path and info is not None else None)
    except StaleModelError:
        assert tflite is not None and info is not None
        return measure_host_arena(tflite, info=info, timeout=timeout)
    assert result.arena_reported_bytes is not None
    return int(result.arena_reported_bytes)


__all__ = ["ArenaFigure", "target_arena", "measure_host_arena", "start_host_arena_measurement", "finish_host_arena_measurement", "cancel_host_arena_measurement"]
