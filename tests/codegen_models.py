"""Tiny models for the codegen tests, converted once per test session with the real
TFLite converter (Keras 3 → SavedModel export → full-integer uint8 I/O).

Conversions cost seconds, so they are cached per process (``lru_cache``) and shared by
every test module that imports these helpers; only a few models are ever converted.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np

_ROOT = Path(tempfile.mkdtemp(prefix="edgeq-codegen-models-"))
atexit.register(shutil.rmtree, _ROOT, True)  # the converted models live as long as the test process


def _convert(model, shape: tuple[int, ...], path: Path, samples: int, dyadic: bool = False, per_channel_dense: bool = True) -> Path:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    export_dir = path.with_suffix(".savedmodel")
    model.export(str(export_dir), input_signature=[tf.TensorSpec([1, *shape], tf.float32)], verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(export_dir))
    rng = np.random.default_rng(0)

    def representative():
        for _ in range(samples):
            x = rng.random((1, *shape), dtype=np.float32)
            # Quarter steps: every sum in the tiny model is exact in float32, so the
            # calibrated ranges (and the golden files) cannot depend on the CPU's SIMD.
            yield [np.round(x * 4) / 4 if dyadic else x]

    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.uint8
    if not per_channel_dense:  # as edgeq converts for targets with per_channel_dense = false
        converter._experimental_disable_per_channel_quantization_for_dense_layers = True
    path.write_bytes(converter.convert())
    return path


@lru_cache(maxsize=2)
def tiny_cnn(per_channel_dense: bool = True) -> Path:
    """Conv → max-pool → dense → softmax on 8x8x1, uint8 I/O (about 3 KB).

    Weights are fixed multiples of 1/8 and layers are named, so the converted model's
    scales, zero points and tensor names do not depend on random state or on which
    models the session built before (Keras numbers unnamed layers per process).
    """
    import keras

    model = keras.Sequential([
        keras.Input((8, 8, 1), name="image"),
        keras.layers.Conv2D(4, 3, activation="relu", name="conv"),
        keras.layers.MaxPooling2D(name="pool"),
        keras.layers.Flatten(name="flatten"),
        keras.layers.Dense(3, name="dense"),
        keras.layers.Softmax(name="softmax"),
    ], name="tiny")
    for layer in model.layers:
        weights = layer.get_weights()
        if weights:
            layer.set_weights([((np.arange(w.size).reshape(w.shape) * 5) % 7 - 3).astype(np.float32) / 8 for w in weights])
    name = "tiny.tflite" if per_channel_dense else "tiny-per-tensor-dense.tflite"
    return _convert(model, (8, 8, 1), _ROOT / name, samples=16, dyadic=True, per_channel_dense=per_channel_dense)


@lru_cache(maxsize=2)
def mobilenet_025(size: int = 96) -> Path:
    """MobileNet v1, alpha 0.25, size x size x 3, 10 classes, untrained (about 300 KB).

    No softmax: on untrained logits TFLM's softmax aborts (input scale too large).
    """
    import keras

    keras.utils.set_random_seed(2)
    base = keras.applications.MobileNet(input_shape=(size, size, 3), alpha=0.25, weights=None, include_top=False, pooling="avg")
    model = keras.Sequential([base, keras.layers.Dense(10)])
    name = "mobilenet_025.tflite" if size == 96 else f"mobilenet_025_{size}.tflite"
    return _convert(model, (size, size, 3), _ROOT / name, samples=4)


def sample_and_reference(tflite: bytes, *, seed: int = 123) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A deterministic uint8/int8 input and host TFLM's output for it: what a firmware
    embeds (its reference is TFLM's own output, not LiteRT's; see ``edgeq.check.validation``)."""
    from edgeq.check.micro import host_outputs
    from edgeq.model.tflite_info import parse

    info = parse(tflite)
    rng = np.random.default_rng(seed)
    inputs = []
    for t in info.inputs:
        limits = np.iinfo(t.numpy_dtype)
        inputs.append(rng.integers(limits.min, limits.max + 1, size=t.shape).astype(t.numpy_dtype))
    outputs = host_outputs(tflite, info, inputs)
    assert outputs is not None, "the codegen tests need the tflite-micro runtime (pip install tflite-micro)"
    return inputs, [np.asarray(y)[0:1] for y in outputs]


@lru_cache(maxsize=1)
def dense_only() -> Path:
    """A per-channel Dense-only model, 64 -> 32 -> 32 -> 8 with ReLU, uint8 I/O (about 6 KB).

    The case where TFLM and LiteRT's reference kernels disagree: LiteRT's requantization
    rounds once (TFLITE_SINGLE_ROUNDING), TFLM's twice, and with nothing after the last
    FULLY_CONNECTED the one-step differences reach the output (measured: 12 of 800
    values on 100 random inputs). Seeded weights and biases (a zero bias would be dropped
    by the converter).
    """
    import keras

    keras.utils.set_random_seed(3)
    model = keras.Sequential([
        keras.Input((64,), name="features"),
        keras.layers.Dense(32, activation="relu", name="fc1"),
        keras.layers.Dense(32, activation="relu", name="fc2"),
        keras.layers.Dense(8, name="fc3"),
    ], name="dense_only")
    rng = np.random.default_rng(3)
    for layer in model.layers:
        kernel, bias = layer.get_weights()
        layer.set_weights([kernel, rng.normal(0.0, 0.1, bias.shape).astype(np.float32)])
    return _convert(model, (64,), _ROOT / "dense_only.tflite", samples=64)
