"""``--dense auto``: quantize dense layers per tensor where that costs no accuracy.

Why: TF 2.21 quantizes each output channel of a FULLY_CONNECTED layer with its own scale.
TFLM then keeps a multiplier and a shift per channel in the arena, and the converter adds
them to flash: on the Dense anomaly-detection autoencoder that is 22,288 B of arena against
4,640 B for the per-tensor reference (1,672 channels). Per-tensor scales are usually as
accurate for dense layers (their weights share one range far more often than conv filters
do), but not always, so ``auto`` converts both ways, measures both against the float model
and on TFLM, and keeps per-tensor only when it is within the accuracy gate
(``--max-accuracy-drop``, default 0.5 point vs float) — or, without labels, within 10 % of
the per-channel RMSE vs float — and its arena is smaller. Both variants are reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from edgeq.check.micro import check_micro
from edgeq.errors import UserError
from edgeq.model.tflite_info import ModelInfo

DENSE_CHOICES = ("per-channel", "per-tensor", "auto")
#: The accuracy gate when --max-accuracy-drop is not given, in points of top-1 accuracy.
DEFAULT_MAX_DROP = 0.5
#: Without labels: per-tensor may have at most this much more RMSE vs float than per-channel.
RMSE_MARGIN = 1.10


def check_choice(choice: str | None, *, target_per_channel: bool, target: str = "") -> str:
    """The dense quantization to use (``None``: the target's default, per channel); a target
    whose TFLM ignores per-channel dense scales (``per_channel_dense = false``) always gets
    per-tensor, and may not be asked otherwise."""
    if choice is None:
        return "per-channel" if target_per_channel else "per-tensor"
    if choice not in DENSE_CHOICES:
        raise UserError(f"--dense must be one of {', '.join(DENSE_CHOICES)}, not {choice!r}",
                        hint="auto keeps per-tensor dense layers only where they cost no accuracy")
    if not target_per_channel:
        if choice == "per-channel":
            raise UserError(f"target {target!r} quantizes dense layers per tensor: its TFLM ignores per-channel scales",
                            hint="drop --dense per-channel for this target")
        return "per-tensor"
    return choice


def has_per_channel_dense(info: ModelInfo) -> bool:
    """A FULLY_CONNECTED weight quantized per channel: constant, 2-D, several scales."""
    return any(t.is_constant and t.per_channel and len(t.shape) == 2 for t in info.tensors)


@dataclass(frozen=True)
class Variant:
    """One conversion of the model, measured."""

    data: bytes
    info: ModelInfo
    validation: Any  # edgeq.check.validation.ValidationResult
    extra: tuple[Any, ...] = field(default=(), repr=False)  # whatever the caller's validate() returned besides
    arena_bytes: int | None = None

    def to_dict(self) -> dict[str, Any]:
        v = self.validation
        return {"quantized_accuracy": v.quantized_accuracy, "agreement": v.agreement, "rmse": v.rmse,
                "arena_bytes": self.arena_bytes, "size_bytes": len(self.data)}


@dataclass(frozen=True)
class DenseChoice:
    """What ``auto`` chose, why, and both variants' figures."""

    chosen: str
    reason: str
    variants: dict[str, dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {"choice": "auto", "chosen": self.chosen, "reason": self.reason, "variants": self.variants}


def _arena(v: Variant) -> Variant:
    from dataclasses import replace

    return replace(v, arena_bytes=check_micro(v.data, v.info, strict=False).arena_bytes)


def _verdict(pc: Variant, pt: Variant, max_drop: float | None) -> tuple[bool, str]:
    a, b = pc.validation, pt.validation
    if a.float_accuracy is not None and b.quantized_accuracy is not None:
        gate = DEFAULT_MAX_DROP if max_drop is None else max_drop
        drop = 100.0 * (a.float_accuracy - b.quantized_accuracy)
        if drop > gate:
            return False, f"per-tensor accuracy is {drop:.2f} points below float (gate {gate:g})"
        quality = f"per-tensor accuracy {100 * b.quantized_accuracy:.2f} % ({drop:.2f} points below float, gate {gate:g})"
    elif a.rmse is not None and b.rmse is not None:
        if b.rmse > RMSE_MARGIN * a.rmse:
            return False, f"per-tensor RMSE vs float {b.rmse:.4g} is over {RMSE_MARGIN:g}x per-channel's {a.rmse:.4g}"
        quality = f"per-tensor RMSE vs float {b.rmse:.4g} (per-channel {a.rmse:.4g})"
    else:
        return False, "no evaluation data to compare the two variants"
    if pc.arena_bytes is None or pt.arena_bytes is None or pt.arena_bytes >= pc.arena_bytes:
        return False, f"{quality}, but it does not shrink TFLM's arena"
    return True, f"{quality}; TFLM arena {pt.arena_bytes:,} B instead of {pc.arena_bytes:,} B"


def choose_dense(per_channel: Variant, convert_per_tensor: Callable[[], Variant], *,
                 max_drop: float | None) -> tuple[Variant, DenseChoice | None]:
    """Keep ``per_channel`` or the per-tensor conversion (made only when the model has a
    per-channel dense layer and evaluation data to judge it by); None: nothing to choose."""
    if not has_per_channel_dense(per_channel.info):
        return per_channel, None
    if per_channel.validation.samples == 0:
        return per_channel, DenseChoice("per-channel", "no evaluation data to compare the two variants", {})
    pc, pt = _arena(per_channel), _arena(convert_per_tensor())
    keep, reason = _verdict(pc, pt, max_drop)
    variants = {"per-channel": pc.to_dict(), "per-tensor": pt.to_dict()}
    return (pt if keep else pc), DenseChoice("per-tensor" if keep else "per-channel", reason, variants)


__all__ = ["DENSE_CHOICES", "DenseChoice", "Variant", "check_choice", "choose_dense", "has_per_channel_dense"]
