"""Rebuild a Keras 3 model as an equivalent tf_keras model, so tfmot can train it.

tensorflow-model-optimization only wraps tf_keras layers, and tf_keras cannot read Keras 3
files (``batch_shape``), so QAT from a Keras 3 model needs a translation: each layer is
recreated from its config (keys translated, Keras 3 policy/serialisation objects
unwrapped), the graph is rewired from the serialised ``inbound_nodes`` and the weights are
copied. Translation is only trusted after a numeric check: the rebuilt model must give
the same float outputs (max abs diff < 1e-5) on real inputs, otherwise training would
start from a different model than the one the user gave us.
"""

from __future__ import annotations

import inspect
from typing import Any, Sequence

import numpy as np

from edgeq.console import quiet
from edgeq.errors import ModelError, UserError

#: Layers rebuilt and checked in the tests; other ``keras.layers`` classes that exist in
#: tf_keras are attempted too, the numeric check guarding them.
KNOWN_LAYERS = (
    "InputLayer", "Conv1D", "Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Dense", "Flatten", "Reshape",
    "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D", "GlobalMaxPooling2D", "BatchNormalization",
    "ReLU", "Activation", "Softmax", "LeakyReLU", "Dropout", "Add", "Concatenate", "ZeroPadding2D",
    "MaxPooling1D", "AveragePooling1D", "GlobalAveragePooling1D", "GlobalMaxPooling1D", "LSTM", "GRU",
)
#: Keras 3 argument names that tf_keras spells differently, per layer class.
_RENAMED = {"LeakyReLU": {"negative_slope": "alpha"}}
#: Arguments every tf_keras layer accepts through ``**kwargs``.
_BASE_KWARGS = ("name", "trainable", "dtype", "activity_regularizer")
#: Only used to create fresh weights, which are overwritten by the copied ones.
_INITIALIZER_SUFFIX = "_initializer"
#: Max abs difference between the original and the rebuilt model's float outputs.
TOLERANCE = 1e-5


def _tf_keras() -> Any:
    """tf_keras, imported quietly (it shares TensorFlow's ~3.5 s import)."""
    from edgeq.model.loading import tf_module

    tf_module()
    with quiet():
        import tf_keras
    return tf_keras


def is_keras3(model: Any) -> bool:
    """True for Keras 3 model objects (as loaded by ``keras.models.load_model``)."""
    return type(model).__module__.startswith("keras.")


def to_tf_keras(model: Any, *, check_inputs: Sequence[np.ndarray] | None = None) -> Any:
    """A tf_keras model equal to the Keras 3 ``model``, verified on ``check_inputs``.

    ``check_inputs`` are float arrays in model input order (any batch size); without them
    64 uniform random samples are used, which still catches a wrong translation.
    """
    tk = _tf_keras()
    cfg = model.get_config()
    if type(model).__name__ == "Sequential":
        rebuilt = _rebuild_sequential(model, tk)
    elif "layers" in cfg and "input_layers" in cfg:
        rebuilt = _rebuild_functional(model, cfg, tk)
    else:
        raise UserError(
            f"model '{model.name}' is a subclassed Keras model: its graph cannot be rebuilt for QAT",
            hint="build the model with the functional API or keras.Sequential, or train it with QAT in tf_keras",
        )
    _reserve_names(tk, [layer.name for layer in rebuilt.layers])
    xs = list(check_inputs) if check_inputs is not None else _random_inputs(model)
    verify_equivalent(model, rebuilt, xs)
    return rebuilt


def _reserve_names(tk: Any, names: Sequence[str]) -> None:
    """Advance tf_keras's auto-name counters past the names we set explicitly.

    Explicit names do not advance them, so a layer tfmot creates later (its transforms
    add unnamed layers) would be auto-named e.g. ``conv2d`` again, and tfmot, which
    restores weights by layer name, then assigns one layer's weights to another
    (measured: "Cannot assign value to variable 'conv2d/kernel:0': Shape mismatch").
    """
    import re

    from tf_keras.src import backend as tk_backend  # the public module does not export the uid map

    uids = tk_backend.get_default_graph_uid_map()
    for name in names:
        m = re.match(r"^(.*)_(\d+)$", name)
        base, number = (m.group(1), int(m.group(2))) if m else (name, 0)
        key = ("", base)
        uids[key] = max(uids[key], number + 1)


def _random_inputs(model: Any, n: int = 64) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.random((n, *tuple(t.shape)[1:]), dtype=np.float32) for t in model.inputs]


