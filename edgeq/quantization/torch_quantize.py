"""PyTorch → full-integer .tflite: PT2E PTQ or QAT, then litert-torch, in a child process.

Why PT2E + litert-torch: it is the one route measured here that gives what TFLM runs (int8
tensors, int32 biases, no QUANTIZE/DEQUANTIZE or float ops) without TensorFlow, and it keeps
QAT's learned ranges. Why a child (:mod:`edgeq.quantization.torch_worker`): the converter is native code
that can crash, and ``import litert_torch`` alone takes up to 17 s; edgeq must survive the
first and not pay the second for Keras models. This module validates everything it can in
the parent first, so the child only fails for reasons that are about the model.

The .tflite's interface is int8 (litert-torch gives no uint8 I/O) and, by default,
channel-last: feed it data through :func:`to_interface_layout`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeq.errors import CalibrationError, ModelError, UnsupportedOpError, UserError
from edgeq.model.loaded import to_interface_layout  # re-exported: the worker's layout rule
from edgeq.model.torch_source import INSTALL_HINT, TorchModel, check_arrays

LOSSES = ("auto", "crossentropy", "mse")
#: The converter takes 17–21 s on a small CNN here; ten minutes is "stuck", not "slow".
DEFAULT_TIMEOUT = 600.0
_MAX_LOG_TAIL = 3


@dataclass(frozen=True)
class QatSpec:
    """Quantization-aware training settings (the defaults match edgeq's Keras QAT).

    ``train_x`` is one array per model input in the model's own layout; ``train_y`` integer
    class labels (cross-entropy) or target values (MSE)."""

    train_x: list[np.ndarray] = field(repr=False)
    train_y: np.ndarray = field(repr=False)
    epochs: int = 3
    loss: str = "auto"
    batch_size: int = 32
    learning_rate: float = 1e-4
    seed: int = 0


def convert_torch(
    model: TorchModel,
    *,
    calibration: list[np.ndarray] | None,
    per_channel: bool = True,
    channel_last: bool = True,
    qat: QatSpec | None = None,
    progress: Callable[[int, float], None] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    threads: int | None = 1,
) -> bytes:
    """The full-integer .tflite (int8 activations and I/O, int32 bias) for ``model``.

    PTQ calibrates on ``calibration`` (model layout); with ``qat`` the program is trained first
    (``calibration`` is then optional: it only fixes the traced example). ``progress(epoch,
    mean_loss)`` is called once per QAT epoch. ``threads`` caps torch's threads in the child
    (``None``: torch's default). One by default: TFLM-sized models gain nothing from more, and on
    a busy 2-core machine two threads made a QAT step 8x slower (measured: 300 steps of a tiny
    CNN, 4.3 s vs 0.52 s); results are byte-identical for a given thread count.
    """
    _require_converter()
    if qat is None and (calibration is None or len(calibration) == 0):
        raise CalibrationError(f"{model.source}: post-training quantization needs calibration data",
                               hint="give --calibration samples in the model's layout (NCHW for images)")
    arrays = check_arrays(model, calibration, "calibration") if calibration else None
    if not timeout > 0:
        raise UserError(f"the conversion timeout must be positive, not {timeout}")
    with tempfile.TemporaryDirectory(prefix="edgeq-torch-") as tmp:
        job_dir = Path(tmp)
        job: dict[str, Any] = {"program": "model.pt2", "output": "model.tflite", "fixed_batch": model.fixed_batch,
                               "per_channel": bool(per_channel), "channel_last": bool(channel_last),
                               "calibration": _save(job_dir, "calibration", arrays) if arrays else None,
                               "threads": threads, "qat": _qat_job(model, qat, job_dir) if qat else None}
        _save_program(model, job_dir / "model.pt2")
        (job_dir / "job.json").write_text(json.dumps(job, indent=1), encoding="utf-8")
        _run_child(model.source, job_dir, timeout, progress)
        out = job_dir / "model.tflite"
        if not out.is_file():
            raise ModelError(f"{model.source}: the converter finished without writing a model",
                             hint=_log_hint(job_dir))
        tflite = out.read_bytes()
    refuse_float_ops(model.source, tflite)
    return tflite


def float_ops(tflite: bytes) -> list[tuple[int, str]]:
    """(index, name) of every op that still computes in float: a DEQUANTIZE, or any op with a
    float input or output. PT2E leaves ops it has no annotation for (LayerNorm, division...)
    float, and litert-torch then converts them silently with DEQUANTIZE in front."""
    from ai_edge_litert import schema_py_generated as schema

    floats = {getattr(schema.TensorType, n) for n in ("FLOAT16", "FLOAT32", "FLOAT64", "BFLOAT16")
              if hasattr(schema.TensorType, n)}
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    model = schema.Model.GetRootAsModel(tflite, 0)
    found = []
    for g in range(model.SubgraphsLength()):
        sg = model.Subgraphs(g)
        for k in range(sg.OperatorsLength()):
            op = sg.Operators(k)
            code = model.OperatorCodes(op.OpcodeIndex())
            name = names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "CUSTOM")
            tensors = [op.Inputs(i) for i in range(op.InputsLength())] + [op.Outputs(i) for i in range(op.OutputsLength())]
            if name == "DEQUANTIZE" or any(t >= 0 and sg.Tensors(t).Type() in floats for t in tensors):
                found.append((k, name))
    return found


def refuse_float_ops(source: str, tflite: bytes) -> None:
    """A model that is not full integer is not what this route promises (TFLM's int8 kernels,
    int8 I/O): name the ops PT2E did not quantize instead of handing back a hybrid model."""
    try:
        found = float_ops(tflite)
    except Exception as exc:  # a flatbuffer the schema cannot walk: the converter's bug
        raise ModelError(f"{source}: the converted model cannot be read ({type(exc).__name__})") from None
    if found:
        ops = tuple(dict.fromkeys(name for _, name in found))
        raise UnsupportedOpError(
            f"{source}: {len(found)} ops stayed float after PT2E quantization: {', '.join(ops[:8])}"
            f"{' ...' if len(ops) > 8 else ''} (first at op {found[0][0]})",
            hint="litert-torch's quantizer covers conv, linear, add, mul, cat, pools, ReLU/tanh/sigmoid-like "
                 "activations; replace the layers behind these ops (e.g. LayerNorm, division)", ops=ops)


def resolve_loss(model: TorchModel, labels: np.ndarray, loss: str) -> str:
    """``auto`` → cross-entropy for integer labels, MSE otherwise; then check the labels fit
    the model's single output (class indices below its width, or its per-sample shape)."""
    if loss not in LOSSES:
        raise UserError(f"unknown loss {loss!r}", hint=f"use one of: {', '.join(LOSSES)}")
    kind = loss if loss != "auto" else ("crossentropy" if np.issubdtype(labels.dtype, np.integer) else "mse")
    out = model.outputs[0]
    if kind == "crossentropy":
        if not np.issubdtype(labels.dtype, np.integer):
            if not np.all(np.mod(labels, 1) == 0):
                raise CalibrationError("cross-entropy needs integer class labels, the labels have fractions",
                                       hint="use --loss mse for regression targets")
        classes = out.shape[-1] if out.shape and out.shape[-1] is not None else None
        flat = labels.reshape(len(labels), -1)
        if flat.shape[1] != 1:
            raise CalibrationError(f"cross-entropy needs one class index per sample, labels have shape {labels.shape}",
                                   hint="give integer class indices (not one-hot), or use --loss mse")
        if labels.size and (labels.min() < 0 or (classes is not None and labels.max() >= classes)):
            raise CalibrationError(f"class labels span {labels.min()}..{labels.max()}, the model has "
                                   f"{classes} outputs", hint="labels are class indices 0..N-1")
    else:
        want = out.shape[1:]
        if labels.shape[1:] != want and labels.size != len(labels) * int(np.prod([d or 1 for d in want])):
            raise CalibrationError(f"MSE targets have shape {labels.shape[1:]}, the model outputs {want}")
    return kind


# ----------------------------------------------------------------------------- the parent's side
def _require_converter() -> None:
    missing = [m for m in ("torch", "torchao", "litert_torch") if importlib.util.find_spec(m) is None]
    if missing:
        raise UserError(f"converting PyTorch models needs {', '.join(missing)}, not installed", hint=INSTALL_HINT)


def _qat_job(model: TorchModel, qat: QatSpec, job_dir: Path) -> dict[str, Any]:
    if len(model.outputs) != 1:
        raise UserError(f"{model.source}: QAT trains models with one output, this one has {len(model.outputs)}",
                        hint="quantize it without --qat (PTQ)")
    if qat.epochs < 1 or qat.batch_size < 1:
        raise UserError("QAT epochs and batch size must be at least 1")
    if not qat.learning_rate > 0:
        raise UserError(f"the QAT learning rate must be positive, not {qat.learning_rate}")
    xs = check_arrays(model, qat.train_x, "training data")
    y = np.asarray(qat.train_y)
    if len(y) != len(xs[0]):
        raise CalibrationError(f"training data: {len(xs[0])} samples but {len(y)} labels")
    kind = resolve_loss(model, y, qat.loss)
    y = y.astype(np.int64 if kind == "crossentropy" else np.float32)
    return {"train_x": _save(job_dir, "train_x", xs), "train_y": _save(job_dir, "train_y", [y])[0],
            "epochs": int(qat.epochs), "loss": kind, "batch_size": int(qat.batch_size),
            "learning_rate": float(qat.learning_rate), "seed": int(qat.seed)}


def _save(job_dir: Path, stem: str, arrays: Sequence[np.ndarray]) -> list[str]:
    names = []
    for i, a in enumerate(arrays):
        name = f"{stem}_{i}.npy"
        np.save(job_dir / name, np.ascontiguousarray(a), allow_pickle=False)
        names.append(name)
    return names


def _save_program(model: TorchModel, path: Path) -> None:
    import torch

    try:
        torch.export.save(model.program, str(path))
    except Exception as exc:
        raise ModelError(f"{model.source}: the program cannot be saved for the converter: "
                         f"{type(exc).__name__}: {str(exc).strip()[:200]}",
                         hint="export it with plain tensors as inputs and outputs") from None


def _child_env() -> dict[str, str]:
    """The child imports this same edgeq (tests and editable checkouts put it on ``sys.path``
    in ways a subprocess does not inherit) and hashes strings the same way on every run, so
    no set iteration in a graph pass can change the bytes (measured: the fixtures give the
    same bytes under three different hash seeds too; this is the cheap guarantee)."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env["PYTHONHASHSEED"] = "0"
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def _run_child(source: str, job_dir: Path, timeout: float,
               progress: Callable[[int, float], None] | None) -> None:
    cmd = [sys.executable, "-m", "edgeq.quantization.torch_worker", str(job_dir)]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=_child_env(), cwd=job_dir, start_new_session=True)
    stage, error, deadline = "starting", None, time.monotonic() + timeout
    try:
        assert proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            buf = b""
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ModelError(f"{source}: the PyTorch conversion did not finish in {timeout:g} s "
                                     f"(stuck while {stage})", hint="a smaller model, or a longer timeout")
                if not sel.select(timeout=min(left, 1.0)):
                    continue
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    msg = _message(line)
                    stage = msg.get("stage", stage)
                    error = msg if "error" in msg else error
                    if "epoch" in msg and progress is not None:
                        progress(int(msg["epoch"]), float(msg["loss"]))
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        raise ModelError(f"{source}: the PyTorch conversion did not exit in {timeout:g} s",
                         hint="a smaller model, or a longer timeout") from None
    finally:
        if proc.poll() is None:
            _kill(proc)
        if proc.stdout is not None:
            proc.stdout.close()
    if error is not None:
        raise ModelError(f"{source}: {error.get('stage', stage)} failed: {error['error']}", hint=_log_hint(job_dir))
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
        raise ModelError(f"{source}: the PyTorch converter crashed ({name}) while {stage}", hint=_log_hint(job_dir))
    if code != 0:
        raise ModelError(f"{source}: the PyTorch converter exited with status {code} while {stage}",
                         hint=_log_hint(job_dir))


def _message(line: bytes) -> dict[str, Any]:
    try:
        msg = json.loads(line.decode("utf-8", "replace"))
    except ValueError:
        return {}
    return msg if isinstance(msg, dict) else {}


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """The child and anything it started (its own session): SIGKILL, then reap."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
    proc.wait()


def _log_hint(job_dir: Path) -> str:
    """The last lines the converter printed: usually the real reason (an MLIR pass, an op)."""
    try:
        text = (job_dir / "worker.log").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "the converter left no log"
    lines = [ln.strip() for ln in text.splitlines()
             if ln.strip() and not ln.startswith((" ", "\t", "Traceback (most recent call last)"))]
    tail = [ln[:200] for ln in lines[-_MAX_LOG_TAIL:]]
    return "converter log ends: " + " | ".join(tail) if tail else "the converter printed nothing"
