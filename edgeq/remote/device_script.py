"""Benchmark one .tflite model on the machine this file runs on; print one JSON object.

This file is shipped to the device as-is and run there with the device's own Python, so
it may only use the standard library and numpy, must run on Python >= 3.8 and must never
import edgeq. The host side (``edgeq.remote.runner``) also imports it to compute the local
reference output with exactly the same interpreter setup and fixed input.

Protocol: the result (or ``{"error": {...}}``) is the last line on stdout; progress goes
to stderr as ``EDGEQ-PROGRESS {json}`` lines, preceded by ``EDGEQ-PID <pid>`` so the host
can kill this process if the user interrupts the run.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

PROGRESS_PREFIX = "EDGEQ-PROGRESS "
PID_PREFIX = "EDGEQ-PID "
BACKENDS = ("ai_edge_litert", "tflite_runtime", "tensorflow")
# Output tensors shipped as data, in total; the rest are summarised by a hash. Keeps the
# result line (base64: 4/3 of this) well under the 32 MiB the host reads from stdout.
MAX_OUTPUT_BYTES = 12 << 20


# Run first, by the device's python, to say what is there. Python 2 syntax on purpose: it
# must report "Python too old" instead of failing to parse. Import-free (find_spec and
# dist-info names) because importing tensorflow costs seconds, importlib.metadata 80 ms.
PROBE_CODE = r"""
import json, os, platform, sys
d = {"python": "%d.%d.%d" % tuple(sys.version_info[:3]), "executable": sys.executable,
     "system": platform.system(), "release": platform.release(), "machine": platform.machine(),
     "cores": getattr(os, "cpu_count", lambda: None)(), "cpu": None, "mem_total_bytes": None, "modules": {}}
try:
    cpu = {}
    for line in open("/proc/cpuinfo"):
        k, _, v = line.partition(":")
        cpu.setdefault(k.strip(), v.strip())
    d["cpu"] = cpu.get("model name") or cpu.get("Model") or cpu.get("Hardware") or cpu.get("cpu model")
    for line in open("/proc/meminfo"):
        if line.startswith("MemTotal:"):
            d["mem_total_bytes"] = int(line.split()[1]) * 1024
except Exception:
    pass
if sys.version_info >= (3, 8):
    import importlib.util
    dists = {}
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for f in names:
            if f.endswith((".dist-info", ".egg-info")):
                n, _, v = f.rsplit(".", 1)[0].partition("-")
                dists.setdefault(n.lower().replace("-", "_"), v.split("-")[0])
    for name, candidates in (("ai_edge_litert", ["ai_edge_litert"]), ("tflite_runtime", ["tflite_runtime"]),
                             ("tensorflow", ["tensorflow", "tensorflow_cpu", "tensorflow_aarch64", "tf_nightly"]),
                             ("numpy", ["numpy"])):
        try:
            found = importlib.util.find_spec(name) is not None
        except Exception:
            found = False
        d["modules"][name] = ([dists[c] for c in candidates if c in dists] + ["unknown"])[0] if found else None
print("EDGEQ-PROBE " + json.dumps(d))
"""
PROBE_PREFIX = "EDGEQ-PROBE "


class DeviceError(Exception):
    """A failure with a machine-readable kind, reported to the host as JSON."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def progress(phase: str, done: int, total: int) -> None:
    """One progress line on stderr: the host turns these into a progress bar."""
    sys.stderr.write(PROGRESS_PREFIX + json.dumps({"phase": phase, "done": done, "total": total}) + "\n")
    sys.stderr.flush()


