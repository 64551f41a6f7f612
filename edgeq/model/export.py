"""The batch-1 SavedModel the TFLite converter reads, from any loaded Keras/SavedModel model.

Why apart from ``edgeq.model.loading``: exporting a fine-tuned tf_keras (QAT) model has its own
path, and ``edgeq.quantization.qat`` builds on ``loading``; with the export here, above both, loading
never has to reach back into QAT. Batch 1 matters: a dynamic batch adds SHAPE/
STRIDED_SLICE/PACK ops and arena to the .tflite (DESIGN.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeq.console import quiet
from edgeq.errors import ModelError
from edgeq.model.loading import LoadedModel, tf_module


def export_for_conversion(model: LoadedModel, workdir: Path) -> Path:
    """Write a SavedModel with a fixed batch of 1 (a dynamic batch adds ops and arena)."""
    tf = tf_module()
    if model.conversion_blocker:
        raise ModelError(model.conversion_blocker,
                         hint="export the model from Keras with the recurrent layers built with unroll=True, "
                         "or give edgeq the .keras/.h5 file (edgeq unrolls those itself)")
    if model.keras_model is None:
        assert model.saved_model_dir is not None
        return _rebatch_saved_model(model, workdir, tf)
    if type(model.keras_model).__module__.startswith("tf_keras."):
        return export_qat_for_conversion(model, workdir)  # tf_keras export() takes no input signature
    out = workdir / "saved_model"
    specs = [tf.TensorSpec(s.shape, tf.float32) for s in model.inputs]
    signature = [specs] if len(specs) > 1 else specs
    try:
        with quiet():
            if hasattr(model.keras_model, "export"):
                model.keras_model.export(str(out), format="tf_saved_model", input_signature=signature, verbose=False)
            else:  # pragma: no cover - tf_keras models loaded only through tf_keras
                fn = tf.function(lambda *a: model.keras_model(list(a) if len(a) > 1 else a[0]))
                tf.saved_model.save(model.keras_model, str(out), signatures=fn.get_concrete_function(*specs))
    except Exception as exc:
        raise ModelError(f"cannot export {model.path.name} for conversion: {str(exc).splitlines()[0][:300]}") from None
    return out


def _rebatch_saved_model(model: LoadedModel, workdir: Path, tf: Any) -> Path:
    """Re-save a SavedModel's serving function with batch 1, keeping its variables."""
    src = model.saved_model_dir
    names = [s.name for s in model.inputs]
    specs = [tf.TensorSpec(s.shape, tf.as_dtype(s.dtype), name=s.name) for s in model.inputs]
    out = workdir / "saved_model"
    with quiet():
        loaded = tf.saved_model.load(str(src))
        sig = loaded.signatures["serving_default"]
        holder = tf.Module()
        holder.loaded = loaded  # keeps the variables tracked, so they are saved again
        holder.serve = tf.function(lambda *a: sig(**dict(zip(names, a))), input_signature=specs)
        tf.saved_model.save(holder, str(out), signatures={"serving_default": holder.serve.get_concrete_function()})
    return out


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


__all__ = ["export_for_conversion", "export_qat_for_conversion"]
