"""Load Keras 3, legacy tf_keras, SavedModel and .tflite models behind one interface.

Everything downstream (calibration, conversion, validation) talks to ``LoadedModel`` in
terms of the serving signature's input/output *names*, because the converter reorders
outputs in the .tflite (measured: a two-output model came back as output_1, output_0).
"""

from __future__ import annotations

import hashlib
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgeq.console import quiet
from edgeq.errors import ModelError
from edgeq.text import first_line

from edgeq.model.loaded import TF_CONTEXT as _TF_CONTEXT, IOSpec, LoadedModel, sha256_path  # re-exported

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")


def natural_key(name: str) -> list[Any]:
    """Sort key putting ``output_2`` before ``output_10``, as Keras numbers its outputs."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def tf_module() -> Any:
    """Import TensorFlow quietly (it costs ~3.5 s and prints C++ logs)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with quiet():
        import tensorflow as tf
    return tf


def load_model(path: str | Path, *, layout: str = "nhwc") -> LoadedModel:
    """Load any supported model file or folder; errors name the file and the fix.

    ``layout`` applies to PyTorch models (``.pt2``, ``pkg.module:factory``) only."""
    from edgeq.model.pytorch import is_pytorch

    if is_pytorch(path):
        from edgeq.model.pytorch import load_pytorch

        return load_pytorch(path, layout=layout)
    p = Path(path)
    if not p.exists():
        raise ModelError(f"no such model: {p}", hint="give a .keras, .h5, .tflite file or a SavedModel folder")
    if p.is_dir():
        if not (p / "saved_model.pb").is_file():
            raise ModelError(f"{p} is a folder but not a SavedModel (no saved_model.pb)")
        return _load_saved_model(p)
    from edgeq.files import MAX_TFLITE_BYTES, regular_file

    suffix = p.suffix.lower()
    regular_file(p, "model file", max_bytes=MAX_TFLITE_BYTES if suffix == ".tflite" else None)
    if suffix == ".tflite":
        from edgeq.model.tflite_info import read_tflite

        data, _ = read_tflite(p)
        return _tflite_model(p, data)
    if suffix in KERAS_SUFFIXES:
        return _load_keras(p)
    if suffix == ".onnx":
        raise ModelError(
            f"unsupported model file type '.onnx': {p}: ONNX is not accepted, the ONNX → TensorFlow route loses QAT ranges and turned a "
            "QDQ-quantized model into a 10 %-accuracy one with no error",
            hint="export the PyTorch model with torch.export.save(torch.export.export(model, example_inputs), 'model.pt2')",
        )
    raise ModelError(
        f"unsupported model file type '{p.suffix}': {p}",
        hint="edgeq reads .keras, .h5, .tflite files, SavedModel folders and PyTorch .pt2 programs",
    )


def _tflite_model(p: Path, data: bytes) -> LoadedModel:
    from edgeq.model.tflite_info import parse

    info = parse(data)
    ins = tuple(IOSpec(t.name, t.shape, t.dtype.lower()) for t in info.inputs)
    outs = tuple(IOSpec(t.name, t.shape, t.dtype.lower()) for t in info.outputs)
    return LoadedModel(p, "tflite", info.sha256, ins, outs, tflite_bytes=data)


def _keras_flavour(p: Path) -> str:
    """'tf_keras' when the file was written by Keras 2 (tf_keras), else 'keras'."""
    version = ""
    try:
        if zipfile.is_zipfile(p):
            import json

            with zipfile.ZipFile(p) as z:
                meta = json.loads(z.read("metadata.json")) if "metadata.json" in z.namelist() else {}
            version = str(meta.get("keras_version", ""))
        else:
            import h5py

            with h5py.File(p, "r") as f:
                v = f.attrs.get("keras_version", b"")
                version = v.decode() if isinstance(v, bytes) else str(v)
    except Exception as exc:
        raise ModelError(f"{p} is not a readable Keras file ({type(exc).__name__}: {exc})") from None
    return "tf_keras" if version.startswith("2.") else "keras"


def _load_keras(p: Path) -> LoadedModel:
    flavour = _keras_flavour(p)
    tf_module()
    with quiet():
        import keras

        try:
            model = keras.models.load_model(p, compile=False)
        except Exception as exc:
            model, first = None, exc
        if model is None and flavour == "tf_keras":
            try:
                import tf_keras

                model = tf_keras.models.load_model(p, compile=False)
            except Exception:
                model = None
    if model is None:
        raise ModelError(
            f"cannot load Keras model {p}: {type(first).__name__}: {str(first).splitlines()[0][:300]}",
            hint="custom layers must be importable and registered; re-save with model.save('x.keras')",
        )
    ins = []
    for i, t in enumerate(model.inputs):
        shape = tuple(t.shape)
        if any(d is None for d in shape[1:]):
            raise ModelError(
                f"input {i} of {p.name} has a dynamic dimension {shape}",
                hint="microcontrollers need fixed shapes: rebuild the model with a fixed input shape",
            )
        ins.append(IOSpec("args_0" if i == 0 else f"args_0_{i}", (1, *shape[1:]), "float32"))
    outs = tuple(IOSpec(f"output_{i}", (1, *tuple(t.shape)[1:])) for i, t in enumerate(model.outputs))
    model = unroll_recurrent(model, p.name)
    batch = tuple(model.inputs[0].shape)[0]

    def predict(xs: list[np.ndarray]) -> list[np.ndarray]:
        with quiet():
            y = model(xs if len(xs) > 1 else xs[0], training=False)
        ys = y if isinstance(y, (list, tuple)) else [y]
        return [np.asarray(v, dtype=np.float32) for v in ys]

    return LoadedModel(p, flavour, sha256_path(p), tuple(ins), outs, keras_model=model, _predict=predict,
                       fixed_batch=int(batch) if batch else None)