def load_backend(only: Optional[str] = None) -> Tuple[str, str, Any, Any]:
    """Import the best interpreter available: (name, version, Interpreter class, OpResolverType).

    ai_edge_litert is the maintained package, tflite_runtime is what older 32-bit Pis
    have, full TensorFlow is the heavy last resort (it costs seconds to import).
    """
    failures = []
    for name in BACKENDS if only is None else (only,):
        try:
            if name == "ai_edge_litert":
                from ai_edge_litert import interpreter as mod  # type: ignore

                version = _dist_version(("ai-edge-litert",), mod)
                return name, version, mod.Interpreter, getattr(mod, "OpResolverType", None)
            if name == "tflite_runtime":
                import tflite_runtime  # type: ignore
                from tflite_runtime import interpreter as mod  # type: ignore

                version = getattr(tflite_runtime, "__version__", None) or _dist_version(("tflite-runtime",), mod)
                return name, version, mod.Interpreter, getattr(mod, "OpResolverType", None)
            import tensorflow as tf  # type: ignore

            resolver = getattr(getattr(tf.lite, "experimental", None), "OpResolverType", None)
            return name, str(tf.__version__), tf.lite.Interpreter, resolver
        except ImportError as exc:
            failures.append("%s: %s" % (name, exc))
    raise DeviceError("no_interpreter", "no TFLite interpreter importable (" + "; ".join(failures) + ")")


def _dist_version(dists: Sequence[str], module: Any) -> str:
    """Distribution version without importing more than needed (metadata exists on 3.8+)."""
    try:
        from importlib import metadata

        for dist in dists:
            try:
                return metadata.version(dist)
            except metadata.PackageNotFoundError:
                continue
    except ImportError:  # pragma: no cover - Python < 3.8
        pass
    return str(getattr(module, "__version__", "unknown"))


def make_interpreter(backend: Tuple[str, str, Any, Any], model_path: str, threads: int, xnnpack: bool) -> Any:
    """Create and allocate an interpreter; XNNPACK off means 'builtin ops, no default delegates'."""
    _, _, interpreter_cls, resolver = backend
    kwargs: Dict[str, Any] = {"model_path": model_path, "num_threads": threads}
    if not xnnpack:
        if resolver is None or not hasattr(resolver, "BUILTIN_WITHOUT_DEFAULT_DELEGATES"):
            raise DeviceError("no_xnnpack_switch", "this interpreter cannot disable XNNPACK (no OpResolverType)")
        kwargs["experimental_op_resolver_type"] = resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    try:
        interpreter = interpreter_cls(**kwargs)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise DeviceError("model", "the interpreter cannot load the model: %s" % exc) from None
    return interpreter


def model_kind(interpreter: Any) -> str:
    """int8 / int16x8 / dynamic / float16 / float, judged from tensor types (I/O excluded)."""
    import numpy as np

    io = {d["index"] for d in interpreter.get_input_details() + interpreter.get_output_details()}
    types = {(np.dtype(t["dtype"]).name, t["index"] in io) for t in interpreter.get_tensor_details()}
    names = {name for name, _ in types}
    if "int16" in names:
        return "int16x8"
    if names & {"int8", "uint8"}:
        return "dynamic" if ("float32", False) in types else "int8"
    return "float16" if "float16" in names else "float"


def delegate_name(interpreter: Any, xnnpack: bool) -> str:
    """'xnnpack' when the default delegate took over nodes (a DELEGATE op appears), else 'none'."""
    try:
        ops = [op.get("op_name") for op in interpreter._get_ops_details()]
    except Exception:  # private API: absent on old runtimes
        return "xnnpack?" if xnnpack else "none"
    return "xnnpack" if "DELEGATE" in ops else "none"


def fixed_input(shape: Sequence[int], dtype: Any) -> Any:
    """A deterministic input that is identical on every machine (no RNG, no libm)."""
    import numpy as np

    size = int(np.prod(shape)) if len(shape) else 1
    ramp = (np.arange(size, dtype=np.int64) * 37 + 11) % 256
    dt = np.dtype(dtype)
    if dt.kind == "f":
        values = (ramp.astype(np.float64) / 255.0).astype(dt)
    elif dt.kind == "b":
        values = (ramp % 2).astype(dt)
    elif dt.kind == "i":
        values = (ramp - 128).clip(np.iinfo(dt).min, np.iinfo(dt).max).astype(dt)
    else:
        values = ramp.clip(0, np.iinfo(dt).max).astype(dt)
    return values.reshape(shape)


