"""Quantization-aware training (QAT) with tensorflow-model-optimization, also from Keras 3.

tfmot wraps only tf_keras layers, so Keras 3 models go through ``edgeq.model.keras_bridge``
(rebuilt layer by layer and checked numerically) and tf_keras files are reloaded with
tf_keras itself. Importing tfmot sets ``TF_USE_LEGACY_KERAS=1`` for the whole process;
``_tfmot()`` pins ``tf.keras`` to Keras 3 first and restores the variable afterwards, so
nothing else (Keras 3 export, the TFLM worker subprocess) changes behaviour after a QAT run.

The fine-tuned model is a tf_keras model, whose ``export()`` takes no input signature:
``export_qat_for_conversion`` (``edgeq.model.export``) writes the batch-1 SavedModel the converter needs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeq.model.calibration import Samples
from edgeq.console import err, info, quiet
from edgeq.errors import ModelError, UserError
from edgeq.model.export import export_qat_for_conversion  # re-exported: QAT's export, kept with the others
from edgeq.model.loading import LoadedModel, tf_module, unroll_recurrent
from edgeq.quantization.qat_loss import loss_name, prepare_targets, resolve_losses, saved_loss, task_of
from edgeq.text import first_line

__all__ = ["QatConfig", "QatResult", "qat_finetune", "qat_train", "resolve_loss", "saved_loss", "tf_keras_model",
           "export_qat_for_conversion", "is_tf_keras_model"]

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
    task: str = "classification"  # "regression" when every loss compares arrays (MSE, MAE, ...)
    labels: tuple[str, ...] = ()  # per output: the label form used and any conversion
    layers: dict[str, Any] = field(default_factory=dict)  # qat_annotate.Annotation.to_dict()

    def to_dict(self) -> dict[str, Any]:
        return {"loss": self.loss, "loss_source": self.loss_source, "epoch_losses": list(self.epoch_losses),
                "rebuilt_from_keras3": self.rebuilt_from_keras3, "train_samples": self.train_samples,
                "task": self.task, "labels": list(self.labels), "layers": self.layers}


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

    from edgeq.quantization.qat_annotate import quantize_for_training, refuse_recurrent

    refuse_recurrent(getattr(model.keras_model, "layers", []), model.path.name)
    tf_keras.utils.set_random_seed(seed)
    base, rebuilt = tf_keras_model(model, train)
    losses, source = resolve_losses(model, train, loss)
    targets, notes = prepare_targets(model, train, losses)
    qmodel, annotation = quantize_for_training(base, tfmot, model.path.name)
    if annotation.calibrated:
        info("QAT trains in float and leaves to calibration: " + ", ".join(annotation.calibrated))
    single = len(losses) == 1
    qmodel.compile(optimizer=tf_keras.optimizers.Adam(learning_rate), loss=losses[0] if single else losses)
    x = [np.asarray(v, np.float32) for v in train.xs]
    info(f"quantization-aware training on {len(train)} samples: {epochs} epochs, batch {batch_size}, lr {learning_rate:g}")
    try:
        with quiet():
            history = qmodel.fit(
                x if len(x) > 1 else x[0], targets[0] if single else targets, epochs=epochs, batch_size=batch_size,
                verbose=0, callbacks=[_progress_callback(tf_keras, epochs, -(-len(train) // batch_size))],
            )
    except (ValueError, TypeError) as exc:  # tf_keras raises these for labels/shapes that do not fit
        raise UserError(
            f"QAT training on {model.path.name} failed: {type(exc).__name__}: {first_line(exc)}",
            hint="check that the labels fit the outputs and the loss ("
            + "; ".join(notes) + "); name the loss with --loss",
        ) from None
    losses_per_epoch = tuple(float(v) for v in history.history.get("loss", []))
    name = ", ".join(loss_name(v) for v in losses) if not single else loss_name(losses[0])
    return QatResult(_as_loaded(model, qmodel), name, source, losses_per_epoch, rebuilt, len(train),
                     task_of(losses), tuple(notes), annotation.to_dict())


def _check_args(model: LoadedModel, train: Samples, epochs: int, batch_size: int, learning_rate: float) -> None:
    if model.format not in ("keras", "tf_keras"):
        raise UserError(
            f"--qat needs a Keras model (.keras or .h5), not a {model.format}: a {model.format} has no trainable "
            "Keras graph to fine-tune",
            hint="give edgeq the .keras/.h5 file the SavedModel was exported from, or use PTQ (without --qat)",
        )
    if train.y is None and not train.targets:
        where = f" {train.source}" if train.source else ""
        raise UserError(f"the training data{where} has no labels ('y')",
                        hint="QAT fine-tunes the model: store inputs as 'x' and labels as 'y' in an .npz "
                        "(or name them: train.npz:INPUT,LABELS)")
    if epochs < 1 or batch_size < 1:
        raise UserError("--epochs and --batch-size must be at least 1")
    if not learning_rate > 0:
        raise UserError("--learning-rate must be positive")


def tf_keras_model(model: LoadedModel, train: Samples) -> tuple[Any, bool]:
    """The trainable tf_keras equivalent of ``model`` and whether it was rebuilt from Keras 3."""
    import tf_keras

    from edgeq.model import keras_bridge

    if model.format == "tf_keras":
        try:
            with quiet():
                loaded = tf_keras.models.load_model(model.path, compile=False)
        except Exception:
            loaded = None  # written by tf_keras but only Keras 3 reads it: rebuild below
        if loaded is not None:  # unrolled like the float model (a fused LSTM would not be full-integer)
            return unroll_recurrent(loaded, model.path.name), False
    if model.keras_model is None or not keras_bridge.is_keras3(model.keras_model):
        raise ModelError(f"{model.path.name} did not load as a Keras model; QAT needs one")
    check = [x[:CHECK_SAMPLES] for x in train.xs]
    rebuilt = keras_bridge.to_tf_keras(model.keras_model, check_inputs=check)
    info(f"rebuilt {model.path.name} as tf_keras for QAT ({len(rebuilt.layers)} layers, outputs checked equal)")
    return rebuilt, True


# ----------------------------------------------------------------------------- loss
def resolve_loss(model: LoadedModel, train: Samples, name: str | None) -> Any:
    """The first output's loss: --loss, else the compiled loss saved in the file, else one from the data."""
    return resolve_losses(model, train, name)[0][0]


def resolve_loss_with_source(model: LoadedModel, train: Samples, name: str | None) -> tuple[Any, str]:
    """``resolve_loss`` and where the loss came from, for the report."""
    losses, source = resolve_losses(model, train, name)
    return losses[0], source


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
