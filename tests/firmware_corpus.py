"""Small models whose generated firmware ``tests/test_verify.py`` builds and runs on real
TFLM (QEMU boards and host), chosen to cover the graph shapes whose arena and kernels
differ between CPUs: the bundled example, per-channel Dense only, a DS-CNN (depthwise),
a residual CNN (ADD), an LSTM and a two-output model.

Each model is quantized once per session with the library API (``edgeq.quantize``, the
same converter settings ``edgeq build`` uses for cmake-tflm targets); each (model, target)
project is then written by ``edgeq.build`` from that .tflite plus evaluation data, so the
project embeds a real sample and its reference output. Weights are seeded random: the
tests check that the firmware computes what TFLM computes, not that a model learned.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

CALIBRATION_SAMPLES = 64
EVAL_SAMPLES = 8


@dataclass(frozen=True)
class ModelSpec:
    """A corpus entry: how to make the Keras model, and its input shape(s)."""

    name: str
    make: Callable[[Any], Any] | None  # keras module -> model; None = the bundled example
    shape: tuple[int, ...] = ()
    dense: str | None = None  # edgeq's --dense for the conversion (None: the default, per channel)


@dataclass(frozen=True)
class CorpusModel:
    """A quantized corpus model ready for ``edgeq.build``."""

    name: str
    tflite: Path
    eval_data: Path


def _dense_only(keras: Any) -> Any:
    """Per-channel Dense (TF 2.21's default): DESIGN notes its arena beyond the report."""
    return keras.Sequential([keras.Input((24,)), keras.layers.Dense(48, activation="relu"),
                             keras.layers.Dense(32, activation="relu"), keras.layers.Dense(16, activation="relu"),
                             keras.layers.Dense(6)])


def _autoencoder(keras: Any) -> Any:
    """The MLPerf Tiny anomaly-detection shape: 640-128x4-8-128x4-640 Dense with BN, per channel.
    Its firmware did not start on Cortex-M3/M4 when the arena rule was fed TFLM's allocation
    report (19,536 B given, 20,672 B needed)."""
    L = keras.layers
    inp = keras.Input((640,))
    h = inp
    for units in (128, 128, 128, 128, 8, 128, 128, 128, 128):
        h = L.ReLU()(L.BatchNormalization()(L.Dense(units)(h)))
    return keras.Model(inp, L.Dense(640)(h))


def _ds_cnn(keras: Any) -> Any:
    """A tiny DS-CNN (keyword-spotting shape): conv, depthwise + pointwise blocks, pooling."""
    L = keras.layers
    inp = keras.Input((20, 10, 1))
    h = L.Conv2D(16, (5, 3), strides=(2, 1), padding="same", activation="relu")(inp)
    for _ in range(2):
        h = L.DepthwiseConv2D(3, padding="same", activation="relu")(h)
        h = L.Conv2D(16, 1, activation="relu")(h)
    h = L.AveragePooling2D(pool_size=(10, 10))(h)
    h = L.Flatten()(h)
    return keras.Model(inp, L.Dense(4, activation="softmax")(h))


def _residual_cnn(keras: Any) -> Any:
    """ResNet-style blocks: the skip connection keeps two activations alive (ADD)."""
    L = keras.layers
    inp = keras.Input((16, 16, 3))
    h = L.Conv2D(8, 3, padding="same", activation="relu")(inp)
    skip = h
    h = L.Conv2D(8, 3, padding="same", activation="relu")(h)
    h = L.Conv2D(8, 3, padding="same")(h)
    h = L.Activation("relu")(L.Add()([h, skip]))
    h = L.Conv2D(16, 3, strides=2, padding="same", activation="relu")(h)
    h = L.GlobalAveragePooling2D()(h)
    return keras.Model(inp, L.Dense(5, activation="softmax")(h))


def _mobilenet_dw(keras: Any) -> Any:
    """Depthwise-separable blocks on 32x32x3, a MobileNet in small: TFLM's greedy planner
    misses the lower bound here (8,192 B vs 6,144 B), so its build keeps an offline memory
    plan and the device runs the planned model at the planned arena."""
    L = keras.layers
    inp = keras.Input((32, 32, 3))
    h = L.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inp)
    for filters, stride in ((16, 1), (32, 2), (32, 1), (64, 2)):
        h = L.DepthwiseConv2D(3, strides=stride, padding="same", activation="relu")(h)
        h = L.Conv2D(filters, 1, activation="relu")(h)
    h = L.GlobalAveragePooling2D()(h)
    return keras.Model(inp, L.Dense(4, activation="softmax")(h))


