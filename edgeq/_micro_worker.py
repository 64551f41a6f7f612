"""Runs TFLite Micro's Python runtime in a child process (run as a script by ``edgeq.micro``).

TFLM aborts or segfaults its whole process on a too-small arena or a failed kernel
check, so the parent never imports it. Protocol: a JSON request on stdin, a JSON reply
on stdout; the C-level stderr is captured to read the allocation report.

Request: ``model`` (a .tflite path), ``bisect`` (also find the minimal arena and run
every sample), ``inputs``/``outputs``/``n_outputs`` (npz files of samples and outputs;
without ``inputs`` the model runs once on zeros shaped by TFLM's own input details),
``max_arena`` (default: ``default_max_arena`` of the file size), ``digest`` (first write
``edgeq-sha256 <hex>`` of the bytes measured to stderr, so a parent that started this run
from a path before reading the file itself can prove both saw the same model).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import tempfile
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

ALIGN = 16


def default_max_arena(model_size: int) -> int:
    """The arena of the first (reporting) run: generous, so allocation never fails for size."""
    return max(64 << 20, 8 * model_size)


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
    """True when the model allocates and invokes in ``arena`` bytes.

    Each probe runs in a forked child: some too-small arenas make TFLM segfault instead
    of failing cleanly (measured on a 10 MB model at 20,000 and 100 bytes), and a crash
    must count as "does not fit", not end the measurement.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # child
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        code = 3
        try:
            interp = runtime.Interpreter.from_bytes(model, arena_size=arena)
            for i, x in enumerate(inputs):
                interp.set_input(x, i)
            interp.invoke()
            code = 0
        except BaseException:
            code = 3
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def _minimal_arena(runtime: Any, model: bytes, inputs: list[np.ndarray], reported: int | None, big: int) -> int:
    """Smallest multiple of ALIGN in which the model allocates and runs.

    The search starts at TFLM's reported total (the arena can never be smaller than what
    it finally uses; temporary allocations while preparing kernels make it larger) and
    gallops upwards, then bisects: a handful of probes instead of ~20 from zero.
    """
    if reported is None:
        lo, hi = 0, big
    else:
        lo = max(0, reported // ALIGN * ALIGN - ALIGN)
        if lo and _works(runtime, model, lo, inputs):
            lo = 0  # never seen, but then the premise is wrong: search from zero
        step = 4 * ALIGN
        hi = lo + step
        while hi < big and not _works(runtime, model, hi, inputs):
            lo, step = hi, step * 2
            hi = min(big, lo + step)
    while hi - lo > ALIGN:
        mid = (lo + hi) // 2 // ALIGN * ALIGN
        if mid <= lo:
            break
        if _works(runtime, model, mid, inputs):
            hi = mid
        else:
            lo = mid
    return hi


def _zeros_from_details(interp: Any) -> list[np.ndarray]:
    """One zero batch per model input, shaped and typed as TFLM sees the inputs.

    The same arrays the parent would send (``np.zeros(shape, dtype)``, first row), read
    from the interpreter instead, so a run can start from nothing but the model path.
    """
    import numpy as np

    zeros = []
    while True:
        try:
            details = interp.get_input_details(len(zeros))
        except IndexError:  # TFLM's answer past the last input
            return zeros
        zeros.append(np.zeros(tuple(int(d) for d in details["shape"]), details["dtype"])[0:1])


def measure(req: dict[str, Any]) -> dict[str, Any]:
    import numpy as np
    from tflite_micro import runtime

    with open(req["model"], "rb") as f:
        model = f.read()
    if req.get("digest"):  # before TFLM runs: the parent must learn it even if TFLM crashes
        sys.stderr.write(f"edgeq-sha256 {hashlib.sha256(model).hexdigest()}\n")
        sys.stderr.flush()
    first: list[np.ndarray] | None = None
    samples: list[np.ndarray] = []
    if req.get("inputs"):
        with np.load(req["inputs"]) as z:
            samples = [z[f"x{i}"] for i in range(len(z.files))]
        first = [x[0:1] for x in samples]
    big = int(req.get("max_arena") or default_max_arena(len(model)))

    def first_run() -> Any:
        try:
            interp = runtime.Interpreter.from_bytes(model, arena_size=big)
        except RuntimeError as exc:
            return exc
        for i, x in enumerate(first if first is not None else _zeros_from_details(interp)):
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

    if not req.get("bisect", True):  # only the allocation report was asked for (edgeq emit)
        return {"ok": True, "reported_bytes": reported, "bisected_bytes": None, "samples": 0}
    if first is None:
        raise ValueError("a bisecting run needs its samples in 'inputs'")
    minimal = _minimal_arena(runtime, model, first, reported, big)

    outputs: list[list[np.ndarray]] = []
    for k in range(samples[0].shape[0]):
        for i, x in enumerate(samples):
            interp.set_input(x[k : k + 1], i)
        interp.invoke()
        outputs.append([np.array(interp.get_output(j)) for j in range(req["n_outputs"])])
    out_path = req["outputs"]
    np.savez(out_path, **{f"y{j}": np.concatenate([o[j] for o in outputs]) for j in range(req["n_outputs"])})
    return {"ok": True, "reported_bytes": reported, "bisected_bytes": minimal, "samples": len(outputs)}


def main() -> None:
    req = json.loads(sys.stdin.read())
    reply = measure(req)
    sys.stdout.write(json.dumps(reply))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
