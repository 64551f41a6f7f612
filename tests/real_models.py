"""MLPerf-Tiny-style reference architectures, built for the conformance suite (no downloads).

Every architecture is written once against a Keras module (``keras`` 3 or ``tf_keras``),
so the same graph exists as a Keras 3 ``.keras``, a Keras 2 style tf_keras ``.h5`` and two
SavedModels exported from Keras 3 (fixed batch 1 and dynamic batch). Weights are random
(seeded) and data is tiny random data: the suite checks that edgeq *handles* these graphs
(conversion, validation, QAT, TFLM), not that they learn; accuracy figures are about chance.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

#: Samples per data file: enough for calibration, a held-out split and one QAT epoch.
N = 40
FORMATS = ("keras", "h5", "sm_fixed", "sm_dynamic")
#: Variance-preserving weights: with Keras' default (Glorot) and untrained BN statistics the
#: activations of a 27-layer MobileNet shrink ~2x per layer, to int8 scales so small that
#: LiteRT's reference kernels abort the process in Prepare (a multiplier check); trained
#: models never get there.
HE = "he_normal"


@dataclass(frozen=True)
class Spec:
    """One architecture: its builder, input shape, task and the loss it is compiled with."""

    name: str
    build: Callable[[Any], Any]
    input_shape: tuple[int, ...]
    loss: Any  # a loss name, or a list (one per output)
    classes: tuple[int, ...] = ()  # per output; 0 = regression/binary target
    task: str = "classification"
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _dw_init(K: Any) -> Any:
    """He-normal for a 3x3 depthwise kernel: Keras counts its fan-in as 9 x channels, not 9."""
    return K.initializers.RandomNormal(stddev=(2.0 / 9.0) ** 0.5)


def _conv_bn_relu(K: Any, x: Any, filters: int, kernel: Any, strides: Any = 1) -> Any:
    x = K.layers.Conv2D(filters, kernel, strides=strides, padding="same", kernel_initializer=HE)(x)
    x = K.layers.BatchNormalization()(x)
    return K.layers.Activation("relu")(x)


def resnet8(K: Any) -> Any:
    """MLPerf Tiny image classification (CIFAR-10): 3 residual stacks with Add."""
    inp = K.Input((32, 32, 3))
    x = _conv_bn_relu(K, inp, 16, 3)
    for filters, stride in ((16, 1), (32, 2), (64, 2)):
        y = _conv_bn_relu(K, x, filters, 3, stride)
        y = K.layers.Conv2D(filters, 3, padding="same")(y)
        y = K.layers.BatchNormalization()(y)
        if stride != 1:
            x = K.layers.Conv2D(filters, 1, strides=stride, padding="same")(x)
        x = K.layers.Activation("relu")(K.layers.Add()([x, y]))
    x = K.layers.AveragePooling2D(pool_size=8)(x)
    x = K.layers.Flatten()(x)
    return K.Model(inp, K.layers.Dense(10, activation="softmax")(x), name="resnet8")


def mobilenet_v1(K: Any, alpha: float = 0.25) -> Any:
    """MLPerf Tiny visual wake words: MobileNetV1 0.25 at 96x96x3, BN after every conv."""
    inp = K.Input((96, 96, 3))
    x = _conv_bn_relu(K, inp, int(32 * alpha), 3, 2)
    blocks = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]
    for filters, stride in blocks:
        x = K.layers.DepthwiseConv2D(3, strides=stride, padding="same", depthwise_initializer=_dw_init(K))(x)
        x = K.layers.BatchNormalization()(x)
        x = K.layers.Activation("relu")(x)
        x = _conv_bn_relu(K, x, int(filters * alpha), 1)
    x = K.layers.GlobalAveragePooling2D()(x)
    return K.Model(inp, K.layers.Dense(2, activation="softmax")(x), name="mobilenet_v1_025")


def ds_cnn(K: Any) -> Any:
    """MLPerf Tiny keyword spotting: DS-CNN on 49x10 MFCCs, 12 classes."""
    inp = K.Input((49, 10, 1))
    x = _conv_bn_relu(K, inp, 64, (10, 4), (2, 2))
    for _ in range(4):
        x = K.layers.DepthwiseConv2D(3, padding="same", depthwise_initializer=_dw_init(K))(x)
        x = K.layers.BatchNormalization()(x)
        x = K.layers.Activation("relu")(x)
        x = _conv_bn_relu(K, x, 64, 1)
    x = K.layers.AveragePooling2D(pool_size=(25, 5))(x)
    x = K.layers.Flatten()(x)
    return K.Model(inp, K.layers.Dense(12, activation="softmax")(x), name="ds_cnn")


def dense_autoencoder(K: Any) -> Any:
    """MLPerf Tiny anomaly detection: 640 -> 128x4 -> 8 -> 128x4 -> 640, BN after every Dense."""
    inp = K.Input((640,))
    x = inp
    for units in (128, 128, 128, 128, 8, 128, 128, 128, 128):
        x = K.layers.Dense(units)(x)
        x = K.layers.BatchNormalization()(x)
        x = K.layers.Activation("relu")(x)
    return K.Model(inp, K.layers.Dense(640)(x), name="autoencoder")


def streaming_ww(K: Any) -> Any:
    """MLPerf Tiny streaming wake word: a DS-TCN over 30 frames x 40 log-mel features, 3 classes.

    Written after mlcommons/tiny ``benchmark/training/streaming_wakeword/keras_model.py``
    (``get_model``/``conv_block``, commit 904de6f8652d97a9e1ff73a050aab6b0335457f4): four
    blocks of a bias-free depthwise conv along time only (kernels 3, 5, 10, 15, 'valid',
    stride 1, dilation 1), a bias-free 1x1 conv (128, 128, 128, 32 filters), BatchNorm,
    ReLU and Dropout 0.2; then Flatten and a 3-way softmax Dense. The input is time x 1 x
    features, (30, 1, 40): 1 s of audio in 64 ms windows at a 32 ms stride.

    Why the fixed-length graph: upstream trains and streams with ``variable_length`` (time
    ``None``), but its ``quantize.py`` converts the fixed-length model, and the reference
    ``trained_models/str_ww_ref_model.tflite`` is that graph (int8 I/O, input (1, 30, 1, 40),
    no state tensors): 4 DEPTHWISE_CONV_2D, 4 CONV_2D, RESHAPE, FULLY_CONNECTED, SOFTMAX.
    The time axis shrinks 30 -> 28 -> 24 -> 15 -> 1, so Flatten sees 32 values.
    """
    inp = K.Input((30, 1, 40))
    x = inp
    for filters, kernel in ((128, 3), (128, 5), (128, 10), (32, 15)):
        # He-normal for a (k, 1) depthwise kernel: its fan-in is k, not k x channels.
        init = K.initializers.RandomNormal(stddev=(2.0 / kernel) ** 0.5)
        x = K.layers.DepthwiseConv2D((kernel, 1), padding="valid", use_bias=False, depthwise_initializer=init)(x)
        x = K.layers.Conv2D(filters, 1, use_bias=False, kernel_initializer=HE)(x)
        x = K.layers.BatchNormalization()(x)
        x = K.layers.Activation("relu")(x)
        x = K.layers.Dropout(0.2)(x)
    x = K.layers.Flatten()(x)
    return K.Model(inp, K.layers.Dense(3, activation="softmax")(x), name="streaming_ww")


def conv1d_classifier(K: Any) -> Any:
    """Accelerometer-style 1-D classifier: 128 time steps x 3 axes, 6 classes."""
    inp = K.Input((128, 3))
    x = K.layers.Conv1D(16, 5, activation="relu", padding="same")(inp)
    x = K.layers.MaxPooling1D(2)(x)
    x = K.layers.Conv1D(16, 3, activation="relu", padding="same")(x)
    x = K.layers.GlobalAveragePooling1D()(x)
    return K.Model(inp, K.layers.Dense(6, activation="softmax")(x), name="conv1d")


def lstm_classifier(K: Any) -> Any:
    """A small recurrent model: LSTM over 16 steps of 8 features, 4 classes."""
    inp = K.Input((16, 8))
    x = K.layers.LSTM(16)(inp)
    return K.Model(inp, K.layers.Dense(4, activation="softmax")(x), name="lstm")


def two_output(K: Any) -> Any:
    """A shared trunk with a 3-class head (categorical) and a binary head (sigmoid)."""
    inp = K.Input((32,))
    h = K.layers.Dense(16, activation="relu")(inp)
    cls = K.layers.Dense(3, activation="softmax", name="cls")(h)
    flag = K.layers.Dense(1, activation="sigmoid", name="flag")(h)
    return K.Model(inp, [cls, flag], name="two_output")


def conv_relu_bn(K: Any) -> Any:
    """BatchNormalization after Conv2D(activation='relu'): not foldable into the conv."""
    inp = K.Input((16, 16, 1))
    x = K.layers.Conv2D(8, 3, activation="relu", padding="same")(inp)
    x = K.layers.BatchNormalization()(x)
    x = K.layers.MaxPooling2D(2)(x)
    x = K.layers.Conv2D(16, 3, activation="relu", padding="same")(x)
    x = K.layers.BatchNormalization()(x)
    x = K.layers.GlobalAveragePooling2D()(x)
    return K.Model(inp, K.layers.Dense(5, activation="softmax")(x), name="conv_relu_bn")


SPECS = (
    Spec("resnet8", resnet8, (32, 32, 3), "categorical_crossentropy", (10,)),
    Spec("mobilenet", mobilenet_v1, (96, 96, 3), "categorical_crossentropy", (2,)),
    Spec("ds_cnn", ds_cnn, (49, 10, 1), "sparse_categorical_crossentropy", (12,)),
    Spec("autoencoder", dense_autoencoder, (640,), "mse", (0,), task="regression"),
    Spec("conv1d", conv1d_classifier, (128, 3), "categorical_crossentropy", (6,)),
    Spec("lstm", lstm_classifier, (16, 8), "sparse_categorical_crossentropy", (4,)),
    Spec("two_output", two_output, (32,), ["categorical_crossentropy", "binary_crossentropy"], (3, 0)),
    Spec("conv_relu_bn", conv_relu_bn, (16, 16, 1), "categorical_crossentropy", (5,)),
)
BY_NAME = {s.name: s for s in SPECS}


@dataclass(frozen=True)
class Built:
    """Paths of one architecture's files: model per format and its data files."""

    spec: Spec
    models: dict[str, Path]
    data: Path  # x + integer labels ('y'), or targets for regression
    onehot: Path  # x + one-hot labels (classification); same as data otherwise
    named: Path  # the same arrays under other keys: 'specs', 'labels'