def set_fixed_inputs(interpreter: Any) -> None:
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], fixed_input(list(detail["shape"]), detail["dtype"]))


def encode_outputs(interpreter: Any) -> List[Dict[str, Any]]:
    """The outputs for the fixed input, as raw little-endian bytes in base64 (compact, exact)."""
    encoded = []
    budget = MAX_OUTPUT_BYTES
    for detail in interpreter.get_output_details():
        array = interpreter.get_tensor(detail["index"])
        little = array.astype(array.dtype.newbyteorder("<"), copy=False)
        entry = {"name": detail["name"], "dtype": array.dtype.name, "shape": list(array.shape),
                 "sha256": hashlib_sha256(array)}
        if array.nbytes <= budget:
            budget -= array.nbytes
            entry["data_b64"] = base64.b64encode(little.tobytes()).decode("ascii")
        encoded.append(entry)
    return encoded


def peak_rss_bytes() -> int:
    """VmHWM from /proc when there is one (exact, bytes); getrusage otherwise (KiB on Linux)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def latency_stats(samples_ns: Sequence[int]) -> Dict[str, float]:
    import numpy as np

    ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {"min_ms": float(ms.min()), "mean_ms": float(ms.mean()), "p50_ms": float(p50), "p90_ms": float(p90),
            "p99_ms": float(p99), "max_ms": float(ms.max()), "std_ms": float(ms.std())}


def timed_runs(interpreter: Any, runs: int, phase: str) -> List[int]:
    """Invoke ``runs`` times on the already-set input, timing each call with perf_counter_ns."""
    samples = []
    clock = time.perf_counter_ns
    last_report = 0.0
    for i in range(runs):
        start = clock()
        interpreter.invoke()
        samples.append(clock() - start)
        now = time.monotonic()
        if now - last_report > 0.1 or i + 1 == runs:
            progress(phase, i + 1, runs)
            last_report = now
    return samples


def evaluate(interpreter: Any, path: str) -> Dict[str, Any]:
    """Top-1 predictions (and accuracy if labels exist) on eval data ``x`` / ``y`` from a .npz."""
    import numpy as np

    inputs = interpreter.get_input_details()
    if len(inputs) != 1:
        raise DeviceError("eval_data", "eval data needs a single-input model (this one has %d)" % len(inputs))
    detail, output = inputs[0], interpreter.get_output_details()[0]
    with np.load(path, allow_pickle=False) as data:
        if "x" not in data.files:
            raise DeviceError("eval_data", "eval data has no array 'x' (found: %s)" % ", ".join(data.files))
        x = data["x"]
        y = data["y"] if "y" in data.files else None
    shape = list(detail["shape"])
    per_sample = int(np.prod(shape))
    if x.ndim == 0 or x.size != len(x) * per_sample:
        raise DeviceError("eval_data", "eval data x%s does not fit the model input %s" % (list(x.shape), shape))
    x = x.reshape([-1] + shape)
    scale, zero = detail["quantization"]
    dt = np.dtype(detail["dtype"])
    if dt.kind in "iu" and x.dtype.kind == "f":
        if scale:
            x = np.round(x / scale + zero)
        info = np.iinfo(dt)
        x = x.clip(info.min, info.max)
    x = x.astype(dt)
    predictions = []
    out_scale, out_zero = output["quantization"]
    for i in range(len(x)):
        interpreter.set_tensor(detail["index"], x[i])
        interpreter.invoke()
        out = interpreter.get_tensor(output["index"]).reshape(-1).astype(np.float64)
        if out_scale:
            out = (out - out_zero) * out_scale
        predictions.append(int(out.argmax()) if out.size > 1 else int(out[0] > 0.5))
        if (i + 1) % 50 == 0 or i + 1 == len(x):
            progress("eval", i + 1, len(x))
    result: Dict[str, Any] = {"samples": len(x), "predictions": predictions, "accuracy": None}
    if y is not None:
        labels = y.argmax(axis=-1) if y.ndim >= 2 and y.shape[-1] > 1 else y.reshape(-1)
        if len(labels) != len(x):
            raise DeviceError("eval_data", "eval data has %d samples in x but %d labels in y" % (len(x), len(labels)))
        result["accuracy"] = float(np.mean(np.asarray(predictions) == labels.astype(np.int64)))
    return result


def benchmark(args: argparse.Namespace) -> Dict[str, Any]:
    """Load, time and evaluate; the figures are the ones the host's report shows."""
    t0 = time.perf_counter_ns()
    try:
        import numpy as np
    except ImportError:
        raise DeviceError("no_numpy", "numpy is not importable with %s" % sys.executable) from None
    backend = load_backend()
    import_ms = (time.perf_counter_ns() - t0) / 1e6
    rss_before = peak_rss_bytes()
    t1 = time.perf_counter_ns()
    interpreter = make_interpreter(backend, args.model, args.threads, args.xnnpack)
    init_ms = (time.perf_counter_ns() - t1) / 1e6
    set_fixed_inputs(interpreter)
    t2 = time.perf_counter_ns()
    interpreter.invoke()
    first_ms = (time.perf_counter_ns() - t2) / 1e6
    if args.warmup:
        timed_runs(interpreter, args.warmup, "warmup")
    samples = timed_runs(interpreter, args.runs, "timed")
    result: Dict[str, Any] = latency_stats(samples)
    result.update({
        "runs": args.runs, "warmup": args.warmup, "threads": args.threads, "xnnpack": args.xnnpack,
        "import_ms": import_ms, "init_ms": init_ms, "first_inference_ms": first_ms,
        "peak_rss_bytes": peak_rss_bytes(), "rss_before_model_bytes": rss_before,
        "interpreter": backend[0], "interpreter_version": backend[1],
        "delegate": delegate_name(interpreter, args.xnnpack), "outputs": encode_outputs(interpreter),
        "python": "%d.%d.%d" % sys.version_info[:3], "numpy": np.__version__, "eval": None,
    })
    if args.eval_data:
        result["eval"] = evaluate(interpreter, args.eval_data)
    return result


