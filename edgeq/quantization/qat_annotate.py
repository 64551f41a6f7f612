"""Which layers QAT fake-quantizes, and how: tfmot's default 8-bit scheme, widened.

``tfmot.quantization.keras.quantize_model`` refuses a whole model over one layer its
registry lacks: BatchNormalization that is not directly after a linear conv (after an
activation, after Dense), Conv1D, LSTM/GRU. edgeq annotates layer by layer instead:

- layers the registry supports, and BatchNormalization a conv folds: tfmot's own config;
- BatchNormalization that cannot fold, and other per-element layers: an output-only
  config (fake-quantize what the layer produces, as the int8 kernel will);
- Conv1D: weights + activation quantized like Dense/Conv2D;
- LSTM/GRU/SimpleRNN: refused. tfmot has no config for their cells, and both ways round
  (left float, or tfmot's RNN config) the converter kept float LOGISTIC/TANH/MUL ops and
  DEQUANTIZE in the "int8" model (measured, TF 2.21), which TFLM firmware must not get;
  post-training quantization of the same model is full-integer;
- anything else: left unannotated, so it trains in float and the
  converter quantizes it from the calibration data like post-training quantization.

The converter runs with ``TFLITE_BUILTINS_INT8`` either way, so the result is still
full-integer; layers left to calibration are listed in the report.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from edgeq.console import quiet
from edgeq.errors import UserError

#: Layers whose BatchNormalization tfmot folds (when the conv has no activation).
_FOLDING = ("Conv2D", "DepthwiseConv2D")
#: Layers that compute per element or reshape: fake-quantizing their output is exact.
_OUTPUT_ONLY = ("BatchNormalization", "LayerNormalization", "Activation", "ELU", "PReLU", "ThresholdedReLU",
                "Multiply", "Subtract", "Average", "Maximum", "Minimum", "MaxPooling1D", "UpSampling1D")
_WEIGHTED = {"Conv1D": ["kernel"]}
#: Recurrent layers: tfmot has the RNN config but no registry entry for their cells.
_RNN = ("LSTM", "GRU", "SimpleRNN")
_NO_QUANTIZE = ("InputLayer",)


@dataclass
class Annotation:
    """What happened to each layer, for the report."""

    default: list[str] = field(default_factory=list)
    output_only: list[str] = field(default_factory=list)
    weighted: list[str] = field(default_factory=list)
    calibrated: list[str] = field(default_factory=list)  # left to the converter

    def to_dict(self) -> dict[str, Any]:
        return {"tfmot_default": len(self.default), "output_quantized": list(self.output_only),
                "weights_quantized_by_edgeq": list(self.weighted), "left_to_calibration": list(self.calibrated)}


def _configs(tfmot: Any) -> tuple[Any, dict[str, Any]]:
    """(config class, quantize_scope objects): tfmot's Default8BitQuantizeConfig does both jobs."""
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry as reg,
    )

    return reg.Default8BitQuantizeConfig, {"Default8BitQuantizeConfig": reg.Default8BitQuantizeConfig}


def _inbound(layer: Any) -> list[Any]:
    nodes = getattr(layer, "_inbound_nodes", []) or []
    out = []
    for node in nodes:
        inb = node.inbound_layers
        out += list(inb) if isinstance(inb, (list, tuple)) else [inb]
    return out


def _foldable_bn(layer: Any) -> bool:
    """BN directly after a linear Conv2D/DepthwiseConv2D that feeds nothing else: tfmot folds it."""
    prev = _inbound(layer)
    if len(prev) != 1 or type(prev[0]).__name__ not in _FOLDING:
        return False
    conv = prev[0]
    act = conv.get_config().get("activation", "linear")
    return act in ("linear", None) and len(getattr(conv, "_outbound_nodes", []) or []) == 1


def plan(model: Any, tfmot: Any) -> dict[str, str]:
    """layer name → 'default' | 'output' | 'weighted' | 'float'."""
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry as reg,
    )

    registry = reg.Default8BitQuantizeRegistry()
    out: dict[str, str] = {}
    for layer in model.layers:
        cls = type(layer).__name__
        if cls in _NO_QUANTIZE:
            continue
        if cls == "BatchNormalization":
            out[layer.name] = "default" if _foldable_bn(layer) else "output"
        elif cls in _WEIGHTED:
            out[layer.name] = "weighted"
        elif cls in _RNN:
            out[layer.name] = "refuse"
        elif registry.supports(layer):
            out[layer.name] = "default"
        elif cls in _OUTPUT_ONLY:
            out[layer.name] = "output"
        else:
            out[layer.name] = "float"
    return out


def refuse_recurrent(layers: Any, fname: str) -> None:
    """QAT refuses recurrent layers by name (see the module docstring); checked before any rebuild."""
    refused = [f"'{layer.name}' ({type(layer).__name__})" for layer in layers if type(layer).__name__ in _RNN]
    if refused:
        raise UserError(
            f"QAT cannot fake-quantize the recurrent layer(s) {', '.join(refused)} of {fname}: tfmot has no "
            "quantization config for their cells and the converted model would keep float ops",
            hint="quantize this model without --qat: post-training quantization makes it full-integer (edgeq unrolls "
            "the recurrent layers)",
        )


def quantize_for_training(model: Any, tfmot: Any, fname: str) -> tuple[Any, Annotation]:
    """The fake-quantized trainable model and what was done per layer.

    If tfmot still refuses a layer (a pattern this plan did not foresee) that layer is
    left to calibration and the model is annotated again; the error is re-raised as a
    ``UserError`` naming the layer only when it persists.
    """
    import tf_keras

    config_cls, scope = _configs(tfmot)
    kinds = plan(model, tfmot)
    refuse_recurrent(model.layers, fname)
    q = tfmot.quantization.keras
    for _ in range(len(kinds) + 1):
        def annotate(layer: Any) -> Any:
            kind = kinds.get(layer.name)
            if kind == "default":
                return q.quantize_annotate_layer(layer)
            if kind == "output":
                return q.quantize_annotate_layer(layer, quantize_config=config_cls([], [], True))
            if kind == "weighted":
                return q.quantize_annotate_layer(layer, quantize_config=config_cls(_WEIGHTED[type(layer).__name__],
                                                                                   ["activation"], False))
            return layer

        try:
            with quiet(), q.quantize_scope(scope):
                annotated = tf_keras.models.clone_model(model, clone_function=annotate)
                qmodel = q.quantize_apply(annotated)
        except (ValueError, RuntimeError, TypeError, KeyError) as exc:
            text = str(exc)
            m = re.search(r"Layer ([\w./-]+):", text) or re.search(r"layer ([\w./-]+)", text)
            name = m.group(1) if m else None
            if name in kinds and kinds[name] != "float":
                kinds[name] = "float"
                continue
            raise UserError(
                f"tfmot cannot prepare {fname} for QAT: {text.strip().splitlines()[0][:300] if text.strip() else type(exc).__name__}",
                hint="QAT needs layers tfmot can wrap (Conv, Dense, pooling, BN, ReLU, Add, ...); use PTQ (without --qat) "
                "for this model",
            ) from None
        return qmodel, _summary(kinds)
    raise UserError(f"tfmot cannot prepare {fname} for QAT", hint="use PTQ (without --qat) for this model")


def _summary(kinds: dict[str, str]) -> Annotation:
    a = Annotation()
    for name, kind in kinds.items():
        {"default": a.default, "output": a.output_only, "weighted": a.weighted, "float": a.calibrated}[kind].append(name)
    return a
