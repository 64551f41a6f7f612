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
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from edgeq.errors import ModelError, UnsupportedOpError
from edgeq.check.isolate import ForkedChild, exit_description
from edgeq.model.tflite_checks import max_tensor_bytes
from edgeq.workdir import make_temp_dir

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from edgeq.model.tflite_info import ModelInfo

# numpy, rich and the flatbuffer schema load lazily: importing this costs `edgeq emit`
# nothing before it needs them.


@dataclass(frozen=True)
class MicroResult:
    """What TFLM said about the model on this host."""

    runtime_available: bool
    supported: bool | None
    unsupported_ops: tuple[str, ...]
    ops: tuple[str, ...]
    arena_bytes: int | None = None  # minimal arena found by bisection (16-byte steps)
    arena_reported_bytes: int | None = None  # TFLM's "Arena allocation total"
    arena_head_bytes: int | None = None  # of it, the non-persistent part TFLM's planner laid out
    arena_tail_bytes: int | None = None  # of it, the persistent part (structs, kernel data, quantization arrays)
    arena_parts: tuple[tuple[str, int], ...] = ()  # the persistent part's named entries in TFLM's report
    outputs: tuple[np.ndarray, ...] = field(default=(), repr=False)  # per output, stacked over samples (the first
    # ones only when all would exceed the worker's DEFAULT_MAX_OUTPUT_BYTES, 64 MiB)
    error: str | None = None  # why TFLM refused the model, when it did (non-strict checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "runtime_available": self.runtime_available,
            "supported": self.supported,
            "unsupported_ops": list(self.unsupported_ops),
            "ops": list(self.ops),
            "arena_bytes": self.arena_bytes,
            "arena_reported_bytes": self.arena_reported_bytes,
            "arena_head_bytes": self.arena_head_bytes,
            "arena_tail_bytes": self.arena_tail_bytes,
            "arena_parts": dict(self.arena_parts),
            "error": self.error,
        }