#: Keras recurrent layers that export as a while loop unless unrolled.
RECURRENT = ("LSTM", "GRU", "SimpleRNN")


def unroll_recurrent(model: Any, fname: str) -> Any:
    """The same model with its recurrent layers unrolled (same weights, same outputs).

    Why: Keras 3 exports a recurrent layer as a while loop over the time steps, and TF
    2.21's int8 calibrator crashes the process (segmentation fault) on it (measured with
    LSTM and GRU). Unrolled over the fixed sequence length, the layer becomes plain
    FULLY_CONNECTED/ADD/MUL/LOGISTIC/TANH/SPLIT ops that quantize and run on TFLM.
    """
    layers = [layer for layer in getattr(model, "layers", []) if type(layer).__name__ in RECURRENT]
    if not layers or all(getattr(layer, "unroll", True) for layer in layers):
        return model
    from edgeq.console import info

    try:
        cfg = model.get_config()
        for lc in cfg.get("layers", []):
            if lc.get("class_name") in RECURRENT:
                lc["config"]["unroll"] = True
        with quiet():
            rebuilt = type(model).from_config(cfg)
            rebuilt.set_weights(model.get_weights())
    except Exception as exc:
        names = ", ".join(f"'{layer.name}' ({type(layer).__name__})" for layer in layers)
        raise ModelError(
            f"{fname}: recurrent layer(s) {names} must be unrolled for int8 conversion, and rebuilding the model "
            f"unrolled failed ({type(exc).__name__}: {first_line(exc, skip=_TF_CONTEXT)})",
            hint="build the layer with unroll=True (the sequence length is fixed on a microcontroller)",
        ) from None
    info(f"unrolled {', '.join(layer.name for layer in layers)} over the fixed sequence length "
         "(a while loop does not quantize)")
    return rebuilt


def _load_saved_model(p: Path) -> LoadedModel:
    tf = tf_module()
    try:
        with quiet():
            loaded = tf.saved_model.load(str(p))
    except Exception as exc:
        raise ModelError(f"cannot load SavedModel {p}: {str(exc).splitlines()[0][:300]}") from None
    sig = getattr(loaded, "signatures", {}).get("serving_default")
    if sig is None:
        raise ModelError(
            f"SavedModel {p} has no 'serving_default' signature",
            hint="save with tf.saved_model.save(obj, dir, signatures=obj.__call__.get_concrete_function(spec))",
        )
    specs = sig.structured_input_signature[1]
    ins = []
    batches = set()
    for name in sorted(specs, key=natural_key):
        s = specs[name]
        shape = tuple(s.shape.as_list())
        if any(d is None for d in shape[1:]):
            raise ModelError(f"SavedModel input '{name}' has a dynamic dimension {shape}", hint="export with fixed shapes")
        batches.add(shape[0] if shape else None)
        ins.append(IOSpec(name, (1, *shape[1:]), s.dtype.name))
    out_specs = sig.structured_outputs
    outs = tuple(IOSpec(n, (1, *tuple(out_specs[n].shape.as_list())[1:])) for n in sorted(out_specs, key=natural_key))
    fixed = next(iter(batches)) if len(batches) == 1 else None

    def predict(xs: list[np.ndarray]) -> list[np.ndarray]:
        with quiet():
            res = sig(**{s.name: tf.constant(x, dtype=s.dtype) for s, x in zip(ins, xs)})
        return [np.asarray(res[o.name], dtype=np.float32) for o in outs]

    return LoadedModel(p, "saved_model", sha256_path(p), tuple(ins), outs, _predict=predict, saved_model_dir=p,
                       fixed_batch=fixed, conversion_blocker=_while_loop_blocker(sig, p.name))


def _while_loop_blocker(sig: Any, name: str) -> str | None:
    """A reason to refuse conversion when the graph loops (a recurrent layer not unrolled).

    TF 2.21's int8 calibrator crashes the whole process on such graphs (see
    ``unroll_recurrent``); a SavedModel cannot be rebuilt unrolled, so say so up front.
    """
    try:
        gdef = sig.graph.as_graph_def()
        ops = {n.op for n in gdef.node} | {n.op for f in gdef.library.function for n in f.node_def}
    except Exception:
        return None
    loops = sorted(ops & {"While", "StatelessWhile"})
    if not loops:
        return None
    return (f"SavedModel {name} contains a {loops[0]} loop (a recurrent layer such as LSTM/GRU that is not "
            "unrolled): TensorFlow's int8 calibrator crashes on it")
