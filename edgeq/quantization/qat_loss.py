"""QAT losses and labels: which loss each output trains with, and labels in the form it needs.

Published models are often compiled with ``categorical_crossentropy`` while their data
stores integer class indices (or the other way round); tf_keras then fails inside
``fit`` with "Shapes (32, 1) and (32, 10) are incompatible". The compiled loss is what the
model's author chose (from_logits, label smoothing), so it is kept and the *labels* are
converted to what it needs; the report records each conversion.
"""

from __future__ import annotations

import inspect
import json
import zipfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgeq.model.calibration import Samples, class_indices, is_one_hot
from edgeq.errors import UserError
from edgeq.model.loading import LoadedModel

_LOSS_HINT = ("use a Keras loss name, e.g. sparse_categorical_crossentropy, categorical_crossentropy, "
              "binary_crossentropy, mse, mae (one per output, comma-separated)")
#: Loss names (class or function, lower-case) by the label form they need.
_KINDS = {
    "sparse": ("sparsecategoricalcrossentropy", "sparse_categorical_crossentropy", "sparsecategoricalfocalcrossentropy"),
    "categorical": ("categoricalcrossentropy", "categorical_crossentropy", "categoricalfocalcrossentropy",
                    "categoricalhinge", "categorical_hinge", "kldivergence", "kl_divergence", "kld",
                    "kullback_leibler_divergence"),
    "binary": ("binarycrossentropy", "binary_crossentropy", "binaryfocalcrossentropy", "binary_focal_crossentropy",
               "hinge", "squared_hinge", "squaredhinge"),
}


def loss_kind(loss: Any) -> str:
    """'sparse', 'categorical', 'binary' or 'regression' (MSE, MAE, Huber, ... : array targets).

    ``loss`` is a loss object, or its name as a string.
    """
    name = (loss if isinstance(loss, str) else getattr(loss, "__name__", None) or type(loss).__name__).lower()
    for kind, names in _KINDS.items():
        if name in names:
            return kind
    return "regression"


def loss_name(loss: Any) -> str:
    cfg = getattr(loss, "get_config", lambda: {})()
    name = getattr(loss, "__name__", None) or type(loss).__name__
    return f"{name} (from_logits)" if cfg.get("from_logits") else str(name)


# ----------------------------------------------------------------------------- which loss
def resolve_losses(model: LoadedModel, train: Samples, name: str | None) -> tuple[list[Any], str]:
    """One tf_keras loss per output: --loss, else the compiled loss saved in the file, else from the labels."""
    import tf_keras

    n_out = len(model.outputs)
    if name:
        names = [v.strip() for v in name.split(",")]
        if len(names) not in (1, n_out):
            raise UserError(f"--loss names {len(names)} losses but the model has {n_out} outputs", hint=_LOSS_HINT)
        out = []
        for v in names * (n_out if len(names) == 1 else 1):
            try:
                out.append(tf_keras.losses.get(v))
            except (ValueError, TypeError):
                raise UserError(f"unknown --loss {v!r}", hint=_LOSS_HINT) from None
        return out, "--loss"
    saved = saved_loss(model.path)
    if saved is not None:
        return _saved_losses(saved, model), "compiled model"
    return [_loss_from_labels(model, train, i) for i in range(n_out)], "labels"


def _saved_losses(spec: Any, model: LoadedModel) -> list[Any]:
    n_out, fname = len(model.outputs), model.path.name
    if isinstance(spec, dict) and "class_name" not in spec:  # {output name: loss}
        names = model.user_output_names
        if len(spec) == 1:
            spec = [next(iter(spec.values()))] * n_out
        elif all(n in spec for n in names):
            spec = [spec[n] for n in names]
        else:
            raise UserError(f"{fname} was compiled with losses for outputs {sorted(spec)}, but its outputs are {names}",
                            hint="name one loss per output with --loss, e.g. --loss categorical_crossentropy,mse")
    specs = list(spec) if isinstance(spec, (list, tuple)) else [spec] * n_out
    if len(specs) == 1:
        specs = specs * n_out
    if len(specs) != n_out:
        raise UserError(f"{fname} was compiled with {len(specs)} losses for {n_out} outputs", hint=_LOSS_HINT)
    return [_tf_keras_loss(s, fname) for s in specs]


