"""Train the bundled example model (run once by maintainers; its outputs are committed).

Uses the 8×8 handwritten digits that ship inside scikit-learn (1,797 images, no download).
Writes edgeq/data/example/{digits.keras, digits_calibration.npy, digits_eval.npz}.
Requires: pip install scikit-learn (dev only; edgeq itself does not need it).
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
from sklearn.datasets import load_digits

OUT = Path(__file__).resolve().parent.parent / "edgeq" / "data" / "example"


def main() -> None:
    keras.utils.set_random_seed(0)
    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0)[..., None]  # (1797, 8, 8, 1) in 0..1
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    train_x, train_y = x[:1200], y[:1200]
    calib_x = x[:400]  # representative data: a slice of the training distribution
    eval_x, eval_y = x[1200:], y[1200:]  # never seen in training

    inp = keras.Input((8, 8, 1), name="image")
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    h = keras.layers.MaxPooling2D(2)(h)
    h = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(h)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(32, activation="relu")(h)
    out = keras.layers.Dense(10, activation="softmax", name="digit")(h)
    model = keras.Model(inp, out, name="digits")
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(train_x, train_y, epochs=40, batch_size=32, verbose=0)
    _, acc = model.evaluate(eval_x, eval_y, verbose=0)
    print(f"held-out accuracy: {acc:.4f}")

    OUT.mkdir(parents=True, exist_ok=True)
    model.save(OUT / "digits.keras")
    np.save(OUT / "digits_calibration.npy", calib_x)
    np.savez_compressed(OUT / "digits_eval.npz", x=eval_x, y=eval_y)


if __name__ == "__main__":
    main()
