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
pointers only make the rest smaller. On ESP-NN targets (``[arena] esp_nn``) the same
term is ``esp_nn_extra`` (``edgeq.codegen.esp_nn_memory``): the scratch buffers
esp-tflite-micro's ESP-NN kernels request. The percentage and headroom absorb differences
between the TFLM version that measured the host figure and the one the firmware uses
(about 270 B between two TFLM builds here) and planner layout effects.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from edgeq.errors import ToolMissingError

if TYPE_CHECKING:  # pragma: no cover
    from edgeq.micro import MicroRun
    from edgeq.targets import Target
    from edgeq.tflite_info import ModelInfo

# Light on purpose (no numpy, no flatbuffer schema at import): ``edgeq emit`` imports it
# with the CLI, long before it needs either.


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

    ``tflite`` gives the CMSIS-NN (or ESP-NN) term; without it only the percentage and headroom apply.
    """
    from edgeq.codegen.cmsis_memory import cmsis_nn_extra
    from edgeq.codegen.esp_nn_memory import esp_nn_extra

    rule = target.arena
    scaled = -(-host_bytes * (100 + rule.scale_percent) // 100)
    if rule.cmsis_nn:
        extra = cmsis_nn_extra(tflite, rule.cmsis_nn).total if tflite is not None else 0
        path = f"CMSIS-NN ({rule.cmsis_nn}) buffers {extra} B + "
    elif rule.esp_nn:
        extra = esp_nn_extra(tflite, rule.esp_nn) if tflite is not None else 0
        path = f"ESP-NN ({rule.esp_nn}) buffers {extra} B + "
    else:
        extra, path = 0, ""
    raw = scaled + extra + rule.headroom_bytes
    aligned = -(-raw // rule.align_bytes) * rule.align_bytes
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
    return finish_host_arena_measurement(start_host_arena_measurement(tflite, info=info), timeout=timeout)


def _require_runtime() -> None:
    from edgeq.micro import runtime_available

    if not runtime_available():
        raise ToolMissingError(
            "measuring the tensor arena needs the tflite-micro Python package",
            hint="pip install tflite-micro (x86-64 Linux only), or pass the host arena with --arena-bytes "
            "(e.g. from `edgeq inspect` on an x86-64 Linux machine)",
        )


def start_host_arena_measurement(tflite: bytes, *, info: ModelInfo | None = None) -> "MicroRun":
    """Start the measurement without waiting, so the caller can format C meanwhile."""
    _require_runtime()
    from edgeq.micro import MicroRun
    from edgeq.tflite_info import parse

    return MicroRun(tflite, info if info is not None else parse(tflite), None, bisect=False)


def fork_host_arena_measurement(tflite: bytes) -> "MicroRun | None":
    """``start_host_arena_measurement`` in a child forked from this process, or None where
    that is not possible (no tflite-micro, no ``fork``, other threads running).

    Why: a fresh worker interpreter spends ~0.1 s of CPU on start-up and numpy before
    TFLM loads; a forked child has both already, and the bytes (``MicroRun.forked_report``).
    Needs no ``ModelInfo`` (pass it to ``finish_host_arena_measurement``). A fork copies
    only the calling thread, so it is refused while other Python threads run.
    """
    from edgeq.micro import MicroRun, runtime_available

    if not (hasattr(os, "fork") and threading.active_count() == 1 and runtime_available()):
        return None
    return MicroRun.forked_report(tflite)


def cancel_host_arena_measurement(run: "MicroRun") -> None:
    """Stop a measurement whose result is no longer wanted."""
    run.cancel()


def finish_host_arena_measurement(run: "MicroRun", *, info: ModelInfo | None = None, timeout: float = 300.0) -> int:
    """Wait for ``run``'s figure; ``info`` names the model's ops in TFLM's errors (needed
    for a forked run, which started before the model was parsed)."""
    result = run.result(timeout, info=info)
    assert result.arena_reported_bytes is not None
    return int(result.arena_reported_bytes)


__all__ = ["ArenaFigure", "target_arena", "measure_host_arena", "start_host_arena_measurement", "fork_host_arena_measurement",
           "finish_host_arena_measurement", "cancel_host_arena_measurement"]
