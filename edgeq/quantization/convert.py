"""Converter settings per quantization mode, and the conversion itself.

Full-integer conversion always sets ``supported_ops=[TFLITE_BUILTINS_INT8]``: an op that
has no int8 kernel must fail the conversion with its name, not silently stay float and
then fail on the microcontroller.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from edgeq.model.calibration import Samples
from edgeq.console import err, quiet
from edgeq.errors import ModelError, UnsupportedOpError, UserError
from edgeq.model.export import export_for_conversion
from edgeq.model.loading import LoadedModel, tf_module
from edgeq.model.tflite_info import ModelInfo, parse
from edgeq.workdir import temp_dir

MODES = ("int8", "int16x8", "float16", "dynamic", "float32")
IO_TYPES = ("uint8", "int8", "float32", "int16")
#: Modes TFLite Micro cannot execute ("Hybrid models are not supported").
MICRO_INCAPABLE = ("float16", "dynamic")


@dataclass(frozen=True)
class QuantSettings:
    """What the user asked for; validated once, here, before any conversion work."""

    mode: str = "int8"
    io: str | None = None  # None: the mode's default (uint8 for int8, float32 otherwise)
    allow_float_fallback: bool = False
    # False: quantize dense (FULLY_CONNECTED) weights per tensor, for TFLM copies whose
    # FULLY_CONNECTED kernel ignores per-channel scales (see Target.per_channel_dense).
    per_channel_dense: bool = True

    @property
    def io_type(self) -> str:
        if self.io is not None:
            return self.io
        return "uint8" if self.mode == "int8" else "float32"

    def validate(self) -> "QuantSettings":
        if self.mode not in MODES:
            raise UserError(f"unknown --mode {self.mode!r}", hint="choose one of " + ", ".join(MODES))
        io = self.io_type
        allowed = {"int8": ("uint8", "int8", "float32"), "int16x8": ("float32", "int16")}.get(self.mode, ("float32",))
        if io not in allowed:
            raise UserError(
                f"--io {io} is not possible with --mode {self.mode}",
                hint=f"--mode {self.mode} accepts --io " + " or ".join(allowed),
            )
        if self.allow_float_fallback and self.mode != "int16x8":
            raise UserError("--allow-float-fallback only applies to --mode int16x8")
        return self

    @property
    def needs_calibration(self) -> bool:
        return self.mode in ("int8", "int16x8")


def convert(model: LoadedModel, settings: QuantSettings, calib: Samples | None) -> bytes:
    """Convert ``model`` to .tflite bytes with ``settings``; calibrate on ``calib``."""
    settings.validate()
    if model.format == "pytorch":
        from edgeq.quantization.pytorch_convert import convert_pytorch

        return convert_pytorch(model, settings, calib)
    tf = tf_module()
    if settings.needs_calibration and calib is None:
        raise UserError(f"--mode {settings.mode} needs calibration data", hint="pass --calibration DATA")
    with temp_dir("convert") as tmp:
        exported = export_for_conversion(model, Path(tmp))
        with quiet():
            converter = tf.lite.TFLiteConverter.from_saved_model(str(exported))
        _configure(converter, settings, calib, model, tf)
        try:
            with quiet():
                data = bytes(converter.convert())
        except Exception as exc:
            raise _conversion_error(exc, settings) from None
    refuse_uninitialized_variables(parse(data), f"the model converted from {model.path.name}")
    return data


def _configure(converter: Any, s: QuantSettings, calib: Samples | None, model: LoadedModel, tf: Any) -> None:
    io_dtype = {"uint8": tf.uint8, "int8": tf.int8, "float32": tf.float32, "int16": tf.int16}[s.io_type]
    if s.mode == "float32":
        return
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if s.mode == "float16":
        converter.target_spec.supported_types = [tf.float16]
        return
    if s.mode == "dynamic":
        return
    assert calib is not None
    converter.representative_dataset = _representative(calib, model)
    if not s.per_channel_dense:
        # TFLiteConverter's switch (tensorflow/lite/python/lite.py in TF 2.21); the default
        # quantizes each output channel of a dense layer with its own scale.
        converter._experimental_disable_per_channel_quantization_for_dense_layers = True
    if s.mode == "int8":
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    else:
        ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
        if s.allow_float_fallback:
            ops.append(tf.lite.OpsSet.TFLITE_BUILTINS)
        converter.target_spec.supported_ops = ops
    converter.inference_input_type = io_dtype
    converter.inference_output_type = io_dtype


def _representative(calib: Samples, model: LoadedModel) -> Any:
    """A generator of single samples keyed by signature name, with a progress line on stderr."""
    names = [s.name for s in model.inputs]
    n = len(calib)

    def gen() -> Iterator[dict[str, np.ndarray]]:
        with err.status(f"calibrating on {n} samples…"):
            for i in range(n):
                yield {name: calib.xs[j][i : i + 1].astype(np.float32) for j, name in enumerate(names)}

    return gen


_OP_PATTERNS = (
    r"'tf\.([A-Za-z0-9_]+)' op is neither a custom op nor a flex op",
    r"'tfl\.([a-z0-9_]+)' op .*(?:not supported|failed)",
    r"op '([A-Za-z0-9_]+)' is not supported",
)


def _conversion_error(exc: Exception, s: QuantSettings) -> Exception:
    text = str(exc)
    ops = sorted({m for pat in _OP_PATTERNS for m in re.findall(pat, text)})
    if ops:
        return UnsupportedOpError(
            f"the converter cannot express {', '.join(ops)} as {s.mode} TFLite builtins",
            hint="replace those layers with supported ones (see the TFLite op list); full-integer "
            "conversion never falls back to float",
            ops=tuple(ops),
        )
    first = next((ln.strip() for ln in text.splitlines() if "error" in ln.lower()), text.strip().splitlines()[0] if text.strip() else type(exc).__name__)
    return ModelError(f"TFLite conversion failed: {first[:400]}", hint="run with --debug for the converter's full log")


def refuse_uninitialized_variables(info: ModelInfo, source: str) -> None:
    """Refuse a model that reads weights from variables nothing initializes.

    That is what TF's converter makes of a Keras 3 model saved with ``tf.saved_model.save``
    when converted directly: VAR_HANDLE/READ_VARIABLE ops, no weights, ~10 % accuracy.
    Stateful models that really own variables initialize them in a CALL_ONCE subgraph.
    """
    names = set(info.op_names)
    if names & {"VAR_HANDLE", "READ_VARIABLE"} and "CALL_ONCE" not in names:
        raise ModelError(
            f"{source} reads its weights from variables that nothing initializes: the weights are missing "
            "(this is what converting a Keras 3 model saved with tf.saved_model.save directly produces)",
            hint="export Keras 3 models with model.export(dir) or model.save('model.keras'), and give edgeq that",
        )
