"""Quantization-aware training (QAT) with tensorflow-model-optimization, also from Keras 3.

tfmot wraps only tf_keras layers, so Keras 3 models go through ``edgeq.keras_bridge``
(rebuilt layer by layer and checked numerically) and tf_keras files are reloaded with
tf_keras itself. Importing tfmot sets ``TF_USE_LEGACY_KERAS=1`` for the whole process;
``_tfmot()`` pins ``tf.keras`` to Keras 3 first and restores the variable afterwards, so
nothing else (Keras 3 export, the TFLM worker subprocess) changes behaviour after a QAT run.

The fine-tuned model is a tf_keras model, whose ``export()`` takes no input signature:
``export_qat_for_conversion`` writes the batch-1 SavedModel the converter needs.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeq.calibration import Samples
from edgeq.console import err, info, quiet
from edgeq.errors import ModelError, UserError
from edgeq.loading import LoadedModel, tf_module

#: Samples used to prove the tf_keras rebuild equals the Keras 3 original.
CHECK_SAMPLES = 64


def _tfmot() -> Any:
    """Import tfmot without letting its ``TF_USE_LEGACY_KERAS=1`` leak into the process."""
    tf = tf_module()
    before = os.environ.get("TF_USE_LEGACY_KERAS")
    with quiet():
        import keras  # noqa: F401  (Keras 3 stays importable as itself)

        _ = tf.keras.__name__  # resolve tf.keras now, before tfmot flips the switch
        import tensorflow_model_optimization as tfmot
    if before is None:
        os.environ.pop("TF_USE_LEGACY_KERAS", None)
    else:
        os.environ["TF_USE_LEGACY_KERAS"] = before
    return tfmot


@dataclass(frozen=True)
class QatConfig:
    """The CLI's QAT options, carried through ``pipeline.Options``."""

    train_data: str | Path
    epochs: int = 3
    batch_size: int = 32
    learning_rate: float = 1e-4
    loss: str | None = None


@dataclass(frozen=True)
class QatResult:
    """The fine-tuned model plus what the report shows about the training."""

    model: LoadedModel
    loss: str  # the loss's name
    loss_source: str  # "--loss", "compiled model" or "labels"
    epoch_losses: tuple[float, ...]
    rebuilt_from_keras3: bool
    train_samples: int

    def to_dict(self) -> dict[str, Any]:
        return {"loss": self.loss, "loss_source": self.loss_source, "epoch_losses": list(self.epoch_losses),
                "rebuilt_from_keras3": self.rebuilt_from_keras3, "train_samples": self.train_samples}


def qat_finetune(
    model: LoadedModel,
    train: Samples,
    *,
    epochs: int = 3,
    batch_size: int = 32,
    learning_rate: float = 1e-4,
    loss: str | None = None,
    seed: int = 0,
) -> LoadedModel:
    """Fine-tune ``model`` with fake quantization on ``train``; return the QAT model.

    The result keeps the original's path, fingerprint and I/O names (so validation lines
    up with the float model) and predicts with the fake-quantized tf_keras model; convert
    it with ``export_qat_for_conversion`` and the int8 converter settings.
    """
    return qat_train(model, train, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                     loss=loss, seed=seed).model


