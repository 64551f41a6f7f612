"""PyTorch models through edgeq's quantization step: PT2E PTQ or QAT, litert-torch, and
the same full-integer interface Keras models get.

Why here and not in ``torch_quantize``: that module is the converter (a child process
around torchao and litert-torch, model layout in, int8-interface .tflite out); this one
speaks the pipeline's language: ``LoadedModel`` and ``Samples`` in the .tflite's interface
layout, ``QuantSettings`` (``--io uint8`` by a flatbuffer edit, ``uint8_io``, since the
converter has no uint8 interface; per-tensor where the target or ``--dense`` asks), and
QAT's options and report fields as ``--qat`` gives them for Keras.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeq.console import info
from edgeq.errors import CalibrationError, UserError
from edgeq.model.calibration import Samples
from edgeq.model.loaded import LoadedModel, to_model_layout
from edgeq.model.tflite_info import parse

#: --loss names (Keras spellings as well) → the converter's losses.
_LOSSES = {None: "auto", "auto": "auto", "crossentropy": "crossentropy", "cross_entropy": "crossentropy",
           "sparse_categorical_crossentropy": "crossentropy", "mse": "mse", "mean_squared_error": "mse"}


def _model_layout(model: LoadedModel, xs: Any) -> list[np.ndarray]:
    return [to_model_layout(x) for x in xs] if model.channel_last else [np.asarray(x) for x in xs]


def _check(settings: Any) -> None:
    if settings.mode != "int8":
        raise UserError(f"PyTorch models convert to full-integer int8 only, not --mode {settings.mode}",
                        hint="use --mode int8 (the default)")
    if settings.io_type not in ("uint8", "int8"):
        raise UserError(f"--io {settings.io_type} is not available for PyTorch models",
                        hint="use --io uint8 (the default) or --io int8 (the converter's own interface)")


def _interface(data: bytes, settings: Any) -> bytes:
    if settings.io_type == "uint8":
        from edgeq.quantization.uint8_io import with_uint8_io

        data = with_uint8_io(data)
    parse(data)  # every edit is read back through the checked reader
    return data


def convert_pytorch(model: LoadedModel, settings: Any, calib: Samples | None) -> bytes:
    """Post-training quantization of a PyTorch model: the .tflite bytes with ``settings``' interface."""
    from edgeq.quantization.torch_quantize import convert_torch

    _check(settings)
    if calib is None:
        raise UserError("PyTorch models need calibration data", hint="pass --calibration DATA (in the model's layout)")
    data = convert_torch(model.torch_model, calibration=_model_layout(model, calib.xs),
                         per_channel=settings.per_channel_dense, channel_last=model.channel_last)
    return _interface(data, settings)


def qat_pytorch(model: LoadedModel, train: Samples, settings: Any, calib: Samples | None, q: Any) -> tuple[bytes, dict[str, Any]]:
    """``--qat`` for a PyTorch model: PT2E prepare → edgeq's training loop → convert, in the
    converter's child; returns the .tflite and the report's training fields."""
    from edgeq.quantization.torch_quantize import QatSpec, convert_torch, resolve_loss

    _check(settings)
    if len(model.outputs) != 1:
        raise UserError(f"QAT of a PyTorch model with {len(model.outputs)} outputs is not supported",
                        hint="drop --qat for post-training quantization, or train a single-output model")
    if q.loss not in _LOSSES:
        raise UserError(f"--loss {q.loss} is not available for PyTorch models",
                        hint="use crossentropy (integer class labels) or mse (targets); default: from the labels")
    if train.y is not None:
        labels = np.asarray(train.y)
    elif train.targets:
        labels = np.asarray(train.targets[0])
    else:
        raise CalibrationError("--train-data needs labels ('y') for QAT", hint="an .npz with 'x' and 'y'")
    tm = model.torch_model
    loss = resolve_loss(tm, labels, _LOSSES[q.loss])
    epoch_losses: list[float] = []

    def progress(epoch: int, mean: float) -> None:
        epoch_losses.append(float(mean))
        info(f"QAT epoch {epoch}/{q.epochs}: loss {mean:.4f}")

    spec = QatSpec(_model_layout(model, train.xs), labels, epochs=q.epochs, loss=loss, batch_size=q.batch_size,
                   learning_rate=q.learning_rate)
    info(f"quantization-aware training of {model.path.name} for {q.epochs} epoch(s), then converting…")
    data = convert_torch(tm, calibration=_model_layout(model, calib.xs) if calib is not None else None,
                         per_channel=settings.per_channel_dense, channel_last=model.channel_last, qat=spec,
                         progress=progress)
    trained = {"loss": loss, "loss_source": "--loss" if q.loss else "labels", "epoch_losses": epoch_losses,
               "rebuilt_from_keras3": False, "train_samples": len(train), "framework": "pytorch (PT2E, torchao)",
               "task": "classification" if loss == "crossentropy" else "regression", "labels": [], "layers": {}}
    return _interface(data, settings), trained


__all__ = ["convert_pytorch", "qat_pytorch"]