def _labels(spec: Spec, rng: np.random.Generator, x: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(integer-label arrays, one-hot arrays) per output, keyed as the .npz stores them."""
    ints: dict[str, np.ndarray] = {}
    hots: dict[str, np.ndarray] = {}
    keys = ["y"] if len(spec.classes) == 1 else [f"y{i}" for i in range(len(spec.classes))]
    for key, k in zip(keys, spec.classes):
        if spec.task == "regression":
            ints[key] = hots[key] = x.copy()  # an autoencoder reconstructs its input
        elif k == 0:
            ints[key] = hots[key] = rng.integers(0, 2, (len(x), 1)).astype(np.float32)  # binary target
        else:
            y = rng.integers(0, k, len(x)).astype(np.int64)
            ints[key], hots[key] = y, np.eye(k, dtype=np.float32)[y]
    return ints, hots


def build_one(spec: Spec, root: Path) -> Built:
    """Write ``spec`` in every format plus its data files under ``root/spec.name``."""
    import keras
    import tensorflow as tf
    import tf_keras

    d = root / spec.name
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(zlib.crc32(spec.name.encode()))
    x = rng.random((N, *spec.input_shape), dtype=np.float32)
    ints, hots = _labels(spec, rng, x)
    np.savez(d / "data.npz", x=x, **ints)
    np.savez(d / "onehot.npz", x=x, **hots)
    np.savez(d / "named.npz", specs=x, labels=next(iter(ints.values())), unused=np.zeros(3))

    keras.utils.set_random_seed(0)
    k3 = spec.build(keras)
    k3.compile(optimizer="adam", loss=spec.loss)
    models = {"keras": d / f"{spec.name}.keras"}
    k3.save(models["keras"])
    models["sm_fixed"] = d / "sm_fixed"
    k3.export(str(models["sm_fixed"]), input_signature=[tf.TensorSpec([1, *spec.input_shape], tf.float32)],
              verbose=False)
    models["sm_dynamic"] = d / "sm_dynamic"
    k3.export(str(models["sm_dynamic"]), verbose=False)

    tf_keras.utils.set_random_seed(0)
    k2 = spec.build(tf_keras)
    k2.compile(optimizer="adam", loss=spec.loss)
    models["h5"] = d / f"{spec.name}.h5"
    k2.save(models["h5"])
    return Built(spec, models, d / "data.npz", d / "onehot.npz", d / "named.npz")


def build_all(root: Path, names: tuple[str, ...] | None = None) -> dict[str, Built]:
    """Every architecture (or ``names``) in every format, once."""
    return {s.name: build_one(s, root) for s in SPECS if names is None or s.name in names}
