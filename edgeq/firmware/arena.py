"""The tensor arena a target needs, derived from the smallest arena TFLM needs on the host.

Why a rule and not the host figure: the host runtime (x86-64, reference kernels) and a
Cortex-M build (32-bit pointers, CMSIS-NN kernels with scratch buffers) lay out the same
model differently. The rule, with parameters in each target's ``[arena]`` table::

    target = align16( ceil(host_min * (100 + scale_percent) / 100)
                      - host_bytes_per_tensor * tensors - host_bytes_per_op * operators
                      + cmsis_nn_extra(model, code path)
                      + headroom_bytes )

``host_min`` is the bisected minimal host arena (``micro.arena_bytes``), never TFLM's
allocation report: the report leaves out what kernels allocate while they prepare, and a
rule fed with it gave a per-channel Dense autoencoder 19,536 B where Cortex-M3/M4 need
20,672 B (``AllocateTensors`` failed in FULLY_CONNECTED's prepare). Measured on QEMU with
TFLM 90b983c2 + CMSIS-NN, the device minimum was 0.70-0.98x ``host_min`` on every model
and core apart from CMSIS-NN scratch buffers: the host's structs are 64-bit. The exact
difference per tensor (TfLiteEvalTensor 24 vs 12 B) and per operator (NodeAndRegistration
64 vs 32 B) comes off, which keeps graphs of many small tensors (an unrolled LSTM: host
90,960 B, device 71,584 B) from being over-provisioned; no percentage (``scale_percent = 0``). ``cmsis_nn_extra`` (``edgeq.firmware.cmsis_memory``)
bounds what CMSIS-NN adds: the largest per-op scratch buffer plus persistent kernel sums. On
ESP-NN targets (``[arena] esp_nn``) the same term is ``esp_nn_extra``
(``edgeq.firmware.esp_nn_memory``). The headroom absorbs differences between the TFLM of
the tflite-micro wheel that measures ``host_min`` and the one the firmware uses. README
"Arena rule" has the measurements.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from edgeq.errors import ToolMissingError

if TYPE_CHECKING:  # pragma: no cover
    from edgeq.check.micro import MicroRun
    from edgeq.firmware.targets import Target
    from edgeq.model.tflite_info import ModelInfo

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
    """Apply ``target``'s arena rule to the bisected host minimum (integer maths: deterministic).

    ``tflite`` gives the model terms (tensor and operator counts, CMSIS-NN or ESP-NN
    buffers); without it only the percentage and headroom apply, which is never smaller.
    """
    from edgeq.firmware.cmsis_memory import cmsis_nn_extra
    from edgeq.firmware.esp_nn_memory import esp_nn_extra

    rule = target.arena
    scaled = -(-host_bytes * (100 + rule.scale_percent) // 100)
    saved, saving = 0, ""
    if tflite is not None and (rule.host_bytes_per_tensor or rule.host_bytes_per_op):
        tensors, ops = _counts(tflite)
        saved = min(rule.host_bytes_per_tensor * tensors + rule.host_bytes_per_op * ops, scaled // 2)
        saving = (f" - 64-bit structs {saved} B ({rule.host_bytes_per_tensor} B x {tensors} tensors"
                  f" + {rule.host_bytes_per_op} B x {ops} ops)")
    if rule.cmsis_nn:
        extra = cmsis_nn_extra(tflite, rule.cmsis_nn).total if tflite is not None else 0
        path = f"CMSIS-NN ({rule.cmsis_nn}) buffers {extra} B + "
    elif rule.esp_nn:
        extra = esp_nn_extra(tflite, rule.esp_nn) if tflite is not None else 0
        path = f"ESP-NN ({rule.esp_nn}) buffers {extra} B + "
    else:
        extra, path = 0, ""
    raw = scaled - saved + extra + rule.headroom_bytes
    aligned = -(-raw // rule.align_bytes) * rule.align_bytes
    scale = f" x (1 + {rule.scale_percent}%)" if rule.scale_percent else ""
    text = f"host minimum {host_bytes} B{scale}{saving} + {path}headroom {rule.headroom_bytes} B, aligned to {rule.align_bytes}"
    return ArenaFigure(target_bytes=aligned, host_bytes=host_bytes, cmsis_nn_bytes=extra, rule=text)


def _counts(tflite: bytes) -> tuple[int, int]:
    """Tensors and operators of every subgraph: what TFLM allocates one eval tensor and one
    node (pointer-sized fields) for."""
    from edgeq.model.tflite_info import parse

    info = parse(tflite)
    return len(info.tensors), sum(op.count for op in info.ops)


def measure_host_arena(tflite: bytes, *, info: ModelInfo | None = None, timeout: float = 300.0) -> int:
    """The smallest arena in which TFLM allocates and runs the model on this host (bisected
    in 16-byte steps): the input of the arena rule.

    Why the bisected minimum and not TFLM's "Arena allocation total": the report leaves out
    what kernels allocate while they prepare (per-channel FULLY_CONNECTED data, scratch
    buffers). Fed the report, the rule gave a Dense autoencoder 19,536 B where Cortex-M3/M4
    need 20,672 B, and the firmware did not start. Measured by ``edgeq.check.micro``'s worker (a
    child process whose probes survive TFLM segfaults), the same run ``edgeq build`` makes,
    so ``emit`` and ``build`` write the same ``k<Name>TensorArenaSize``.
    ``ToolMissingError`` if tflite-micro is not installed.
    """
    return finish_host_arena_measurement(start_host_arena_measurement(tflite, info=info), timeout=timeout)


def _require_runtime() -> None:
    from edgeq.check.micro import runtime_available

    if not runtime_available():
        raise ToolMissingError(
            "measuring the tensor arena needs the tflite-micro Python package",
            hint="pip install tflite-micro (x86-64 Linux only), or pass the host arena with --arena-bytes "
            "(e.g. from `edgeq inspect` on an x86-64 Linux machine)",
        )


def start_host_arena_measurement(tflite: bytes, *, info: ModelInfo | None = None) -> "MicroRun":
    """Start the measurement without waiting, so the caller can format C meanwhile."""
    _require_runtime()
    from edgeq.check.micro import MicroRun
    from edgeq.model.tflite_info import parse

    return MicroRun(tflite, info if info is not None else parse(tflite), None, bisect=True)


def fork_host_arena_measurement(tflite: bytes) -> "MicroRun | None":
    """``start_host_arena_measurement`` in a child forked from this process, or None where
    that is not possible (no tflite-micro, no ``fork``, other threads running).

    Why: a fresh worker interpreter spends ~0.1 s of CPU on start-up and numpy before
    TFLM loads; a forked child has both already, and the bytes (``MicroRun.forked_report``).
    Needs no ``ModelInfo`` (pass it to ``finish_host_arena_measurement``). A fork copies
    only the calling thread, so it is refused while other Python threads run.
    """
    from edgeq.check.micro import MicroRun, runtime_available

    if not (hasattr(os, "fork") and threading.active_count() == 1 and runtime_available()):
        return None
    return MicroRun.forked_report(tflite, bisect=True)


def cancel_host_arena_measurement(run: "MicroRun") -> None:
    """Stop a measurement whose result is no longer wanted."""
    run.cancel()


def finish_host_arena_measurement(run: "MicroRun", *, info: ModelInfo | None = None, timeout: float = 300.0) -> int:
    """Wait for ``run``'s figure; ``info`` names the model's ops in TFLM's errors (needed
    for a forked run, which started before the model was parsed)."""
    result = run.result(timeout, info=info)
    assert result.arena_bytes is not None
    return int(result.arena_bytes)


__all__ = ["ArenaFigure", "target_arena", "measure_host_arena", "start_host_arena_measurement", "fork_host_arena_measurement",
           "finish_host_arena_measurement", "cancel_host_arena_measurement"]
