"""Runs TFLite Micro's Python runtime in a child process (run as a script by ``edgeq.check.micro``).

TFLM aborts or segfaults its whole process on a too-small arena or a failed kernel
check, so the parent never runs it. Protocol: a JSON request on stdin, a JSON reply
on stdout; the C-level stderr is captured to read the allocation report. ``edgeq emit``
instead forks its own process and calls ``measure_model`` in the child (see
``edgeq.check.micro.MicroRun.forked_report``), so this module imports nothing heavy.

Request: ``model`` (a .tflite path), ``bisect`` (also find the minimal arena),
``inputs``/``outputs``/``n_outputs`` (npz files of samples and of TFLM's outputs for
each of them, or for as many as fit in ``max_output_bytes``, also written without
``bisect`` when ``outputs`` is given; without
``inputs`` the model runs once on zeros shaped by TFLM's own input details),
``max_arena`` (default: ``default_max_arena`` of the model size).
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
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


def die_with_parent(parent: int) -> None:
    """Have Linux SIGKILL this (forked) process when ``parent`` dies; elsewhere a no-op.

    Why: a child killed for a timeout or a failed parse must not leave its own probe
    children running on the host, and a SIGKILLed edgeq must not leave its children.
    Call it in a child forked by the parent's only thread (the signal follows the thread).
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG, SIGKILL
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(137)


def _works(runtime: Any, model: bytes, arena: int, inputs: list[np.ndarray]) -> bool:
    """True when the model allocates and invokes in ``arena`` bytes.

    Each probe runs in a forked child: some too-small arenas make TFLM segfault instead
    of failing cleanly (measured on a 10 MB model at 20,000 and 100 bytes), and a crash
    must count as "does not fit", not end the measurement.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # child
        die_with_parent(parent)
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


#: The parent's ``EDGEQ_MAX_TENSOR_BYTES`` default (``edgeq.model.tflite_checks``); requests carry the setting.
DEFAULT_MAX_TENSOR_BYTES = 256 << 20
#: Outputs written for the samples together (beyond the first): a hostile model's 4 MB output
#: times 500 evaluation samples must not become 2 GB in $TMPDIR.
DEFAULT_MAX_OUTPUT_BYTES = 64 << 20


class TensorTooLarge(Exception):
    """An input TFLM reports is larger than the request's ``max_tensor_bytes``."""


def _zeros_from_details(interp: Any, max_bytes: int = DEFAULT_MAX_TENSOR_BYTES) -> list[np.ndarray]:
    """One zero tensor per model input, shaped and typed as TFLM sees the inputs.

    Read from the interpreter, so a run needs nothing from its parent but the model. The
    size is checked before anything is allocated: the shape comes from the model, which
    may claim gigabytes (the parent's parse refuses those, but a forked ``edgeq emit``
    child runs before the parse).
    """
    import numpy as np

    zeros = []
    while True:
        try:
            details = interp.get_input_details(len(zeros))
        except IndexError:  # TFLM's answer past the last input
            return zeros
        shape = tuple(int(d) for d in details["shape"])
        dtype = np.dtype(details["dtype"])
        if any(d < 0 for d in shape) or math.prod(shape) * dtype.itemsize > max_bytes:
            raise TensorTooLarge(f"input {len(zeros)} has shape {list(shape)}, larger than {max_bytes:,} bytes")
        zeros.append(np.zeros(shape, dtype))


_VAR_HANDLE = 142  # BuiltinOperator.VAR_HANDLE in TFLite's schema


def _has_var_handle(model: bytes) -> bool:
    """Whether any operator code is VAR_HANDLE (raises on a malformed flatbuffer).

    Reads only ``Model.operator_codes[i].builtin_code`` (field 1, then field 3: numbering
    that flatbuffers never changes); VAR_HANDLE (142) does not fit the deprecated int8 code.
    """
    def table_field(table: int, field: int) -> int | None:
        vtable = table - struct.unpack_from("<i", model, table)[0]
        vt_size = struct.unpack_from("<H", model, vtable)[0]
        slot = 4 + 2 * field
        offset = struct.unpack_from("<H", model, vtable + slot)[0] if slot + 2 <= vt_size else 0
        return table + offset if offset else None

    root = struct.unpack_from("<I", model, 0)[0]
    codes = table_field(root, 1)
    if codes is None:
        return False
    vector = codes + struct.unpack_from("<I", model, codes)[0]
    for i in range(struct.unpack_from("<I", model, vector)[0]):
        entry = vector + 4 + 4 * i
        code = table_field(entry + struct.unpack_from("<I", model, entry)[0], 3)
        if code is not None and struct.unpack_from("<i", model, code)[0] == _VAR_HANDLE:
            return True
    return False


