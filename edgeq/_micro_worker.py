"""Runs TFLite Micro's Python runtime in a child process (run as a script by ``edgeq.micro``).

TFLM aborts or segfaults its whole process on a too-small arena or a failed kernel
check, so the parent never imports it. Protocol: a JSON request on stdin, a JSON reply
on stdout; the C-level stderr is captured to read the allocation report.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from typing import Any

import numpy as np

ALIGN = 16


def _capture_fd2(fn: Any) -> tuple[Any, str]:
    """Call ``fn`` with fd 2 redirected to a temp file; return its result and the text."""
    sys.stderr.flush()
    with tempfile.TemporaryFile() as sink:
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            result = fn()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        sink.seek(0)
        return result, sink.read().decode("utf-8", "replace")


def _works(runtime: Any, model: bytes, arena: int, inputs: list[np.ndarray]) -> bool:
    """True when the model allocates and invokes in ``arena`` bytes."""

    def attempt() -> bool:
        try:
            interp = runtime.Interpreter.from_bytes(model, arena_size=arena)
            for i, x in enumerate(inputs):
                interp.set_input(x, i)
            interp.invoke()
            return True
        except RuntimeError:
            return False

    ok, _ = _capture_fd2(attempt)
    return bool(ok)


def measure(req: dict[str, Any]) -> dict[str, Any]:
    from tflite_micro import runtime

    model = open(req["model"], "rb").read()
    with np.load(req["inputs"]) as z:
        samples = [z[f"x{i}"] for i in range(len(z.files))]
    first = [x[0:1] for x in samples]
    big = int(req.get("max_arena", 64 << 20))

    def first_run() -> Any:
        try:
            interp = runtime.Interpreter.from_bytes(model, arena_size=big)
        except RuntimeError as exc:
            return exc
        for i, x in enumerate(first):
            interp.set_input(x, i)
        interp.invoke()
        interp.print_allocations()
        return interp

    interp, log = _capture_fd2(first_run)
    if isinstance(interp, Exception):
        missing = sorted(set(re.findall(r"Didn't find op for builtin opcode '([A-Z0-9_]+)'", log)))
        return {"ok": False, "error": str(interp), "log": log[-4000:], "missing_ops": missing}
    m = re.search(r"Arena allocation total (\d+) bytes", log)
    reported = int(m.group(1)) if m else None

    # Bisection on multiples of ALIGN: smallest arena in which allocate + invoke succeed.
    lo, hi = 0, (-(-(reported + 4 * ALIGN) // ALIGN) * ALIGN) if reported else big
    if not _works(runtime, model, hi, first):
        hi = big
    while hi - lo > ALIGN:
        mid = (lo + hi) // 2 // ALIGN * ALIGN
        if mid <= lo:
            break
        if _works(runtime, model, mid, first):
            hi = mid
        else:
            lo = mid

    outputs: list[list[np.ndarray]] = []
    for k in range(samples[0].shape[0]):
        for i, x in enumerate(samples):
            interp.set_input(x[k : k + 1], i)
        interp.invoke()
        outputs.append([np.array(interp.get_output(j)) for j in range(req["n_outputs"])])
    out_path = req["outputs"]
    np.savez(out_path, **{f"y{j}": np.concatenate([o[j] for o in outputs]) for j in range(req["n_outputs"])})
    return {"ok": True, "reported_bytes": reported, "bisected_bytes": hi, "samples": len(outputs)}


def main() -> None:
    req = json.loads(sys.stdin.read())
    reply = measure(req)
    sys.stdout.write(json.dumps(reply))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