@functools.lru_cache(maxsize=1)
def op_table() -> dict[str, dict[str, str]]:
    """TFLM's builtin and custom op → ``MicroMutableOpResolver::Add*`` tables."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]

    path = Path(__file__).resolve().parent.parent / "data" / "tflm_ops.toml"
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
        from edgeq.console import warn

        warn("the tflite-micro runtime is not installed here (it exists for x86-64 Linux only): "
             "ops were checked against TFLM's op table, the arena was not measured")
        return MicroResult(False, None, (), ops)
    try:
        return MicroRun(data, info, samples).result(timeout)
    except (ModelError, UnsupportedOpError) as exc:
        if strict:
            raise
        return MicroResult(True, False, getattr(exc, "ops", ()), ops, error=exc.message)


def host_outputs(data: bytes, info: ModelInfo, inputs: Sequence[np.ndarray], *, timeout: float = 600.0) -> tuple[np.ndarray, ...] | None:
    """TFLM's own output for ``inputs`` (subgraph order, in the model's input dtypes),
    computed on this host; ``None`` where the tflite-micro runtime is not installed.

    Why TFLM and not LiteRT: a firmware compares its output with this, and LiteRT's
    reference kernels round some requantizations differently from TFLM (see
    ``edgeq.check.validation``), so only TFLM's own figure makes "match" mean "computes what
    TFLM computes". Raises ``ModelError`` when TFLM cannot run the model.
    """
    if not runtime_available():
        return None
    return MicroRun(data, info, inputs, bisect=False).result(timeout).outputs


class MicroRun:
    """A TFLM worker running in the background, so callers can overlap other work with it."""

    def __init__(
        self, data: bytes, info: ModelInfo, samples: Sequence[np.ndarray] | None, *, bisect: bool = True
    ) -> None:
        """``bisect=False`` skips the minimal-arena search: without ``samples`` the run
        stops after the allocation report; with them it also returns their outputs."""
        self.info: ModelInfo | None = info
        self._bisect = bisect
        self._outputs = bisect or samples is not None
        self._tmp: Path | None = make_temp_dir("micro")
        t = self._tmp
        (t / "model.tflite").write_bytes(data)
        # No "max_arena": the worker derives its ceiling from the model's size itself.
        request: dict[str, Any] = {"model": str(t / "model.tflite"), "bisect": bisect,
                                   "max_tensor_bytes": max_tensor_bytes()}
        if samples is not None:
            import numpy as np

            np.savez(t / "inputs.npz", **{f"x{i}": np.ascontiguousarray(x) for i, x in enumerate(samples)})
            request["inputs"] = str(t / "inputs.npz")
        if self._outputs:  # without samples the worker runs zeros it shapes itself: nothing to write here
            request.update(outputs=str(t / "outputs.npz"), n_outputs=len(info.outputs))
        self._spawn(request)

    @classmethod
    def forked_report(cls, data: bytes, *, bisect: bool = True) -> "MicroRun":
        """TFLM's allocation report on ``data`` (with ``bisect``, also the minimal arena),
        in a child forked from this process.

        Why fork: a fresh interpreter for the worker costs ~0.1 s of CPU (start-up,
        numpy, reading the model) before TFLM even loads; a forked child already has
        numpy and the bytes, and its only work is TFLM's (~15 ms of CPU for 10 MB). It
        is still a separate process, so a TFLM crash stays there. Only for callers
        without other threads (``edgeq emit`` forks before it starts any): a fork copies
        just the calling thread, not the locks others may hold. The child runs zeros
        through the model, as the script worker does without samples.
        """
        from edgeq.check import _micro_worker

        run = cls.__new__(cls)
        run.info, run._bisect, run._outputs, run._tmp = None, False, False, None
        request = {"bisect": bisect, "max_tensor_bytes": max_tensor_bytes()}
        run._proc = ForkedChild(lambda: json.dumps(_micro_worker.measure_model(data, request)))
        return run

    def _spawn(self, request: dict[str, Any]) -> None:
        env = dict(os.environ)
        # The worker does no BLAS work; OpenBLAS's thread pool only burns the CPU the
        # parent is formatting on. Respect an explicit user setting.
        env.setdefault("OPENBLAS_NUM_THREADS", "1")
        self._proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("_micro_worker.py"))],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        assert self._proc.stdin is not None
        self._proc.stdin.write(json.dumps(request))  # small: never fills the pipe
        self._proc.stdin.close()
        self._proc.stdin = None  # communicate() must not flush the closed pipe

    def _cleanup(self) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def cancel(self) -> None:
        self._proc.kill()
        self._proc.communicate()
        self._cleanup()

    def result(self, timeout: float = 600.0, *, info: ModelInfo | None = None) -> MicroResult:
        """Wait for the worker; raise the same errors as ``check_micro``.

        ``info`` names the model's ops in errors (required for ``forked_report`` runs,
        which start before the model is parsed).
        """
        if info is not None:
            self.info = info
        assert self.info is not None, "MicroRun.result needs the ModelInfo of a forked_report() run"
        ops = self.info.op_names
        try:
            stdout, stderr = self._proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.cancel()
            raise ModelError(f"the TFLM check did not finish within {timeout:.0f} s") from None
        try:
            if self._proc.returncode != 0:
                raise ModelError(
                    f"TensorFlow Lite Micro crashed with {exit_description(self._proc.returncode)} running the model: "
                    + _tail(stderr),
                    hint="the model is malformed or uses an op configuration TFLM rejects; run with --debug for details",
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
            if self._outputs:
                import numpy as np

                assert self._tmp is not None
                with np.load(self._tmp / "outputs.npz") as z:
                    outputs = tuple(z[f"y{j}"] for j in range(len(self.info.outputs)))
        finally:
            self._cleanup()
        minimal = reply["bisected_bytes"]
        return MicroResult(True, True, (), ops, None if minimal is None else int(minimal), reply["reported_bytes"],
                           reply.get("head_bytes"), reply.get("tail_bytes"),
                           tuple((str(k), int(v)) for k, v in (reply.get("parts") or {}).items()), outputs)


def _tail(text: str, lines: int = 6) -> str:
    kept = [ln for ln in text.strip().splitlines() if ln.strip()][-lines:]
    return " | ".join(kept) if kept else "(no output)"
