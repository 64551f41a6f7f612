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

import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass

from edgeq.errors import ModelError, ToolMissingError
from edgeq.codegen.cmsis_memory import cmsis_nn_extra
from edgeq.targets import Target

_ARENA_RE = re.compile(r"Arena allocation total (\d+) bytes")
# Measured in a child process: TFLM aborts the process on a failed kernel check or a
# too-small arena, and prints its allocation report on the C-level stderr.
_MEASURE_SCRIPT = r"""
import os, sys
from tflite_micro import runtime
with open(sys.argv[1], "rb") as f:
    data = f.read()
interp = runtime.Interpreter.from_bytes(data, arena_size=int(sys.argv[2]))
sys.stdout.flush()
os.dup2(1, 2)
interp.print_allocations()
"""
_MAX_HOST_ARENA = 256 * 1024 * 1024


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
    rule = target.arena
    scaled = -(-host_bytes * (100 + rule.scale_percent) // 100)
    extra = cmsis_nn_extra(tflite, rule.cmsis_nn).total if (tflite is not None and rule.cmsis_nn) else 0
    raw = scaled + extra + rule.headroom_bytes
    aligned = -(-raw // rule.align_bytes) * rule.align_bytes
    path = f"CMSIS-NN ({rule.cmsis_nn}) buffers {extra} B + " if rule.cmsis_nn else ""
    text = f"host {host_bytes} B x (1 + {rule.scale_percent}%) + {path}headroom {rule.headroom_bytes} B, aligned to {rule.align_bytes}"
    return ArenaFigure(target_bytes=aligned, host_bytes=host_bytes, cmsis_nn_bytes=extra, rule=text)


def measure_host_arena(tflite: bytes, *, arena_size: int = 64 * 1024 * 1024, timeout: float = 300.0) -> int:
    """Run TFLM's Python runtime in a child process and return ``arena_used_bytes``.

    Used by ``edgeq emit`` when no arena is passed in (``edgeq build`` passes the one its
    micro check measured). ``ToolMissingError`` if tflite-micro is not installed.
    """
    proc = start_host_arena_measurement(tflite, arena_size=arena_size)
    return finish_host_arena_measurement(proc, timeout=timeout)


def start_host_arena_measurement(tflite: bytes, *, arena_size: int = 64 * 1024 * 1024) -> subprocess.Popen[bytes]:
    """Start the measurement without waiting, so the caller can format C meanwhile.

    The model goes through a temporary file, not a pipe: a pipe write would block until
    the child has imported TFLM, serialising exactly what this function parallelises.
    """
    fd, path = tempfile.mkstemp(prefix="edgeq-arena-", suffix=".tflite")
    with os.fdopen(fd, "wb") as f:
        f.write(tflite)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    try:
        proc = subprocess.Popen(
            [sys.executable, "-c", _MEASURE_SCRIPT, path, str(min(arena_size, _MAX_HOST_ARENA))],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        )
    except OSError:
        os.unlink(path)
        raise
    proc.edgeq_model_path = path  # type: ignore[attr-defined]  # removed by finish_...()
    return proc


def cancel_host_arena_measurement(proc: subprocess.Popen[bytes]) -> None:
    """Stop a measurement whose result is no longer wanted and remove its temp file."""
    proc.kill()
    proc.communicate()
    path = getattr(proc, "edgeq_model_path", None)
    if path and os.path.exists(path):
        os.unlink(path)


def finish_host_arena_measurement(proc: subprocess.Popen[bytes], *, timeout: float = 300.0) -> int:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise ModelError(f"measuring the TFLM arena timed out after {timeout:.0f} s") from None
    finally:
        path = getattr(proc, "edgeq_model_path", None)
        if path and os.path.exists(path):
            os.unlink(path)
    text = out.decode("utf-8", "replace")
    found = _ARENA_RE.findall(text)
    if proc.returncode == 0 and found:
        return int(found[-1])
    detail = (err.decode("utf-8", "replace") + text).strip().splitlines()
    if any("No module named 'tflite_micro'" in line for line in detail):
        raise ToolMissingError(
            "measuring the tensor arena needs the tflite-micro Python package",
            hint="pip install tflite-micro (x86-64 Linux only), or pass the host arena with --arena-bytes "
            "(e.g. from `edgeq inspect` on an x86-64 Linux machine)",
        )
    tail = " | ".join(detail[-3:]) or f"exit status {proc.returncode}"
    raise ModelError(
        f"TFLite Micro could not allocate this model on the host ({tail})",
        hint="run `edgeq inspect MODEL --micro` for details; unsupported ops or a failed kernel check abort TFLM",
    )


__all__ = ["ArenaFigure", "target_arena", "measure_host_arena", "start_host_arena_measurement", "finish_host_arena_measurement", "cancel_host_arena_measurement"]
