"""Small real models and data for the tests, built with the real Keras/TF (no downloads).

The digits data ships with edgeq (the bundled example), so the test models learn a real
task and accuracy assertions mean something.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

EXAMPLE = Path(__file__).resolve().parent.parent / "edgeq" / "data" / "example"


def _keras3_cnn(seed: int = 0):  # type: ignore[no-untyped-def]
    import keras

    keras.utils.set_random_seed(seed)
    inp = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    h = keras.layers.Flatten()(h)
    out = keras.layers.Dense(10, activation="softmax")(h)
    m = keras.Model(inp, out)
    m.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    return m


def _tf_keras_cnn(seed: int = 0):  # type: ignore[no-untyped-def]
    import tf_keras

    tf_keras.utils.set_random_seed(seed)
    inp = tf_keras.Input((8, 8, 1))
    h = tf_keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    h = tf_keras.layers.Flatten()(h)
    out = tf_keras.layers.Dense(10, activation="softmax")(h)
    m = tf_keras.Model(inp, out)
    m.compile(optimizer=tf_keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    return m


def build_all(root: Path) -> dict[str, Path]:
    """Write every test model and data file under ``root``; return their paths."""
    import tensorflow as tf

    calib = np.load(EXAMPLE / "digits_calibration.npy")
    with np.load(EXAMPLE / "digits_eval.npz") as z:
        ex, ey = z["x"], z["y"]
    # Labels for the training part: the example model's own labels are not shipped for the
    # calibration slice, so train on the first 400 eval samples and hold out the rest.
    train_x, train_y = ex[:400], ey[:400]
    hold_x, hold_y = ex[400:], ey[400:]
    paths: dict[str, Path] = {}
    np.save(root / "calib.npy", calib)
    np.savez(root / "eval.npz", x=hold_x, y=hold_y)
    paths["calib"], paths["eval"] = root / "calib.npy", root / "eval.npz"

    k3 = _keras3_cnn()
    k3.fit(train_x, train_y, epochs=30, batch_size=32, verbose=0)
    k3.save(root / "cnn.keras")
    paths["keras"] = root / "cnn.keras"
    k3.export(str(root / "cnn_savedmodel"), verbose=False)
    paths["saved_model"] = root / "cnn_savedmodel"

    tk = _tf_keras_cnn()
    tk.fit(train_x, train_y, epochs=30, batch_size=32, verbose=0)
    tk.save(root / "cnn_tfkeras.h5")
    paths["tf_keras"] = root / "cnn_tfkeras.h5"

    # Weightless: tf.saved_model.save of a Keras 3 model drops the variables.
    tf.saved_model.save(k3, str(root / "weightless"))
    paths["weightless"] = root / "weightless"
    # Converted directly, that folder gives VAR_HANDLE/READ_VARIABLE ops and no weights.
    direct = tf.lite.TFLiteConverter.from_saved_model(str(root / "weightless")).convert()
    (root / "weightless_direct.tflite").write_bytes(direct)
    paths["weightless_tflite"] = root / "weightless_direct.tflite"

    paths["reduce_prod"] = _reduce_prod_model(root, tf)
    paths["multi_io"] = _multi_io_model(root)
    return paths


def _reduce_prod_model(root: Path, tf):  # type: ignore[no-untyped-def]
    """A plain tf.Module SavedModel using REDUCE_PROD (TFLite has it, TFLM does not)."""

    class Prod(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = tf.Variable(tf.random.stateless_uniform((4, 4), seed=(1, 2)) + 0.5)

        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])
        def __call__(self, x):  # type: ignore[no-untyped-def]
            h = tf.matmul(x, self.w)
            return {"y": tf.reduce_prod(h, axis=1, keepdims=True)}

    mod = Prod()
    path = root / "reduce_prod"
    tf.saved_model.save(mod, str(path), signatures=mod.__call__.get_concrete_function())
    np.save(root / "calib4.npy", np.random.default_rng(0).random((120, 4), dtype=np.float32))
    return path


def _multi_io_model(root: Path) -> Path:
    """Two inputs, two outputs (a classifier head and a regression head)."""
    import keras

    keras.utils.set_random_seed(1)
    a = keras.Input((4,), name="alpha")
    b = keras.Input((3,), name="beta")
    h = keras.layers.Concatenate()([keras.layers.Dense(8, activation="relu")(a), keras.layers.Dense(8, activation="relu")(b)])
    cls = keras.layers.Dense(3, activation="softmax", name="cls")(h)
    reg = keras.layers.Dense(2, name="reg")(h)
    m = keras.Model([a, b], [cls, reg])
    path = root / "multi_io.keras"
    m.save(path)
    rng = np.random.default_rng(0)
    np.savez(root / "multi_calib.npz", alpha=rng.random((150, 4), dtype=np.float32), beta=rng.random((150, 3), dtype=np.float32))
    return path