def _lstm(keras: Any) -> Any:
    """An LSTM over a short sequence (UNIDIRECTIONAL_SEQUENCE_LSTM, int16 internals)."""
    return keras.Sequential([keras.Input((12, 6)), keras.layers.LSTM(16), keras.layers.Dense(3, activation="softmax")])


def _two_outputs(keras: Any) -> Any:
    """One trunk, a classifier head and a regression head: two outputs to compare."""
    L = keras.layers
    inp = keras.Input((10, 10, 1))
    h = L.Conv2D(6, 3, activation="relu")(inp)
    h = L.Flatten()(L.MaxPooling2D()(h))
    return keras.Model(inp, [L.Dense(4, activation="softmax", name="cls")(h), L.Dense(2, name="box")(h)])


CORPUS: dict[str, ModelSpec] = {spec.name: spec for spec in (
    ModelSpec("example", None),
    ModelSpec("dense_pc", _dense_only, (24,)),
    ModelSpec("autoencoder", _autoencoder, (640,)),
    ModelSpec("ds_cnn", _ds_cnn, (20, 10, 1)),
    ModelSpec("resnet_add", _residual_cnn, (16, 16, 3)),
    ModelSpec("lstm", _lstm, (12, 6)),
    ModelSpec("two_out", _two_outputs, (10, 10, 1)),
    ModelSpec("mobilenet_dw", _mobilenet_dw, (32, 32, 3)),
    # The same autoencoder with per-tensor dense layers, what --optimize ram keeps for it: ~5 KB
    # of arena instead of ~22 KB; its firmware must start at that much smaller figure too.
    ModelSpec("autoencoder_pt", _autoencoder, (640,), dense="per-tensor"),
)}


def quantize_model(name: str, root: Path) -> CorpusModel:
    """Write the corpus model ``name`` as a full-integer .tflite (uint8 I/O) under ``root``."""
    from edgeq.pipeline import quantize

    spec = CORPUS[name]
    root.mkdir(parents=True, exist_ok=True)
    tflite = root / f"{name}.tflite"
    if spec.make is None:
        from edgeq.cli.example import example_files

        model, calibration, eval_data = example_files()
    else:
        import keras

        keras.utils.set_random_seed(sum(map(ord, name)))
        model = root / f"{name}.keras"
        spec.make(keras).save(model)
        rng = np.random.default_rng(0)
        calibration = root / f"{name}_calib.npy"
        np.save(calibration, rng.random((CALIBRATION_SAMPLES, *spec.shape), dtype=np.float32))
        eval_data = root / f"{name}_eval.npz"
        np.savez(eval_data, x=rng.random((EVAL_SAMPLES, *spec.shape), dtype=np.float32))
    quantize(model, output=tflite, calibration=calibration, eval_data=eval_data, force=True, dense=spec.dense)
    return CorpusModel(name, tflite, Path(eval_data))


def build_project(model: CorpusModel, target: str, board: str | None, out: Path) -> Path:
    """``edgeq.build`` the firmware project of ``model`` for ``target`` (and QEMU ``board``)."""
    import edgeq
    from edgeq.firmware.step import FirmwareOptions

    edgeq.build(model.tflite, target=target, out=out, name=model.name, eval_data=model.eval_data,
                firmware=FirmwareOptions(board=board), force=True)
    return out


__all__ = ["CORPUS", "CorpusModel", "ModelSpec", "build_project", "quantize_model"]