def qat_train(
    model: LoadedModel,
    train: Samples,
    *,
    epochs: int = 3,
    batch_size: int = 32,
    learning_rate: float = 1e-4,
    loss: str | None = None,
    seed: int = 0,
) -> QatResult:
    """``qat_finetune`` with the details a report needs (loss used, loss per epoch)."""
    _check_args(model, train, epochs, batch_size, learning_rate)
    tfmot = _tfmot()
    import tf_keras

    tf_keras.utils.set_random_seed(seed)
    base, rebuilt = tf_keras_model(model, train)
    loss_obj, source = resolve_loss_with_source(model, train, loss)
    try:
        with quiet():
            qmodel = tfmot.quantization.keras.quantize_model(base)
    except (ValueError, RuntimeError) as exc:
        raise UserError(
            f"tfmot cannot quantize {model.path.name}: {str(exc).splitlines()[0][:300]}",
            hint="QAT supports the layers of tfmot's default 8-bit scheme (Conv, Dense, pooling, BN, ReLU, Add, ...)",
        ) from None
    qmodel.compile(optimizer=tf_keras.optimizers.Adam(learning_rate), loss=loss_obj)
    x = [np.asarray(v, np.float32) for v in train.xs]
    y = np.asarray(train.y)
    info(f"quantization-aware training on {len(train)} samples: {epochs} epochs, batch {batch_size}, lr {learning_rate:g}")
    with quiet():
        history = qmodel.fit(
            x if len(x) > 1 else x[0], y, epochs=epochs, batch_size=batch_size, verbose=0,
            callbacks=[_progress_callback(tf_keras, epochs, -(-len(train) // batch_size))],
        )
    losses = tuple(float(v) for v in history.history.get("loss", []))
    return QatResult(_as_loaded(model, qmodel), _loss_name(loss_obj), source, losses, rebuilt, len(train))


def _check_args(model: LoadedModel, train: Samples, epochs: int, batch_size: int, learning_rate: float) -> None:
    if model.format not in ("keras", "tf_keras"):
        raise UserError(
            f"--qat needs a Keras model (.keras or .h5), not a {model.format}",
            hint="QAT trains the model's layers; a SavedModel or .tflite has none to train",
        )
    if train.y is None:
        where = f" {train.source}" if train.source else ""
        raise UserError(f"the training data{where} has no labels ('y')",
                        hint="QAT fine-tunes the model: store inputs as 'x' and labels as 'y' in an .npz")
    if len(model.outputs) != 1:
        raise UserError(f"--qat supports single-output models; {model.path.name} has {len(model.outputs)} outputs")
    if epochs < 1 or batch_size < 1:
        raise UserError("--epochs and --batch-size must be at least 1")
    if not learning_rate > 0:
        raise UserError("--learning-rate must be positive")


def tf_keras_model(model: LoadedModel, train: Samples) -> tuple[Any, bool]:
    """The trainable tf_keras equivalent of ``model`` and whether it was rebuilt from Keras 3."""
    import tf_keras

    from edgeq import keras_bridge

    if model.format == "tf_keras":
        try:
            with quiet():
                return tf_keras.models.load_model(model.path, compile=False), False
        except Exception:
            pass  # written by tf_keras but only Keras 3 reads it: rebuild below
    if model.keras_model is None or not keras_bridge.is_keras3(model.keras_model):
        raise ModelError(f"{model.path.name} did not load as a Keras model; QAT needs one")
    check = [x[:CHECK_SAMPLES] for x in train.xs]
    rebuilt = keras_bridge.to_tf_keras(model.keras_model, check_inputs=check)
    info(f"rebuilt {model.path.name} as tf_keras for QAT ({len(rebuilt.layers)} layers, outputs checked equal)")
    return rebuilt, True


# ----------------------------------------------------------------------------- loss
def resolve_loss(model: LoadedModel, train: Samples, name: str | None) -> Any:
    """The user's --loss, else the compiled loss saved in the file, else one from the data."""
    return resolve_loss_with_source(model, train, name)[0]


def resolve_loss_with_source(model: LoadedModel, train: Samples, name: str | None) -> tuple[Any, str]:
    """``resolve_loss`` and where the loss came from, for the report."""
    import tf_keras

    if name:
        try:
            return tf_keras.losses.get(name), "--loss"
        except (ValueError, TypeError):
            raise UserError(f"unknown --loss {name!r}",
                            hint="use a Keras loss name, e.g. sparse_categorical_crossentropy, "
                            "categorical_crossentropy, binary_crossentropy, mse, mae") from None
    saved = saved_loss(model.path)
    if saved is not None:
        return _tf_keras_loss(saved, model.path.name), "compiled model"
    y = np.asarray(train.y)
    units = int(np.prod(model.outputs[0].shape[1:]))
    if y.dtype.kind in "iu" and y.ndim == 1 and units > 1:
        from_logits = not _looks_like_probabilities(model, train)
        return tf_keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits), "labels"
    return tf_keras.losses.MeanSquaredError(), "labels"


def _loss_name(loss: Any) -> str:
    cfg = getattr(loss, "get_config", lambda: {})()
    name = getattr(loss, "__name__", None) or type(loss).__name__
    return f"{name} (from_logits)" if cfg.get("from_logits") else str(name)


def _looks_like_probabilities(model: LoadedModel, train: Samples) -> bool:
    """Softmax outputs (non-negative rows summing to 1) need ``from_logits=False``."""
    if not model.has_float_reference:
        return True
    out = model.predict([x[:CHECK_SAMPLES] for x in train.xs])[0].reshape(min(len(train), CHECK_SAMPLES), -1)
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


def _tf_keras_loss(spec: Any, fname: str) -> Any:
    """Translate a serialised Keras 3 / tf_keras loss into a tf_keras loss object."""
    import inspect

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


# ----------------------------------------------------------------------------- progress
def _progress_callback(tf_keras: Any, epochs: int, steps: int) -> Any:
    """A rich progress bar per epoch with the running loss, on stderr (stdout is for results)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    class _Bar(tf_keras.callbacks.Callback):  # type: ignore[misc, name-defined]
        def on_train_begin(self, logs: dict[str, float] | None = None) -> None:
            self.progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"), TimeElapsedColumn(), console=err, transient=False,
            )
            self.progress.start()

        def on_epoch_begin(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            self.task = self.progress.add_task(f"QAT epoch {epoch + 1}/{epochs}", total=steps, loss="…")

        def on_train_batch_end(self, batch: int, logs: dict[str, float] | None = None) -> None:
            loss = (logs or {}).get("loss")
            self.progress.update(self.task, advance=1, loss="…" if loss is None else f"{float(loss):.4f}")

        def on_train_end(self, logs: dict[str, float] | None = None) -> None:
            self.progress.stop()

    return _Bar()


# ----------------------------------------------------------------------------- result
def _as_loaded(model: LoadedModel, qmodel: Any) -> LoadedModel:
    def predict(xs: list[np.ndarray]) -> list[np.ndarray]:
        with quiet():
            y = qmodel(xs if len(xs) > 1 else xs[0], training=False)
        ys = y if isinstance(y, (list, tuple)) else [y]
        return [np.asarray(v, dtype=np.float32) for v in ys]

    return LoadedModel(model.path, model.format, model.sha256, model.inputs, model.outputs,
                       keras_model=qmodel, _predict=predict)


def is_tf_keras_model(obj: Any) -> bool:
    """True for tf_keras model objects (QAT results), whose ``export()`` takes no signature."""
    return type(obj).__module__.startswith("tf_keras.")


def export_qat_for_conversion(model: LoadedModel, workdir: Path) -> Path:
    """A batch-1 SavedModel of a tf_keras (QAT) model, signature names matching ``model.inputs/outputs``.

    Batch 1 keeps SHAPE/STRIDED_SLICE/PACK ops out of the .tflite (see DESIGN.md); the
    names let ``ReferenceRunner`` map the converter's reordered tensors back.
    """
    tf = tf_module()
    km = model.keras_model
    specs = [tf.TensorSpec(s.shape, tf.float32, name=s.name) for s in model.inputs]
    out_names = [s.name for s in model.outputs]

    def serve(*args: Any) -> dict[str, Any]:
        y = km(list(args) if len(args) > 1 else args[0], training=False)
        ys = y if isinstance(y, (list, tuple)) else [y]
        return dict(zip(out_names, ys))

    out = Path(workdir) / "saved_model"
    fn = tf.function(serve, input_signature=specs)
    try:
        with quiet():
            tf.saved_model.save(km, str(out), signatures={"serving_default": fn.get_concrete_function()})
    except Exception as exc:
        raise ModelError(f"cannot export the QAT model for conversion: {str(exc).splitlines()[0][:300]}") from None
    return out
