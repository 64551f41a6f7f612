"""Compare the quantized model with the float one, and LiteRT's reference kernels with TFLM.

LiteRT runs with ``OpResolverType.BUILTIN_REF``: its default XNNPACK path differs from
TFLM by a few units. The reference kernels are closer but not identical. Measured with
ai-edge-litert 2.3.0 against TFLM 90b983c2 by replaying each layer on LiteRT's own
intermediate tensors: LiteRT's CONV_2D requantizes like TFLM (gemmlowp's double rounding:
``SaturatingRoundingDoublingHighMul`` then ``RoundingDivideByPOT``; 0 differing values of
153,600), but its FULLY_CONNECTED rounds **once** (``(acc * m + 2^(30-shift)) >> (31-shift)``,
the ``TFLITE_SINGLE_ROUNDING`` form; a float requantization gives the same values), per
channel and per tensor alike, every value reproduced. TFLM's FULLY_CONNECTED (reference
and CMSIS-NN ``arm_nn_requantize``) rounds twice, so the two differ by one step wherever
the first rounding lands on a tie of the second. Dense-only models show it at their
outputs (12 of 800 values on a per-channel 64-32-32-8 model). So a firmware's reference
is TFLM's own output, and the ``tflm_*`` figures only report how far LiteRT's validation
figures are from what the device computes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from edgeq.errors import ModelError
from edgeq.text import first_line
from edgeq.model.tflite_info import ModelInfo, TensorInfo


@dataclass(frozen=True)
class ValidationResult:
    """Float vs quantized on held-out samples; null fields where not applicable."""

    samples: int
    float_accuracy: float | None
    quantized_accuracy: float | None
    agreement: float | None
    rmse: float | None
    max_abs_error: float | None
    cosine: float | None
    tflm_match_rate: float | None = None
    source: str = ""
    tflm_mismatch_values: int | None = None  # output values where TFLM != LiteRT BUILTIN_REF
    tflm_compared_values: int | None = None  # output values compared (every sample, every output)
    tflm_max_step_diff: float | None = None  # largest |TFLM - LiteRT| in raw units (integer steps when quantized)

    def to_dict(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "float_accuracy": self.float_accuracy,
            "quantized_accuracy": self.quantized_accuracy,
            "agreement": self.agreement,
            "rmse": self.rmse,
            "max_abs_error": self.max_abs_error,
            "cosine": self.cosine,
            "tflm_match_rate": self.tflm_match_rate,
            "tflm_mismatch_values": self.tflm_mismatch_values,
            "tflm_compared_values": self.tflm_compared_values,
            "tflm_max_step_diff": self.tflm_max_step_diff,
            "source": self.source,
        }


def quantize_input(x: np.ndarray, t: TensorInfo) -> np.ndarray:
    """Float data → the input tensor's dtype using its scale and zero point."""
    dtype = t.numpy_dtype
    if dtype.kind == "f":
        return x.astype(dtype)
    if not t.scale:
        return x.astype(dtype)
    info = np.iinfo(dtype)
    q = np.round(x / t.scale + (t.zero_point or 0))
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(y: np.ndarray, t: TensorInfo) -> np.ndarray:
    if y.dtype.kind == "f" or not t.scale:
        return y.astype(np.float32)
    return ((y.astype(np.float32) - (t.zero_point or 0)) * t.scale).astype(np.float32)


#: How long LiteRT may take to load, allocate and run an untrusted model once, in a child.
LITERT_CHECK_TIMEOUT = 120.0
_STAGES = ("loading the model", "allocating its tensors", "running it once on zeros")
_litert_ok: set[str] = set()  # sha256 of the models whose isolated check passed