class _CoreInterpreter:
    """What a report needs of ``runtime.Interpreter``, on TFLM's pybind core alone.

    Why: importing the ``tflite_micro`` package also loads its flatbuffer schema and
    compression tools, and ``Interpreter`` unpacks the whole model into Python objects to
    count resource variables — ~40-60 ms of a run whose only product is one number, while
    the parent formats the array on the same cores. Same constructor arguments as
    ``Interpreter.__init__``; used only when the model has no VAR_HANDLE (0 resource
    variables) and the core loads, else ``runtime.Interpreter`` runs.
    """

    def __init__(self, core: Any, model: bytes, arena_size: int) -> None:
        config = core.PythonInterpreterConfig.kAllocationRecording
        self._interpreter = core.InterpreterWrapper(model, [], arena_size, 0, config, 0)

    def get_input_details(self, index: int) -> Any:
        return self._interpreter.GetInputTensorDetails(index)

    def set_input(self, data: Any, index: int) -> None:
        self._interpreter.SetInputTensor(data, index)

    def invoke(self) -> Any:
        return self._interpreter.Invoke()

    def print_allocations(self) -> None:
        self._interpreter.PrintAllocations()


def _load_core() -> Any:
    """``tflite_micro``'s ``_runtime`` extension, loaded without its package (or None).

    Registered under its real name, so a later ``import tflite_micro`` reuses it (a
    pybind11 module cannot be initialised twice in one process).
    """
    import importlib.machinery
    import importlib.util

    name = "tflite_micro.python.tflite_micro._runtime"
    if name in sys.modules:
        return sys.modules[name]
    try:
        spec = importlib.util.find_spec("tflite_micro")
        roots = list(spec.submodule_search_locations or []) if spec else []
        for root in roots:
            for suffix in importlib.machinery.EXTENSION_SUFFIXES:
                path = os.path.join(root, "python", "tflite_micro", "_runtime" + suffix)
                if os.path.isfile(path):
                    core_spec = importlib.util.spec_from_file_location(name, path)
                    assert core_spec is not None and core_spec.loader is not None
                    module = importlib.util.module_from_spec(core_spec)
                    core_spec.loader.exec_module(module)
                    sys.modules[name] = module
                    return module
    except Exception:  # any surprise: the public API below
        return None
    return None


def _interpreter_factory(model: bytes, report_only: bool) -> Any:
    """``from_bytes(model, arena_size=N)``: the pybind core for report-only runs of models
    without resource variables, else ``tflite_micro.runtime.Interpreter``."""
    if report_only:
        try:
            plain = not _has_var_handle(model)
        except (struct.error, IndexError):
            plain = False  # TFLM itself will say what is wrong with the model
        core = _load_core() if plain else None
        if core is not None and hasattr(core, "InterpreterWrapper"):
            return lambda data, arena_size: _CoreInterpreter(core, data, arena_size)
    from tflite_micro import runtime

    return runtime.Interpreter.from_bytes


def measure(req: dict[str, Any]) -> dict[str, Any]:
    with open(req["model"], "rb") as f:
        return measure_model(f.read(), req)


def measure_model(model: bytes, req: dict[str, Any]) -> dict[str, Any]:
    """``measure`` on bytes in hand: also what a child forked by ``edgeq.check.micro`` runs."""
    try:
        return _measure_model(model, req)
    except TensorTooLarge as exc:
        return {"ok": False, "error": str(exc), "log": str(exc), "missing_ops": []}