def hashlib_sha256(array: Any) -> str:
    import hashlib

    return hashlib.sha256(array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()).hexdigest()


def _exit_when_stdin_closes() -> None:
    """Die with the connection: sshd closes our stdin when the host side goes away."""
    try:  # os.read, not sys.stdin: a buffered reader's lock would block interpreter shutdown
        while os.read(0, 4096):
            pass
    except OSError:
        pass
    os._exit(143)


def describe_exception(exc: BaseException) -> str:
    """``Type: message (at file:line)``, the innermost frame: what a bug report needs, in one line."""
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    where = " (at %s:%d)" % (os.path.basename(frames[-1].filename), frames[-1].lineno or 0) if frames else ""
    return "%s: %s%s" % (type(exc).__name__, exc, where)


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="edgeq device benchmark (one model, one setting)")
    parser.add_argument("--model", required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--no-xnnpack", dest="xnnpack", action="store_false")
    parser.add_argument("--eval-data")
    parser.add_argument("--exit-on-stdin-eof", action="store_true")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    sys.stderr.write(PID_PREFIX + str(os.getpid()) + "\n")
    sys.stderr.flush()
    if args.exit_on_stdin_eof:
        threading.Thread(target=_exit_when_stdin_closes, daemon=True).start()
    try:
        document: Dict[str, Any] = benchmark(args)
        code = 0
    except DeviceError as exc:
        document, code = {"error": {"kind": exc.kind, "message": exc.message}}, 3
    except Exception as exc:  # anything else is reported in the protocol too, not as a traceback
        document, code = {"error": {"kind": "internal", "message": describe_exception(exc)}}, 3
    sys.stdout.write("\n" + json.dumps(document) + "\n")
    sys.stdout.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())