def litert_smoke(data: bytes) -> str:
    """The isolated job of ``check_litert``: load, allocate, run once on zeros; reply JSON.

    Announces each stage on fd 2 first, so a crash names the stage it happened in. Only
    a crash or a load/allocate error is the model's fault: an error while running on
    zeros (an integer division by zero, say) is left to the real run to report.
    """
    import json

    from edgeq.check.isolate import STAGE_PREFIX

    def announce(now: str) -> str:
        os.write(2, f"{STAGE_PREFIX}{now}\n".encode())  # fd 2 itself: in order with LiteRT's own lines
        return now

    stage = announce(_STAGES[0])
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        interp = Interpreter(model_content=data, experimental_op_resolver_type=OpResolverType.BUILTIN_REF, num_threads=1)
        stage = announce(_STAGES[1])
        interp.allocate_tensors()
        stage = announce(_STAGES[2])
        for d in interp.get_input_details():
            interp.tensor(d["index"])().fill(0)  # in place: nothing allocated from the shapes
        interp.invoke()
    except Exception as exc:  # LiteRT raises RuntimeError/ValueError with its own message
        return json.dumps({"ok": False, "stage": stage, "error": first_line(exc)})
    return json.dumps({"ok": True, "stage": "", "error": ""})


def check_litert(data: bytes, sha256: str, *, label: str = "") -> None:
    """Load, allocate and run ``data`` once in a child process before this process does.

    Why: LiteRT trusts the model; a malformed one that passed ``parse`` can still make a
    kernel segfault or abort, which in this process would end edgeq with no message. In a
    child (``edgeq.check.isolate``: forked, or spawned once TensorFlow is loaded) the signal is
    a ``ModelError`` naming it. The child's address space is capped, so a model that makes
    LiteRT allocate without bound fails there too. Each model is checked once per process.
    ``label`` (a file name) goes into the messages.
    """
    if sha256 in _litert_ok:
        return
    import json

    from edgeq.check.isolate import exit_description, run_isolated
    from edgeq.model.tflite_checks import max_activation_bytes

    end = run_isolated("edgeq.check.validation:litert_smoke", data, timeout=LITERT_CHECK_TIMEOUT,
                       memory=max_activation_bytes() + (512 << 20))
    of = f" ({label})" if label else ""
    if end.returncode is None:
        raise ModelError(f"LiteRT did not finish {end.stage or _STAGES[0]}{of} within {LITERT_CHECK_TIMEOUT:.0f} s",
                         hint="the model may loop forever; check where it came from")
    if end.crashed:
        said = end.log_tail(2)
        raise ModelError(f"LiteRT crashed with {exit_description(end.returncode)} while {end.stage or _STAGES[0]}{of}: "
                         "the file is malformed" + (f" (LiteRT said: {said})" if said else ""),
                         hint="re-export the model with the TFLite converter; a model that crashes LiteRT also "
                         "crashes firmware")
    try:
        reply = json.loads(end.reply)
    except ValueError:
        raise ModelError(f"LiteRT's check of the model{of} ended without a reply: {end.log_tail(2)}") from None
    if not reply["ok"] and reply["stage"] != _STAGES[2]:
        raise ModelError(f"LiteRT cannot load the model{of} ({reply['stage']}): {reply['error']}",
                         hint="re-export the model with the TFLite converter")
    _litert_ok.add(sha256)