def _measure_model(model: bytes, req: dict[str, Any]) -> dict[str, Any]:
    report_only = not req.get("bisect", True)
    from_bytes = _interpreter_factory(model, report_only and not req.get("inputs"))
    max_bytes = int(req.get("max_tensor_bytes") or DEFAULT_MAX_TENSOR_BYTES)
    first: list[np.ndarray] | None = None
    samples: list[np.ndarray] = []
    if req.get("inputs"):
        import numpy as np

        with np.load(req["inputs"]) as z:
            samples = [z[f"x{i}"] for i in range(len(z.files))]
        first = [x[0:1] for x in samples]
    big = int(req.get("max_arena") or default_max_arena(len(model)))

    def first_run() -> Any:
        try:
            interp = from_bytes(model, arena_size=big)
            for i, x in enumerate(first if first is not None else _zeros_from_details(interp, max_bytes)):
                interp.set_input(x, i)
            interp.invoke()
        except _REFUSALS as exc:  # TFLM's "allocation/invoke failed", inputs it will not take
            return exc
        interp.print_allocations()
        return interp

    interp, log = _capture_fd2(first_run)
    if isinstance(interp, Exception):
        return _refused(interp, log)
    report = allocation_report(log)

    if report_only and not req.get("outputs"):  # only the allocation report was asked for
        return {"ok": True, **report, "bisected_bytes": None, "samples": 0}
    import numpy as np
    from tflite_micro import runtime

    batches: list[list[np.ndarray]]
    if first is None:  # no samples: the arena does not depend on input values, outputs are those of zeros
        first = _zeros_from_details(interp, max_bytes)
        batches = [first]
    else:
        count = samples[0].shape[0] if samples and samples[0].ndim else 1
        batches = [[x[k : k + 1] if x.ndim else x for x in samples] for k in range(count)]
    minimal = None if report_only else _minimal_arena(runtime, model, first, report["reported_bytes"], big)
    if not req.get("outputs"):
        return {"ok": True, **report, "bisected_bytes": minimal, "samples": 0}

    outputs: list[list[np.ndarray]] = []
    budget = int(req.get("max_output_bytes") or DEFAULT_MAX_OUTPUT_BYTES)

    def run_samples() -> Exception | None:
        try:
            for k, batch in enumerate(batches):
                if k and (k + 1) * sum(y.nbytes for y in outputs[0]) > budget:
                    break  # the file of outputs stays bounded: the caller compares the samples it got
                for i, x in enumerate(batch):
                    interp.set_input(x, i)
                interp.invoke()
                outputs.append([np.array(interp.get_output(j)) for j in range(req["n_outputs"])])
        except _REFUSALS as exc:
            return exc
        return None

    failed, log = _capture_fd2(run_samples)
    if failed is not None:
        return _refused(failed, log)
    out_path = req["outputs"]
    np.savez(out_path, **{f"y{j}": _stack([o[j] for o in outputs]) for j in range(req["n_outputs"])})
    return {"ok": True, **report, "bisected_bytes": minimal, "samples": len(outputs)}


def allocation_report(log: str) -> dict[str, Any]:
    """TFLM's RecordingMicroAllocator report: total, non-persistent "head" (the planner's
    layout), persistent "tail" and its named parts. Why: only TFLM knows what its kernels
    kept in ``Prepare()``; arena minus head would also count the planner's working memory."""
    def number(what: str) -> int | None:
        m = re.search(rf"Arena allocation {what} (\d+) bytes", log)
        return int(m.group(1)) if m else None

    parts = {name: int(used) for name, used in re.findall(r"'([^'\n]{1,80})' used (\d+) bytes", log)}
    return {"reported_bytes": number("total"), "head_bytes": number("head"), "tail_bytes": number("tail"),
            "parts": parts}


#: What TFLM's Python runtime raises when it refuses a model or an input (never a crash).
_REFUSALS = (RuntimeError, ValueError, TypeError, IndexError)


def _refused(exc: Exception, log: str) -> dict[str, Any]:
    """The reply for a model TFLM refused: its message and log, and the ops it lacks."""
    missing = sorted(set(re.findall(r"Didn't find op for builtin opcode '([A-Z0-9_]+)'", log)))
    log = re.sub(r"(?m)^Input index \d+ out of range \(length is \d+\)\n?", "", log)  # _zeros_from_details' probe
    text = f"{log.rstrip()}\n{type(exc).__name__}: {exc}" if str(exc) not in log else log
    return {"ok": False, "error": str(exc), "log": text[-4000:], "missing_ops": missing}


def _stack(per_sample: list[np.ndarray]) -> np.ndarray:
    """Outputs of each sample, stacked so that the first dimension counts samples: joined
    along their batch dimension of 1, else along a new one (as ``ReferenceRunner.run_raw``)."""
    import numpy as np

    if all(a.ndim and a.shape[0] == 1 for a in per_sample):
        return np.concatenate(per_sample)
    return np.stack(per_sample)


def main() -> None:
    req = json.loads(sys.stdin.read())
    reply = measure(req)
    sys.stdout.write(json.dumps(reply))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