# ----------------------------------------------------------------------------- layers
def translate_layer(layer_cfg: dict[str, Any], tk: Any) -> Any:
    """A fresh tf_keras layer from a serialised Keras 3 layer; ``UserError`` names what does not map."""
    cls_name = layer_cfg["class_name"]
    name = layer_cfg.get("config", {}).get("name", layer_cfg.get("name", "?"))
    module = layer_cfg.get("module") or ""
    if cls_name in ("Functional", "Sequential", "Model"):
        raise UserError(
            f"layer '{name}' is a nested model ({cls_name}): QAT needs a flat graph",
            hint="rebuild the model with the nested model's layers inlined (tfmot cannot wrap nested models)",
        )
    cls = getattr(tk.layers, cls_name, None)
    if module != "keras.layers" or cls is None:
        kind = f"{module}.{cls_name}" if module else cls_name
        raise UserError(
            f"layer '{name}' ({kind}) has no tf_keras equivalent, so the model cannot be rebuilt for QAT",
            hint="replace it with built-in Keras layers (keras.ops calls and custom layers cannot be mapped); "
            "supported: " + ", ".join(KNOWN_LAYERS),
        )
    kwargs = _translate_config(cls_name, name, dict(layer_cfg["config"]), cls, tk)
    try:
        return cls(**kwargs)
    except Exception as exc:
        raise UserError(f"layer '{name}' ({cls_name}) cannot be recreated in tf_keras: {exc}") from None


def _translate_config(cls_name: str, name: str, cfg: dict[str, Any], cls: Any, tk: Any) -> dict[str, Any]:
    renamed = _RENAMED.get(cls_name, {})
    accepted = set(inspect.signature(cls.__init__).parameters) | set(_BASE_KWARGS)
    k3_defaults = _keras3_defaults(cls_name)
    out: dict[str, Any] = {}
    for key, value in cfg.items():
        key = renamed.get(key, key)
        if key.endswith(_INITIALIZER_SUFFIX):
            continue  # weights are copied afterwards; fresh values never matter
        if key not in accepted:
            if value is None or (key in k3_defaults and _same(value, k3_defaults[key])):
                continue  # a Keras 3 feature left at its default: no behaviour to carry over
            raise UserError(
                f"layer '{name}' ({cls_name}) sets '{key}={value!r}', which tf_keras has no equivalent for",
                hint="set it back to its default in the Keras 3 model, or train QAT in tf_keras directly",
            )
        out[key] = _translate_value(key, value, name, cls_name, tk)
    return out


def _keras3_defaults(cls_name: str) -> dict[str, Any]:
    import keras

    cls = getattr(keras.layers, cls_name, None)
    if cls is None:
        return {}
    return {
        p.name: p.default
        for p in inspect.signature(cls.__init__).parameters.values()
        if p.default is not inspect.Parameter.empty
    }


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:
        return False


def _translate_value(key: str, value: Any, name: str, cls_name: str, tk: Any) -> Any:
    """Unwrap Keras 3 serialisation objects (dtype policies, regularizers, constraints)."""
    if key == "dtype" and isinstance(value, dict):
        return value.get("config", {}).get("name", "float32")
    if not (isinstance(value, dict) and "class_name" in value):
        return value
    getter = {
        "regularizer": tk.regularizers.get,
        "constraint": tk.constraints.get,
        "activation": tk.activations.get,
    }.get(key.rsplit("_", 1)[-1])
    if getter is None:
        raise UserError(f"layer '{name}' ({cls_name}): cannot translate '{key}' ({value.get('class_name')})")
    try:
        return getter({"class_name": value["class_name"], "config": value.get("config", {})})
    except Exception as exc:
        raise UserError(
            f"layer '{name}' ({cls_name}): '{key}' is {value.get('class_name')}, which tf_keras cannot recreate ({exc})",
            hint="use a built-in regularizer/constraint/activation",
        ) from None


def copy_weights(src: Any, dst: Any) -> None:
    """Copy ``src``'s weights into the built tf_keras layer ``dst``, checking every shape."""
    weights = src.get_weights()
    want = [tuple(w.shape) for w in dst.weights]
    got = [tuple(w.shape) for w in weights]
    if want != got:
        raise UserError(
            f"layer '{src.name}' ({type(src).__name__}) stores weights {got} but tf_keras expects {want}",
            hint="this layer's weight layout differs between Keras 3 and tf_keras; it cannot be rebuilt for QAT",
        )
    dst.set_weights(weights)


# ----------------------------------------------------------------------------- graphs
def _rebuild_sequential(model: Any, tk: Any) -> Any:
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        inputs = None
    if not inputs:
        raise UserError(f"Sequential model '{model.name}' has no defined input shape", hint="add keras.Input(shape) first")
    shape = tuple(inputs[0].shape)
    with quiet():
        x = inp = tk.Input(batch_shape=shape, dtype=str(inputs[0].dtype), name=_input_name(inputs[0], "input"))
        for layer in model.layers:
            new = translate_layer(_serialise(layer), tk)
            x = new(x)
            copy_weights(layer, new)
        return tk.Model(inp, x, name=model.name)


def _input_name(t: Any, default: str) -> str:
    hist = getattr(t, "_keras_history", None)
    return getattr(hist[0], "name", default) if hist else default


def _serialise(layer: Any) -> dict[str, Any]:
    import keras

    return keras.saving.serialize_keras_object(layer)