def _loss_from_labels(model: LoadedModel, train: Samples, i: int) -> Any:
    import tf_keras

    y = _target(train, i, model)
    units = int(np.prod(model.outputs[i].shape[1:]))
    probs = _looks_like_probabilities(model, train, i)
    if units > 1 and class_indices(y) is not None and (y.ndim == 1 or y.shape[1:] == (1,) or is_one_hot(y)):
        cls = tf_keras.losses.CategoricalCrossentropy if is_one_hot(y) else tf_keras.losses.SparseCategoricalCrossentropy
        return cls(from_logits=not probs)
    if units == 1 and y.size and np.all((y == 0) | (y == 1)):
        return tf_keras.losses.BinaryCrossentropy(from_logits=not probs)
    return tf_keras.losses.MeanSquaredError()


def _looks_like_probabilities(model: LoadedModel, train: Samples, i: int = 0) -> bool:
    """Softmax/sigmoid outputs (within [0, 1], softmax rows summing to 1) need ``from_logits=False``."""
    if not model.has_float_reference:
        return True
    n = min(len(train), 64)
    out = model.predict([x[:n] for x in train.xs])[i].reshape(n, -1)
    if out.shape[1] == 1:
        return bool(np.all((out >= 0) & (out <= 1)))
    return bool(np.all(out >= 0) and np.allclose(out.sum(axis=1), 1.0, atol=1e-3))


def saved_loss(path: Path) -> Any:
    """The loss stored with the model (``compile_config`` in .keras, ``training_config`` in .h5)."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                cfg = json.loads(z.read("config.json"))
            return (cfg.get("compile_config") or {}).get("loss")
        import h5py

        with h5py.File(path, "r") as f:
            raw = f.attrs.get("training_config")
        if raw is None:
            return None
        return json.loads(raw.decode() if isinstance(raw, bytes) else raw).get("loss")
    except Exception:
        return None


def compiled_task(path: Path) -> str | None:
    """'regression' when every compiled loss is a regression loss, 'classification' otherwise, None if unknown."""
    if not Path(path).is_file():
        return None
    spec = saved_loss(Path(path))
    if spec is None:
        return None
    specs = list(spec.values()) if isinstance(spec, dict) and "class_name" not in spec else (
        list(spec) if isinstance(spec, (list, tuple)) else [spec])
    kinds = [loss_kind(_spec_name(s)) for s in specs]
    return "regression" if all(k == "regression" for k in kinds) else "classification"


def _spec_name(spec: Any) -> str:
    """The loss name in a serialised spec, without importing Keras ('mse', 'CategoricalCrossentropy', ...)."""
    if isinstance(spec, dict):
        if spec.get("class_name") == "function":
            cfg = spec.get("config")
            return str(cfg if isinstance(cfg, str) else (cfg or {}).get("name", ""))
        return str(spec.get("class_name", ""))
    return str(spec)


def _tf_keras_loss(spec: Any, fname: str) -> Any:
    """Translate a serialised Keras 3 / tf_keras loss into a tf_keras loss object."""
    import tf_keras

    if isinstance(spec, (list, tuple)) and len(spec) == 1:
        spec = spec[0]
    if isinstance(spec, dict) and len(spec) == 1 and "class_name" not in spec:
        spec = next(iter(spec.values()))  # {output_name: loss} for the single output
    try:
        if isinstance(spec, str):
            return tf_keras.losses.get(spec)
        if isinstance(spec, dict) and spec.get("class_name") == "function":
            return tf_keras.losses.get(spec["config"])
        if isinstance(spec, dict) and "class_name" in spec:
            cls = getattr(tf_keras.losses, spec["class_name"])
            accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "reduction", "name"}
            return cls(**{k: v for k, v in (spec.get("config") or {}).items() if k in accepted})
    except Exception:
        pass
    raise UserError(f"cannot reuse the loss {fname} was compiled with ({str(spec)[:120]})",
                    hint="name one with --loss, e.g. --loss sparse_categorical_crossentropy")


# ----------------------------------------------------------------------------- labels
def _target(train: Samples, i: int, model: LoadedModel) -> np.ndarray:
    targets = train.targets or ((train.y,) if train.y is not None else ())
    if i >= len(targets):
        where = f" {train.source}" if train.source else ""
        n_out = len(model.outputs)
        raise UserError(
            f"the model has {n_out} outputs but the training data{where} holds {len(targets)} label array(s)",
            hint="store one label array per output (y0, y1, ... in the .npz) or name them: train.npz:x,LABELS0,LABELS1",
        )
    return np.asarray(targets[i])


def prepare_targets(model: LoadedModel, train: Samples, losses: Sequence[Any]) -> tuple[list[np.ndarray], list[str]]:
    """Each output's labels in the form its loss needs, and a note per output saying what was done."""
    arrays, notes = [], []
    for i, loss in enumerate(losses):
        y = _target(train, i, model)
        out_shape = tuple(model.outputs[i].shape[1:])
        units = int(np.prod(out_shape)) if out_shape else 1
        arr, note = _convert(y, loss_kind(loss), units, out_shape, loss_name(loss), _output_label(model, i))
        arrays.append(arr)
        notes.append(note)
    return arrays, notes


