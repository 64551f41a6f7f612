"""The child process that quantizes a PyTorch program and converts it: ``python -m edgeq.quantization.torch_worker DIR``.

Why a child: litert-torch's converter is native code (MLIR passes) that can abort or crash on an
unusual graph, and its import costs up to 17 s; run in edgeq's own process, a crash would take
the CLI down with no message. Here the parent (:mod:`edgeq.quantization.torch_quantize`) sees an exit status
or a signal and names the stage that was running.

Protocol: ``DIR/job.json`` says what to do; arrays come as ``.npy`` files, the float program as a
``.pt2``. The child writes one JSON object per line on its original stdout (``stage``, ``epoch``
with ``loss``, ``error``, ``done``) and sends everything else anything prints (torch warnings,
litert-torch's progress, native logs) to ``DIR/worker.log``, so edgeq's own output stays clean.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from edgeq.check.isolate import die_with_parent

#: Channel-first inputs edgeq turns channel-last at the interface: NCL (Conv1d) and NCHW (Conv2d).
CHANNEL_LAST_RANKS = (3, 4)


# ----------------------------------------------------------------------------- PT2E pieces
def quantizer(*, per_channel: bool, qat: bool) -> Any:
    """litert-torch's PT2E quantizer for full-integer TFLite: int8 activations (asymmetric),
    int8 symmetric weights per output channel (or per tensor), int32 bias at conversion."""
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config

    return PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=per_channel, is_qat=qat))


@contextmanager
def qat_patterns_as_modules() -> Iterator[None]:
    """Work around litert-torch 0.10's QAT annotator handing ``torch.export`` a bare function.

    ``_do_annotate_conv_bn`` builds its conv+BN match patterns with torchao's
    ``_get_aten_graph_module_for_pattern(pattern_fn, ...)``, which calls
    ``torch.export.export(pattern_fn)``; torch 2.13 refuses anything but an ``nn.Module``
    (``ValueError: Expected `mod` to be an instance of `torch.nn.Module`, got <class 'function'>``).
    torchao's own QAT code wraps its patterns in ``WrapperModule``; this does the same for
    litert-torch's, for the duration of ``prepare_qat_pt2e`` only. tests/test_torch_convert.py
    checks that the bare call still fails upstream, so we notice when this can go.
    """
    from litert_torch.quantize import pt2e_quantizer_utils as utils
    from torchao.quantization.pt2e import WrapperModule
    import torch

    original = utils._get_aten_graph_module_for_pattern

    def wrapped(pattern: Any, *args: Any, **kwargs: Any) -> Any:
        if not isinstance(pattern, torch.nn.Module):
            pattern = WrapperModule(pattern)
        return original(pattern, *args, **kwargs)

    utils._get_aten_graph_module_for_pattern = wrapped
    try:
        yield
    finally:
        utils._get_aten_graph_module_for_pattern = original


def separate_repeated_calls(module: Any) -> Any:
    """Give each call of a reused leaf module its own name in the graph metadata.

    PyTorch code reuses one ``nn.ReLU``/``nn.MaxPool2d`` at several places. A non-strict
    export records every call under the module's name (``pool``), its key alone telling the
    calls apart (``L__self__pool@1``); litert-torch's annotators group nodes by that name
    (``get_source_partitions``), so two max-pools become one partition and ``prepare_pt2e``
    fails (``please make sure only refer to edge or node that has observer/fake_quant
    inserted: 'relu_1' not in ...``). Renaming the innermost entry ``pool@1`` (metadata only:
    the graph's computation is untouched) makes one partition per call.
    """
    for node in module.graph.nodes:
        stack = node.meta.get("nn_module_stack")
        if node.op != "call_function" or not stack:
            continue
        key, (fqn, cls) = list(stack.items())[-1]
        if "@" in key:
            stack = dict(stack)
            stack[key] = (f"{fqn}@{key.rpartition('@')[2]}", cls)
            node.meta["nn_module_stack"] = stack
    return module


@contextmanager
def fold_only_present_convs(module: Any) -> Iterator[None]:
    """Make ``convert_pt2e`` of a QAT model with BatchNorm 4x faster, same result.

    torchao's ``_fold_conv_bn_qat`` tries conv1d, conv2d, conv_transpose1d and conv_transpose2d,
    each with 12 pattern variants built by a strict ``torch.export`` (~0.5 s each): 96 exports,
    22 s of a 43 s QAT conversion here (profiled). A pattern for a conv kind the graph does not
    contain cannot match, so those kinds are skipped. If torchao's helper is not where this
    expects (another version), nothing is patched.
    """
    import torch
    import torch.nn.functional as F
    from torchao.quantization.pt2e import qat_utils

    original = getattr(qat_utils, "_fold_conv_bn_qat_helper", None)
    aten = torch.ops.aten
    kinds = {F.conv1d: aten.conv1d.default, F.conv2d: aten.conv2d.default,
             F.conv_transpose1d: aten.conv_transpose1d.default, F.conv_transpose2d: aten.conv_transpose2d.input}
    present = {n.target for n in module.graph.nodes if n.op == "call_function"}
    if original is None or aten.convolution.default in present:
        yield
        return

    def helper(m: Any, conv_fn: Any, *args: Any, **kwargs: Any) -> Any:
        if conv_fn in kinds and kinds[conv_fn] not in present:
            return m
        return original(m, conv_fn, *args, **kwargs)

    qat_utils._fold_conv_bn_qat_helper = helper
    try:
        yield
    finally:
        qat_utils._fold_conv_bn_qat_helper = original


def trainable_module(program: Any, fixed_batch: int | None) -> tuple[Any, bool]:
    """A ``GraphModule`` that runs on batches of any size, and whether that worked.

    A program exported with batch 1 guards ``x.size()[0] == 1``: it cannot train on batches.
    Re-export its module with a dynamic batch (``Dim``), guards off. A program that *baked* the
    batch into a reshape (``x.view(1, -1)``, ``x.view(x.size(0), -1)`` traced at 1) cannot be
    re-exported; then the caller trains one sample at a time (``False``).
    """
    import torch

    if fixed_batch is None:
        return program.module(), True
    module = program.module(check_guards=False)
    specs = [n.meta["val"] for n in program.graph.nodes if n.op == "placeholder"
             and n.name in program.graph_signature.user_inputs]
    examples = tuple(torch.zeros((2, *s.shape[1:]), dtype=s.dtype) for s in specs)
    batch = torch.export.Dim("batch")
    try:
        again = torch.export.export(module, examples, dynamic_shapes=tuple({0: batch} for _ in examples))
    except Exception:  # a baked batch: see the docstring
        return program.module(), False
    return again.module(), True


def calibrate(module: Any, xs: Sequence[np.ndarray], batch: int | None) -> None:
    """Feed the calibration set through the observers, ``batch`` samples at a time (a
    fixed-batch program gets exactly its batch; the last chunk wraps around to the start)."""
    import torch

    n, step = len(xs[0]), batch or 32
    with torch.no_grad():
        for start in range(0, n, step):
            idx = np.arange(start, start + step) % n if batch else np.arange(start, min(start + step, n))
            module(*[torch.from_numpy(np.ascontiguousarray(x[idx])) for x in xs])


def train(module: Any, xs: Sequence[np.ndarray], y: np.ndarray, spec: dict[str, Any], batchable: bool,
          progress: Callable[[int, float], None]) -> None:
    """edgeq's QAT loop: Adam, cross-entropy on integer labels or MSE, seeded shuffles.

    A module that cannot take batches (see :func:`trainable_module`) runs each sample alone and
    accumulates the gradients to the batch mean, so the step is the same up to BatchNorm's
    batch statistics."""
    import torch
    import torch.nn.functional as F
    from torchao.quantization.pt2e import move_exported_model_to_eval, move_exported_model_to_train

    def loss_of(out: Any, target: Any) -> Any:
        out = out[0] if isinstance(out, (tuple, list)) else out
        if spec["loss"] == "crossentropy":
            return F.cross_entropy(out.reshape(len(target), -1), target.long().reshape(-1))
        return F.mse_loss(out, target.float().reshape(out.shape))

    rng = np.random.default_rng(spec["seed"])
    move_exported_model_to_train(module)
    opt = torch.optim.Adam(module.parameters(), lr=spec["learning_rate"])
    n, bs = len(y), spec["batch_size"]
    for epoch in range(spec["epochs"]):
        order, total = rng.permutation(n), 0.0
        for start in range(0, n, bs):
            idx = np.sort(order[start:start + bs])
            opt.zero_grad()
            groups = [idx] if batchable else [idx[i:i + 1] for i in range(len(idx))]
            for g in groups:
                args = [torch.from_numpy(np.ascontiguousarray(x[g])) for x in xs]
                loss = loss_of(module(*args), torch.from_numpy(y[g])) * (len(g) / len(idx))
                loss.backward()
                total += float(loss.detach()) * len(idx)
            opt.step()
        progress(epoch + 1, total / n)
    move_exported_model_to_eval(module)


def channel_last_indices(xs: Sequence[np.ndarray]) -> list[int]:
    return [i for i, x in enumerate(xs) if x.ndim in CHANNEL_LAST_RANKS]


def to_tflite(module: Any, quant: Any, samples: Sequence[np.ndarray], channel_last: bool) -> bytes:
    """litert-torch on the PT2E-converted module. ``samples`` (model layout) fix the traced
    shapes (batch 1 for a dynamic program: TFLM wants batch 1). With ``channel_last`` every
    rank-3/4 input is taken channel-last at the interface, so no TRANSPOSE runs first."""
    import litert_torch
    import torch
    from litert_torch.quantize.quant_config import QuantConfig

    args = [torch.from_numpy(np.ascontiguousarray(s)) for s in samples]
    module.training = False  # ep.module() refuses .eval(); litert-torch only reads the flag
    if channel_last and channel_last_indices(samples):
        idx = channel_last_indices(samples)
        module = litert_torch.to_channel_last_io(module, args=idx)
        module.training = False
        args = [a.permute(0, *range(2, a.ndim), 1).contiguous() if i in idx else a for i, a in enumerate(args)]
    edge = litert_torch.convert(module, tuple(args), quant_config=QuantConfig(pt2e_quantizer=quant))
    return bytes(edge.model_content())


# ----------------------------------------------------------------------------- the job
class _Child:
    """Stage bookkeeping and the line protocol on the saved stdout."""

    def __init__(self, out: TextIO) -> None:
        self.out, self.stage, self.times = out, "starting", {}
        self._t = time.monotonic()

    def send(self, **msg: Any) -> None:
        self.out.write(json.dumps(msg) + "\n")
        self.out.flush()

    def enter(self, stage: str) -> None:
        now = time.monotonic()
        self.times[self.stage] = round(self.times.get(self.stage, 0.0) + now - self._t, 3)
        self.stage, self._t = stage, now
        self.send(stage=stage)


def run_job(job_dir: Path, child: _Child) -> None:
    job = json.loads((job_dir / "job.json").read_text(encoding="utf-8"))
    load = lambda names: [np.load(job_dir / n, allow_pickle=False) for n in names]  # noqa: E731
    child.enter("importing torch and litert-torch")
    import torch
    import litert_torch  # noqa: F401  (its import is the slow part: time it as its own stage)
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e, prepare_qat_pt2e

    qat = job.get("qat")
    torch.manual_seed(qat["seed"] if qat else 0)
    torch.use_deterministic_algorithms(True, warn_only=True)
    if job.get("threads"):
        torch.set_num_threads(int(job["threads"]))
    child.enter("loading the program")
    program = torch.export.load(str(job_dir / job["program"]))
    fixed = job.get("fixed_batch")
    calibration = load(job["calibration"]) if job.get("calibration") else None
    if qat:
        train_x, train_y = load(qat["train_x"]), np.load(job_dir / qat["train_y"], allow_pickle=False)
        child.enter("preparing quantization-aware training (prepare_qat_pt2e)")
        module, batchable = trainable_module(program, fixed)
        if not batchable and fixed != 1:
            raise ValueError(f"the program's batch of {fixed} is baked into its graph, so it cannot train: "
                             "export it with a dynamic batch (dynamic_shapes={'x': {0: torch.export.Dim('batch')}})")
        quant = quantizer(per_channel=job["per_channel"], qat=True)
        with qat_patterns_as_modules():
            module = prepare_qat_pt2e(separate_repeated_calls(module), quant)
        child.enter("quantization-aware training")
        train(module, train_x, train_y, qat, batchable,
              lambda epoch, loss: child.send(epoch=epoch, loss=loss))
        samples = calibration or train_x
    else:
        assert calibration is not None
        child.enter("preparing post-training quantization (prepare_pt2e)")
        quant = quantizer(per_channel=job["per_channel"], qat=False)
        module = prepare_pt2e(separate_repeated_calls(program.module()), quant)
        child.enter("calibrating")
        calibrate(module, calibration, fixed)
        samples = calibration
    child.enter("inserting quantized ops (convert_pt2e)")
    with fold_only_present_convs(module) if qat else nullcontext():
        module = convert_pt2e(module, fold_quantize=False)
    child.enter("converting to .tflite (litert-torch)")
    first = [np.arange(fixed or 1) % len(s) for s in samples]
    tflite = to_tflite(module, quant, [s[i] for s, i in zip(samples, first)], job["channel_last"])
    (job_dir / job["output"]).write_bytes(tflite)
    child.enter("done")


def _quiet_stdio(log: Path) -> TextIO:
    """Keep the original stdout for the protocol; point fds 1 and 2 (Python's and native
    code's) at the log file."""
    proto = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    return proto


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1 or not Path(args[0], "job.json").is_file():
        print("usage: python -m edgeq.quantization.torch_worker JOB_DIR (written by edgeq.quantization.torch_quantize)", file=sys.stderr)
        return 2
    job_dir = Path(args[0])
    die_with_parent(os.getppid())  # a killed CLI must not leave a converter running for minutes
    child = _Child(_quiet_stdio(job_dir / "worker.log"))
    try:
        run_job(job_dir, child)
    except BaseException as exc:  # everything goes back as one line; the traceback to the log
        traceback.print_exc()
        lines = str(exc).strip().splitlines()
        child.send(error=f"{type(exc).__name__}: {(lines[0] if lines else '')[:400]}", stage=child.stage)
        return 1
    child.send(done=True, seconds=child.times)
    return 0


if __name__ == "__main__":
    sys.exit(main())
