"""TensorFlow Lite Micro compatibility: supported ops, the exact arena, output bytes.

Two layers: a static check against TFLM's op resolver table (``data/tflm_ops.toml``),
which names every unsupported op at once, then the real TFLM runtime in a subprocess,
which proves the model allocates and runs, measures the minimal arena (allocation report
cross-checked by bisection to 16 bytes) and returns the output bytes for comparison
with LiteRT's reference kernels.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgeq.console import warn
from edgeq.errors import ModelError, UnsupportedOpError
from edgeq.tflite_info import ModelInfo

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]


@dataclass(frozen=True)
class MicroResult:
    """What TFLM said about the model on this host."""

    runtime_available: bool
    supported: bool | None
    unsupported_ops: tuple[str, ...]
    ops: tuple[str, ...]
    arena_bytes: int | None = None  # minimal arena found by bisection (16-byte steps)
    arena_reported_bytes: int | None = None  # TFLM's "Arena allocation total"
    outputs: tuple[np.ndarray, ...] = field(default=(), repr=False)  # per output, stacked over samples
    error: str | None = None  # why TFLM refused the model, when it did (non-strict checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "runtime_available": self.runtime_available,
            "supported": self.supported,
            "unsupported_ops": list(self.unsupported_ops),
            "ops": list(self.ops),
            "arena_bytes": self.arena_bytes,
            "arena_reported_bytes": self.arena_reported_bytes,
            "error": self.error,
        }


@functools.lru_cache(maxsize=1)
def op_table() -> dict[str, dict[str, str]]:
    """TFLM's builtin and custom op → ``MicroMutableOpResolver::Add*`` tables."""
    path = Path(__file__).parent / "data" / "tflm_ops.toml"
    with path.open("rb") as f:
        data = tomllib.load(f)
    return {"builtin": dict(data["builtin"]), "custom": dict(data["custom"])}


def unsupported_ops(info: ModelInfo) -> tuple[str, ...]:
    table = op_table()
    return tuple(
        sorted({op.name for op in info.ops if op.name not in (table["custom"] if op.custom else table["builtin"])})
    )


def runtime_available() -> bool:
    return importlib.util.find_spec("tflite_micro") is not None


def check_micro(
    data: bytes,
    info: ModelInfo,
    *,
    samples: Sequence[np.ndarray] | None = None,
    strict: bool = True,
    timeout: float = 600.0,
) -> MicroResult:
    """Check ``data`` against TFLM; with ``strict``, an unsupported op raises before anything is written.

    ``samples`` are model inputs already in the .tflite's input dtype, in subgraph order.
    """
    ops = info.op_names
    missing = unsupported_ops(info)
    if missing:
        if strict:
            raise UnsupportedOpError(
                f"TensorFlow Lite Micro has no kernel for {', '.join(missing)} (model ops: {', '.join(ops)})",
                hint="replace those layers (or rewrite them with supported ops) and convert again",
                ops=missing,
            )
        return MicroResult(runtime_available(), False, missing, ops)
    if not runtime_available():
        warn("the tflite-micro runtime is not installed here (it exists for x86-64 Linux only): "
             "ops were checked against TFLM's op table, the arena was not measured")
        return MicroResult(False, None, (), ops)
    try:
        return MicroRun(data, info, samples).result(timeout)
    except (ModelError, UnsupportedOpError) as exc:
        if strict:
            raise
        return MicroResult(True, False, getattr(exc, "ops", ()), ops, error=exc.message)


class MicroRun:
    """A TFLM worker running in the background, so callers can overlap other work with it."""

    def __init__(
        self, data: bytes, info: ModelInfo, samples: Sequence[np.ndarray] | None, *, bisect: bool = True
    ) -> None:
        """``bisect=False`` stops after the allocation report: no minimal arena, no outputs."""
        self.info = info
        self._bisect = bisect
        self._tmp = tempfile.TemporaryDirectory(prefix="edgeq-micro-")
        t = Path(self._tmp.name)
        (t / "model.tflite").write_bytes(data)
        if samples is None:
            samples = [np.zeros(x.shape, x.numpy_dtype) for x in info.inputs]
        np.savez(t / "inputs.npz", **{f"x{i}": np.ascontiguousarray(x) for i, x in enumerate(samples)})
        request = {
            "model": str(t / "model.tflite"),
            "inputs": str(t / "inputs.npz"),
            "outputs": str(t / "outputs.npz"),
            "n_outputs": len(info.outputs),
            "max_arena": max(64 << 20, 8 * info.size_bytes),
            "bisect": bisect,
        }
        self._proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("_micro_worker.py"))],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        assert self._proc.stdin is not None
        self._proc.stdin.write(json.dumps(request))  # small: never fills the pipe
        self._proc.stdin.close()
        self._proc.stdin = None  # communicate() must not flush the closed pipe

    def cancel(self) -> None:
        self._proc.kill()
        self._proc.communicate()
        self._tmp.cleanup()

    def result(self, timeout: float = 600.0) -> MicroResult:
        """Wait for the worker; raise the same errors as ``check_micro``."""
        ops = self.info.op_names
        try:
            stdout, stderr = self._proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.cancel()
            raise ModelError(f"the TFLM check did not finish within {timeout:.0f} s") from None
        try:
            if self._proc.returncode != 0:
                raise ModelError(
                    f"TensorFlow Lite Micro crashed running the model (exit {self._proc.returncode}): " + _tail(stderr),
                    hint="the model uses an op configuration TFLM rejects; run with --debug for details",
                )
            reply = json.loads(stdout)
            if not reply["ok"]:
                if reply.get("missing_ops"):
                    missing = tuple(reply["missing_ops"])
                    raise UnsupportedOpError(
                        f"TensorFlow Lite Micro has no kernel for {', '.join(missing)} (model ops: {', '.join(ops)})",
                        hint="replace those layers and convert again",
                        ops=missing,
                    )
                raise ModelError(f"TensorFlow Lite Micro cannot run the model: {_tail(reply.get('log', ''))}")
            outputs: tuple[np.ndarray, ...] = ()
            if self._bisect:
                with np.load(Path(self._tmp.name) / "outputs.npz") as z:
                    outputs = tuple(z[f"y{j}"] for j in range(len(self.info.outputs)))
        finally:
            self._tmp.cleanup()
        minimal = reply["bisected_bytes"]
        return MicroResult(True, True, (), ops, None if minimal is None else int(minimal), reply["reported_bytes"], outputs)


def _tail(text: str, lines: int = 6) -> str:
    kept = [ln for ln in text.strip().splitlines() if ln.strip()][-lines:]
    return " | ".join(kept) if kept else "(no output)"