def _rebuild_functional(model: Any, cfg: dict[str, Any], tk: Any) -> Any:
    """Rewire the graph from the serialised nodes: outputs keyed by (layer, node, tensor)."""
    by_name = {layer.name: layer for layer in model.layers}
    produced: dict[tuple[str, int], list[Any]] = {}
    pending: list[tuple[dict[str, Any], Any, int, dict[str, Any]]] = []
    with quiet():
        for lc in cfg["layers"]:
            name = lc.get("name") or lc["config"]["name"]
            if lc["class_name"] == "InputLayer":
                c = lc["config"]
                shape = c.get("batch_shape") or c.get("batch_input_shape")
                dtype = _translate_value("dtype", c.get("dtype", "float32"), name, "InputLayer", tk)
                produced[(name, 0)] = [tk.Input(batch_shape=tuple(shape), dtype=dtype, name=name)]
                continue
            new = translate_layer(lc, tk)
            for i, node in enumerate(lc.get("inbound_nodes", [])):
                pending.append((lc, new, i, node))
        built: set[str] = set()
        while pending:
            progress = False
            for item in list(pending):
                lc, new, i, node = item
                try:
                    args = _resolve(node.get("args", []), produced)
                    kwargs = _resolve(node.get("kwargs", {}), produced)
                except KeyError:
                    continue  # an input of this node is not built yet
                out = new(*args, **kwargs)
                produced[(new.name, i)] = list(out) if isinstance(out, (list, tuple)) else [out]
                if new.name not in built:
                    copy_weights(by_name[new.name], new)
                    built.add(new.name)
                pending.remove(item)
                progress = True
            if not progress:
                names = ", ".join(sorted({p[1].name for p in pending}))
                raise UserError(f"cannot rewire the model graph at layer(s) {names}", hint="the model config is inconsistent")
        ins = [_lookup(h, produced) for h in _histories(cfg["input_layers"])]
        outs = [_lookup(h, produced) for h in _histories(cfg["output_layers"])]
        single_out = _is_single(cfg["output_layers"])
        return tk.Model(ins if len(ins) > 1 else ins[0], outs[0] if single_out else outs, name=model.name)


def _is_single(spec: list[Any]) -> bool:
    return bool(spec) and isinstance(spec[0], str)


def _histories(spec: list[Any]) -> list[tuple[str, int, int]]:
    """``['x', 0, 0]`` (one tensor) or ``[['a', 0, 0], ['b', 0, 0]]``."""
    if _is_single(spec):
        return [(spec[0], int(spec[1]), int(spec[2]))]
    return [(s[0], int(s[1]), int(s[2])) for s in spec]


def _lookup(hist: tuple[str, int, int], produced: dict[tuple[str, int], list[Any]]) -> Any:
    name, node, index = hist
    return produced[(name, node)][index]


def _resolve(value: Any, produced: dict[tuple[str, int], list[Any]]) -> Any:
    """Replace serialised ``__keras_tensor__`` references by the rebuilt tf_keras tensors."""
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            name, node, index = value["config"]["keras_history"]
            return produced[(name, int(node))][int(index)]
        return {k: _resolve(v, produced) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_resolve(v, produced) for v in value)
    return value


# ----------------------------------------------------------------------------- checks
def max_output_diff(original: Any, rebuilt: Any, xs: Sequence[np.ndarray]) -> float:
    """Largest |original - rebuilt| over all outputs, in inference mode."""
    a = _outputs(original, xs)
    b = _outputs(rebuilt, xs)
    return max(float(np.max(np.abs(p - q))) if p.size else 0.0 for p, q in zip(a, b))


def _outputs(model: Any, xs: Sequence[np.ndarray]) -> list[np.ndarray]:
    with quiet():
        y = model(list(xs) if len(xs) > 1 else xs[0], training=False)
    ys = y if isinstance(y, (list, tuple)) else [y]
    return [np.asarray(v, dtype=np.float64) for v in ys]


def verify_equivalent(original: Any, rebuilt: Any, xs: Sequence[np.ndarray], *, tolerance: float = TOLERANCE) -> float:
    """Refuse a rebuilt model whose float outputs differ from the original's; name the first differing layer."""
    diff = max_output_diff(original, rebuilt, xs)
    if diff < tolerance:
        return diff
    where = _first_divergent_layer(original, rebuilt, xs, tolerance)
    raise ModelError(
        f"the tf_keras rebuild of '{original.name}' differs from the original by {diff:.3g} (allowed < {tolerance:g})"
        + (f"; first differing layer: '{where}'" if where else ""),
        hint="that layer's configuration does not translate exactly; QAT would start from a different model",
    )


def _first_divergent_layer(original: Any, rebuilt: Any, xs: Sequence[np.ndarray], tolerance: float) -> str | None:
    """Best effort: compare per-layer outputs of layers called once, in graph order."""
    import keras

    tk = _tf_keras()
    feed = list(xs) if len(xs) > 1 else xs[0]
    for layer in original.layers:
        try:
            other = rebuilt.get_layer(layer.name)
            with quiet():
                a = keras.Model(original.inputs, layer.output)(feed, training=False)
                b = tk.Model(rebuilt.inputs, other.output)(feed, training=False)
            if float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)))) >= tolerance:
                return str(layer.name)
        except Exception:
            continue
    return None