def _output_label(model: LoadedModel, i: int) -> str:
    names = model.user_output_names
    return f"output '{names[i]}'" if i < len(names) and names[i] else f"output {i}"


def _convert(y: np.ndarray, kind: str, units: int, out_shape: tuple[int, ...], lname: str, where: str) -> tuple[np.ndarray, str]:
    n = len(y)
    if kind in ("sparse", "categorical"):
        idx = class_indices(y)
        if idx is None:
            raise UserError(f"{where}: {lname} needs class labels, but the labels have shape {y.shape} and are not "
                            "integer classes or one-hot rows", hint="store class indices (N,) or one-hot rows (N, classes)")
        bad = idx[(idx < 0) | (idx >= units)]
        if bad.size:
            raise UserError(f"{where}: label {int(bad[0])} is out of range for {units} classes",
                            hint=f"class labels must be 0..{units - 1}")
        one_hot_given = y.ndim == 2 and y.shape[1] > 1
        if kind == "sparse":
            return idx, (f"{where}: one-hot labels → class indices for {lname}" if one_hot_given
                         else f"{where}: class indices for {lname}")
        if one_hot_given and y.shape[1] != units:
            raise UserError(f"{where}: one-hot labels have {y.shape[1]} columns but the output has {units} classes")
        return np.eye(units, dtype=np.float32)[idx], (f"{where}: one-hot labels for {lname}" if one_hot_given
                                                       else f"{where}: class indices → one-hot for {lname}")
    if y.size != n * units:
        raise UserError(f"{where}: targets of shape {tuple(y.shape)} do not fit the output shape (N, "
                        f"{', '.join(map(str, out_shape))}) that {lname} compares them with",
                        hint="store one target per output value, e.g. the input itself for an autoencoder")
    return y.reshape((n, *out_shape)).astype(np.float32), (
        f"{where}: {'binary' if kind == 'binary' else 'array'} targets {tuple(y.shape[1:]) or '(scalar)'} for {lname}")


def task_of(losses: Sequence[Any]) -> str:
    return "regression" if all(loss_kind(v) == "regression" for v in losses) else "classification"