class ReferenceRunner:
    """LiteRT interpreter with reference kernels, addressed in the model's signature order."""

    def __init__(self, data: bytes, info: ModelInfo, in_names: Sequence[str], out_names: Sequence[str],
                 *, trusted: bool = False) -> None:
        """``trusted``: ``data`` is what edgeq's own conversion just produced; anything else
        (a user's .tflite) is first loaded and run once in a child (``check_litert``)."""
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        if not trusted:
            check_litert(data, info.sha256)
        try:
            self.interp = Interpreter(
                model_content=data, experimental_op_resolver_type=OpResolverType.BUILTIN_REF, num_threads=1
            )
            self.interp.allocate_tensors()
        except Exception as exc:
            raise ModelError(f"LiteRT cannot load the model: {first_line(exc)}") from None
        self.info = info
        self.in_perm = self._perm(info.inputs, in_names, "inputs")
        self.out_perm = self._perm(info.outputs, out_names, "outputs")
        self._in_idx = [t.index for t in info.inputs]
        self._out_idx = [t.index for t in info.outputs]

    def _perm(self, tensors: Sequence[TensorInfo], names: Sequence[str], kind: str) -> list[int]:
        """perm[k] = position in ``names`` of the signature entry feeding subgraph slot k."""
        sigs = self.interp.get_signature_list()
        if not sigs or list(names) == [t.name for t in tensors]:
            return list(range(len(tensors)))
        runner = self.interp.get_signature_runner(next(iter(sigs)))
        details = runner.get_input_details() if kind == "inputs" else runner.get_output_details()
        by_index = {d["index"]: n for n, d in details.items()}
        try:
            return [list(names).index(by_index[t.index]) for t in tensors]
        except (KeyError, ValueError):
            return list(range(len(tensors)))

    def to_subgraph(self, xs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Signature-ordered float inputs → quantized inputs in subgraph order."""
        return [quantize_input(xs[self.in_perm[k]], t) for k, t in enumerate(self.info.inputs)]

    def from_subgraph(self, ys: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Subgraph-ordered raw outputs → dequantized outputs in signature order."""
        out: list[np.ndarray] = [np.empty(0)] * len(ys)
        for k, t in enumerate(self.info.outputs):
            out[self.out_perm[k]] = dequantize(ys[k], t)
        return out

    def run_raw(self, qs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Run sample by sample (batch 1 model) on subgraph-ordered inputs; stack outputs."""
        n = qs[0].shape[0]
        per_sample = sum(int(np.prod(d["shape"])) * np.dtype(d["dtype"]).itemsize
                         for d in self.interp.get_output_details())
        from edgeq.model.tflite_checks import max_activation_bytes

        if n * per_sample > max_activation_bytes():
            raise ModelError(f"the outputs of {n} samples take {n * per_sample:,} bytes, more than the limit of "
                             f"{max_activation_bytes():,} (EDGEQ_MAX_ACTIVATION_BYTES)",
                             hint="evaluate on fewer samples, or raise the limit: EDGEQ_MAX_ACTIVATION_BYTES=<bytes>")
        outs: list[list[np.ndarray]] = [[] for _ in self._out_idx]
        try:
            for i in range(n):
                for idx, q in zip(self._in_idx, qs):
                    self.interp.set_tensor(idx, q[i : i + 1])
                self.interp.invoke()
                for j, idx in enumerate(self._out_idx):
                    outs[j].append(self.interp.get_tensor(idx).copy())
        except (RuntimeError, ValueError) as exc:  # LiteRT's kernel and shape errors
            raise ModelError(f"LiteRT failed running the model on sample {i}: {first_line(exc)}",
                             hint="check that the data matches the model's inputs") from None
        # Stacked along a new axis unless every output already has a batch dimension of 1,
        # so the first dimension counts samples whatever the model's output shapes are.
        return [np.concatenate(o) if all(a.ndim and a.shape[0] == 1 for a in o) else np.stack(o) for o in outs]


def compare(
    float_out: Sequence[np.ndarray] | None,
    quant_out: Sequence[np.ndarray],
    labels: np.ndarray | None,
    *,
    source: str = "",
) -> ValidationResult:
    """Metrics on the first output for top-1; error metrics over all outputs, in float units."""
    n = int(quant_out[0].shape[0])
    q0 = quant_out[0].reshape(n, -1)
    classify = q0.shape[1] > 1
    q_top = np.argmax(q0, axis=1) if classify else None
    f_acc = q_acc = agree = rmse = mae = cos = None
    if labels is not None and classify:
        q_acc = float(np.mean(q_top == labels))
    if float_out is not None:
        f0 = float_out[0].reshape(n, -1)
        if classify:
            f_top = np.argmax(f0, axis=1)
            agree = float(np.mean(f_top == q_top))
            if labels is not None:
                f_acc = float(np.mean(f_top == labels))
        f = np.concatenate([a.reshape(n, -1) for a in float_out], axis=1).astype(np.float64)
        q = np.concatenate([a.reshape(n, -1) for a in quant_out], axis=1).astype(np.float64)
        diff = f - q
        rmse = float(np.sqrt(np.mean(diff**2)))
        mae = float(np.max(np.abs(diff)))
        denom = np.linalg.norm(f, axis=1) * np.linalg.norm(q, axis=1)
        cos = float(np.mean(np.where(denom > 0, np.sum(f * q, axis=1) / np.maximum(denom, 1e-30), 1.0)))
    return ValidationResult(n, f_acc, q_acc, agree, rmse, mae, cos, None, source)


def match_rate(ref_raw: Sequence[np.ndarray], tflm_raw: Sequence[np.ndarray]) -> float:
    """Fraction of samples whose every output is byte-identical between the two runtimes."""
    n = ref_raw[0].shape[0]
    same = np.ones(n, dtype=bool)
    for a, b in zip(ref_raw, tflm_raw):
        same &= np.all(a.reshape(n, -1) == b.reshape(n, -1), axis=1)
    return float(np.mean(same))


@dataclass(frozen=True)
class TflmAgreement:
    """How TFLM's outputs compare with LiteRT's reference kernels on the same inputs."""

    match_rate: float  # fraction of samples whose every output byte is identical
    mismatch_values: int
    compared_values: int
    max_step_diff: float  # raw units: integer steps for quantized outputs

    def warning(self) -> str | None:
        """The build warning for a disagreement, or None when they agree."""
        if self.mismatch_values == 0:
            return None
        step = "integer step" if float(self.max_step_diff).is_integer() else "unit"
        steps = f"{self.max_step_diff:g} {step}{'' if self.max_step_diff == 1 else 's'}"
        return (f"TFLM and LiteRT's reference kernels differ on {self.mismatch_values} of {self.compared_values} "
                f"output values (max {steps}; {100 * self.match_rate:.1f} % of samples identical), as expected "
                "where FULLY_CONNECTED layers requantize (LiteRT rounds once, TFLM twice): the validation "
                "figures are LiteRT's; the firmware checks against TFLM's own output")


def tflm_agreement(ref_raw: Sequence[np.ndarray], tflm_raw: Sequence[np.ndarray]) -> TflmAgreement:
    """Per-value comparison of raw outputs (stacked over samples) of both runtimes."""
    # TFLM may have run fewer samples (``edgeq.check._micro_worker`` bounds the bytes of outputs it writes).
    n = min(ref_raw[0].shape[0], np.asarray(tflm_raw[0]).shape[0]) if tflm_raw else ref_raw[0].shape[0]
    same = np.ones(n, dtype=bool)
    mismatched = compared = 0
    worst = 0.0
    for j, (a, b) in enumerate(zip(ref_raw, tflm_raw)):
        a, b = a[:n], np.asarray(b)[:n]
        if a.shape != b.shape:  # one of them computed a shape the model does not declare
            raise ModelError(f"LiteRT and TFLM disagree on the shape of output {j}: {list(a.shape[1:])} per sample in "
                             f"LiteRT, {list(b.shape[1:])} in TFLM: the shapes the model declares do not follow from "
                             "its operators",
                             hint="the file is corrupt or was edited by hand: re-export the model with the TFLite converter")
        a2, b2 = a.reshape(n, -1), b.reshape(n, -1)
        equal = a2 == b2
        same &= np.all(equal, axis=1)
        mismatched += int(np.count_nonzero(~equal))
        compared += int(equal.size)
        if equal.size and not equal.all():
            worst = max(worst, float(np.max(np.abs(a2.astype(np.float64) - b2.astype(np.float64)))))
    return TflmAgreement(float(np.mean(same)), mismatched, compared, worst)
