"""Refuse a model that cannot fit the target before converting it (issue 15, part 5).

Why: conversion and calibration take minutes on a big model (a MobileNet over a Cortex-M3's
64 KiB was refused only after 291 s on a loaded machine), and the exact budget check needs
the converted model and TFLM's measured arena. The float model already says enough to
refuse the hopeless cases: both figures here are **lower bounds** of what the converted
model must hold, so a refusal is never wrong, and a model that passes still meets the exact
check after TFLM has measured it.

- Flash: one byte per weight of the layers whose weights survive conversion as int8 tensors
  (kernels of convolutions, dense and recurrent layers, embeddings). Biases, BatchNorm
  (folded away) and everything else count nothing.
- RAM: at an op that TFLM runs, its inputs and its output are live together; so the largest
  such sum over the layers that always become one op (convolutions, dense, pooling, ADD,
  CONCATENATION, MUL...) bounds the arena from below, with one byte per element (two for
  int16x8 activations). With uint8 input, the first QUANTIZE holds the uint8 and the int8
  copy of the input together. A target whose arena may go to PSRAM is not refused on RAM.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator

from edgeq.errors import BudgetError

#: Keras layers that convert to exactly one TFLM op reading all their inputs and writing their output.
_ONE_OP_LAYERS = frozenset({
    "Conv1D", "Conv2D", "Conv3D", "DepthwiseConv1D", "DepthwiseConv2D", "Conv1DTranspose", "Conv2DTranspose", "Dense",
    "MaxPooling1D", "MaxPooling2D", "AveragePooling1D", "AveragePooling2D", "Add", "Subtract", "Multiply",
    "Concatenate", "Maximum", "Minimum",
})
#: Weight names (last path component) that become int8 constant tensors of at least one byte each.
_INT8_WEIGHTS = ("kernel", "depthwise_kernel", "pointwise_kernel", "recurrent_kernel", "embeddings")


@dataclass(frozen=True)
class Estimate:
    """Lower bounds from the float model; ``layer`` is where the RAM bound comes from."""

    weight_bytes: int
    activation_bytes: int
    layer: str


def _layers(model: Any) -> Iterator[Any]:
    for layer in getattr(model, "layers", ()):
        if getattr(layer, "layers", None) and layer.__class__.__name__ not in _ONE_OP_LAYERS:  # a nested model
            yield from _layers(layer)
        else:
            yield layer


def _elements(tensors: Any) -> int | None:
    """Elements per sample of a tensor or list of tensors; None if any dimension is unknown."""
    total = 0
    for t in tensors if isinstance(tensors, (list, tuple)) else [tensors]:
        dims = tuple(t.shape)[1:]
        if any(d is None for d in dims):
            return None
        total += math.prod(int(d) for d in dims)
    return total


def estimate(keras_model: Any, *, activation_bytes: int, uint8_input: bool) -> Estimate | None:
    """The lower bounds of a Keras model, or None when its structure cannot be read."""
    weights, peak, where = 0, 0, ""
    try:  # advisory: a model Keras cannot describe this way simply gets the exact check later
        for layer in _layers(keras_model):
            for w in layer.weights:
                if w.name.split("/")[-1].split(":")[0] in _INT8_WEIGHTS:
                    weights += math.prod(int(d) for d in w.shape)
            if layer.__class__.__name__ in _ONE_OP_LAYERS:
                n_in, n_out = _elements(layer.input), _elements(layer.output)
                if n_in is not None and n_out is not None and (n_in + n_out) * activation_bytes > peak:
                    peak, where = (n_in + n_out) * activation_bytes, f"{layer.__class__.__name__} {layer.name!r}"
        if uint8_input:
            first = _elements(keras_model.inputs)
            if first is not None and 2 * first > peak:
                peak, where = 2 * first, "the uint8 input and its int8 copy"
    except Exception:  # noqa: BLE001 - see above
        return None
    return Estimate(weights, peak, where)


def refuse_early(keras_model: Any, target: Any, *, mode: str, io: str, flash: int | None, ram: int | None,
                 allow_over_budget: bool) -> Estimate | None:
    """Raise ``BudgetError`` when the float model's lower bounds already exceed the target's
    flash or RAM budget (``flash``/``ram`` override the target's, as for the exact check)."""
    if mode not in ("int8", "int16x8") or keras_model is None or allow_over_budget:
        return None
    found = estimate(keras_model, activation_bytes=2 if mode == "int16x8" else 1, uint8_input=io == "uint8")
    if found is None:
        return None
    problems = []
    flash_limit = flash if flash is not None else target.flash_bytes
    if flash_limit is not None and found.weight_bytes + target.runtime_code_bytes > flash_limit:
        problems.append(f"its weights alone take {found.weight_bytes:,} B of flash as int8 (+ TFLM runtime "
                        f"~{target.runtime_code_bytes:,} B) > {flash_limit:,} B available")
    ram_limit = ram if ram is not None else target.ram_bytes
    if (ram_limit is not None and target.psram_bytes is None
            and found.activation_bytes + target.runtime_ram_bytes > ram_limit):
        problems.append(f"{found.layer} alone needs {found.activation_bytes:,} B of tensor arena (+ runtime "
                        f"~{target.runtime_ram_bytes:,} B) > {ram_limit:,} B of RAM")
    if problems:
        raise BudgetError(
            f"the model cannot fit target {target.name!r}, refused before converting it: " + "; ".join(problems),
            hint="these are lower bounds from the float model; shrink the model (fewer channels, a smaller input), "
            "pick a target with more memory (`edgeq targets`), give your part's real sizes with --flash/--ram, "
            "or pass --allow-over-budget to convert anyway",
        )
    return found


__all__ = ["Estimate", "estimate", "refuse_early"]
