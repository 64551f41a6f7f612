"""QAT: the Keras 3 → tf_keras bridge, fine-tuning from Keras 3 and tf_keras, full-integer results.

Each model is fine-tuned once per module (fixtures), then checked from several angles, so
the costly part (tfmot, training, conversion) runs a handful of times in total.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeq.model.calibration import Samples, load_samples
from edgeq.errors import ModelError, UserError

EXAMPLE = Path(__file__).resolve().parent.parent / "edgeq" / "data" / "example"


@pytest.fixture(scope="module")
def train() -> Samples:
    """The labelled samples the test models were trained on (tests/models.py: eval[:400])."""
    with np.load(EXAMPLE / "digits_eval.npz") as z:
        return Samples((z["x"][:400].astype(np.float32),), z["y"][:400].astype(np.int64), "train")


@pytest.fixture(scope="module")
def export_dispatch() -> Any:
    """Route tf_keras (QAT) models to ``export_qat_for_conversion`` until ``loading`` does it itself.

    ``export.export_for_conversion`` calls ``model.export(..., input_signature=...)``, which
    only Keras 3 has; the integration adds the same dispatch there, after which this
    fixture patches nothing.
    """
    import edgeq.quantization.convert as quantize
    from edgeq.model import export
    from edgeq.quantization import qat

    original = quantize.export_for_conversion
    if "export_qat_for_conversion" in (export.export_for_conversion.__code__.co_names or ()):
        yield
        return

    def dispatch(model: Any, workdir: Path) -> Path:
        if qat.is_tf_keras_model(model.keras_model):
            return qat.export_qat_for_conversion(model, workdir)
        return original(model, workdir)

    quantize.export_for_conversion = dispatch
    yield
    quantize.export_for_conversion = original


def _run_tflite(data: bytes, model: Any, xs: list[np.ndarray]) -> list[np.ndarray]:
    from edgeq.model.tflite_info import parse
    from edgeq.check.validation import ReferenceRunner

    runner = ReferenceRunner(data, parse(data), [s.name for s in model.inputs], [s.name for s in model.outputs])
    return runner.from_subgraph(runner.run_raw(runner.to_subgraph(xs)))


@pytest.fixture(scope="module", params=["keras", "tf_keras"])
def qat_result(request: pytest.FixtureRequest, models: dict[str, Path], train: Samples, export_dispatch: Any) -> dict[str, Any]:
    """Fine-tune (2 epochs) and convert once per model format; PTQ in the same process afterwards."""
    from edgeq.model.loading import load_model
    from edgeq.quantization.qat import qat_finetune
    from edgeq.quantization.convert import QuantSettings, convert

    before = os.environ.get("TF_USE_LEGACY_KERAS")
    model = load_model(models[request.param])
    calib = load_samples(models["calib"], model.inputs)
    held_out = load_samples(models["eval"], model.inputs, role="evaluation")
    qmodel = qat_finetune(model, train, epochs=2, batch_size=32, learning_rate=1e-4)
    qat_bytes = convert(qmodel, QuantSettings("int8"), calib)
    ptq_bytes = convert(model, QuantSettings("int8"), calib)  # Keras 3 export still works after tfmot
    return {
        "format": request.param, "model": model, "qmodel": qmodel, "held_out": held_out,
        "qat": qat_bytes, "ptq": ptq_bytes, "env_before": before, "env_after": os.environ.get("TF_USE_LEGACY_KERAS"),
    }


def test_qat_is_full_integer_with_uint8_io(qat_result: dict[str, Any]) -> None:
    from edgeq.model.tflite_info import parse

    mi = parse(qat_result["qat"])
    assert mi.fully_integer, mi.float_tensors
    assert mi.inputs[0].dtype == "UINT8" and mi.outputs[0].dtype == "UINT8"
    assert not set(mi.op_names) & {"SHAPE", "STRIDED_SLICE", "PACK"}  # batch 1 export


def test_qat_accuracy_within_one_point_of_float(qat_result: dict[str, Any]) -> None:
    model, ev = qat_result["model"], qat_result["held_out"]
    float_acc = float(np.mean(np.argmax(model.predict(list(ev.xs))[0], axis=1) == ev.y))
    qat_acc = float(np.mean(np.argmax(_run_tflite(qat_result["qat"], model, list(ev.xs))[0], axis=1) == ev.y))
    ptq_acc = float(np.mean(np.argmax(_run_tflite(qat_result["ptq"], model, list(ev.xs))[0], axis=1) == ev.y))
    print(f"{qat_result['format']}: float {float_acc:.4f}  PTQ {ptq_acc:.4f}  QAT {qat_acc:.4f}")
    assert float_acc > 0.8
    assert qat_acc >= float_acc - 0.01


def test_qat_keeps_model_identity(qat_result: dict[str, Any]) -> None:
    model, qmodel = qat_result["model"], qat_result["qmodel"]
    assert (qmodel.path, qmodel.format, qmodel.sha256) == (model.path, model.format, model.sha256)
    assert qmodel.inputs == model.inputs and qmodel.outputs == model.outputs
    assert type(qmodel.keras_model).__module__.startswith("tf_keras.")


def test_tfmot_does_not_switch_the_process_to_legacy_keras(qat_result: dict[str, Any]) -> None:
    import tensorflow as tf

    assert qat_result["env_after"] == qat_result["env_before"]
    assert tf.keras.__name__.startswith("keras.")  # tf.keras still means Keras 3 in this process


# ----------------------------------------------------------------------------- the bridge
def _rich_keras3_model() -> Any:
    """Every layer kind the bridge promises, in one functional graph with a shared layer."""
    import keras

    L = keras.layers
    keras.utils.set_random_seed(3)
    inp = keras.Input((8, 8, 1), name="img")
    x = L.ZeroPadding2D(1)(inp)
    x = L.Conv2D(8, 3, use_bias=False, kernel_regularizer=keras.regularizers.L2(1e-4))(x)
    x = L.BatchNormalization()(x)
    x = L.ReLU(max_value=6.0)(x)
    y = L.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
    y = L.BatchNormalization()(y)
    y = L.Activation("relu")(y)
    x = L.Add()([x, y])
    z = L.SeparableConv2D(8, 3, padding="same", activation="relu")(x)
    x = L.Concatenate()([x, z])
    x = L.MaxPooling2D()(x)
    x = L.AveragePooling2D(2, padding="same")(x)
    g = L.GlobalAveragePooling2D()(x)
    f = L.Reshape((-1,))(L.Flatten()(x))
    h = L.Dropout(0.2)(L.Concatenate()([g, f]))
    shared = L.Dense(12, activation="relu", name="shared")
    out = L.Dense(10, activation="softmax", name="head")(L.Add()([shared(h), shared(h)]))
    m = keras.Model(inp, out, name="rich")
    rng = np.random.default_rng(0)
    for layer in m.layers:  # non-trivial BN statistics, so folding mistakes would show
        if isinstance(layer, L.BatchNormalization):
            g_, b_, mu, var = layer.get_weights()
            layer.set_weights([g_ * 1.5, b_ + 0.1, rng.normal(size=mu.shape).astype("float32") * 0.2,
                               (rng.random(var.shape) + 0.5).astype("float32")])
    return m


def test_rebuilt_tf_keras_matches_keras3(models: dict[str, Path], train: Samples) -> None:
    import keras

    from edgeq.model.keras_bridge import max_output_diff, to_tf_keras

    xs = [train.xs[0][:64]]
    for original in (keras.models.load_model(models["keras"], compile=False), _rich_keras3_model()):
        rebuilt = to_tf_keras(original, check_inputs=xs)
        assert type(rebuilt).__module__.startswith("tf_keras.")
        assert {la.name for la in rebuilt.layers} == {la.name for la in original.layers}
        assert max_output_diff(original, rebuilt, xs) < 1e-5
    assert rebuilt.losses, "the L2 kernel regularizer must carry over (it shapes the fine-tuning loss)"


def test_rebuild_sequential() -> None:
    import keras

    from edgeq.model.keras_bridge import max_output_diff, to_tf_keras

    keras.utils.set_random_seed(1)
    seq = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5), keras.layers.LeakyReLU(negative_slope=0.3),
                            keras.layers.Dense(2)], name="seq")
    rebuilt = to_tf_keras(seq)  # LeakyReLU(negative_slope) → tf_keras LeakyReLU(alpha): checked numerically
    assert [la.name for la in rebuilt.layers][1:] == [la.name for la in seq.layers]
    assert max_output_diff(seq, rebuilt, [np.linspace(-2, 2, 24, dtype=np.float32).reshape(4, 6)]) < 1e-5


@pytest.mark.parametrize("kind", ["custom", "ops"])
def test_unmappable_layer_is_named(kind: str) -> None:
    import keras

    from edgeq.model.keras_bridge import to_tf_keras

    class Doubler(keras.layers.Layer):
        def call(self, x: Any) -> Any:
            return x * 2.0

    inp = keras.Input((4,))
    h = keras.layers.Dense(4)(inp)
    h = Doubler(name="my_doubler")(h) if kind == "custom" else keras.ops.add(h, inp)
    m = keras.Model(inp, keras.layers.Dense(2)(h))
    with pytest.raises(UserError) as exc:
        to_tf_keras(m)
    name = "my_doubler" if kind == "custom" else next(op.name for op in m.operations if type(op).__name__ == "Add")
    assert f"'{name}'" in exc.value.message


def test_divergent_rebuild_is_refused() -> None:
    import keras

    from edgeq.model import keras_bridge

    inp = keras.Input((4,))
    m = keras.Model(inp, keras.layers.Dense(3, name="fc")(inp))
    rebuilt = keras_bridge.to_tf_keras(m)
    rebuilt.get_layer("fc").set_weights([w + 1.0 for w in rebuilt.get_layer("fc").get_weights()])
    with pytest.raises(ModelError, match="'fc'"):
        keras_bridge.verify_equivalent(m, rebuilt, [np.ones((2, 4), np.float32)])


def test_qat_on_folded_and_separable_layers(tmp_path: Path, train: Samples, export_dispatch: Any) -> None:
    """Conv+BN+ReLU6, depthwise, separable, Add: tfmot's transforms add auto-named layers,
    which must not collide with the rebuilt model's explicit names."""
    from edgeq.model.loading import load_model
    from edgeq.quantization.qat import qat_finetune
    from edgeq.quantization.convert import QuantSettings, convert
    from edgeq.model.tflite_info import parse

    m = _rich_keras3_model()
    m.save(tmp_path / "rich.keras")
    model = load_model(tmp_path / "rich.keras")
    small = train.take(slice(0, 64))
    qmodel = qat_finetune(model, small, epochs=1, batch_size=32)
    mi = parse(convert(qmodel, QuantSettings("int8"), small))
    assert mi.fully_integer and mi.inputs[0].dtype == "UINT8"
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD"} <= set(mi.op_names)


# ----------------------------------------------------------------------------- loss and refusals
def test_loss_choice(models: dict[str, Path], train: Samples) -> None:
    from edgeq.model.loading import load_model
    from edgeq.quantization.qat import resolve_loss, saved_loss

    keras3 = load_model(models["keras"])
    assert saved_loss(models["keras"]) == "sparse_categorical_crossentropy"  # compile_config in .keras
    assert saved_loss(models["tf_keras"]) is not None  # training_config in .h5
    assert "mean_squared_error" in str(resolve_loss(keras3, train, "mse").__name__)
    with pytest.raises(UserError, match="--loss"):
        resolve_loss(keras3, train, "no_such_loss")


def test_loss_from_data_detects_probabilities(tmp_path: Path, train: Samples) -> None:
    import keras

    from edgeq.model.loading import load_model
    from edgeq.quantization.qat import resolve_loss

    inp = keras.Input((8, 8, 1))
    flat = keras.layers.Flatten()(inp)
    for act, logits in (("softmax", False), (None, True)):
        path = tmp_path / f"{act}.keras"
        keras.Model(inp, keras.layers.Dense(10, activation=act)(flat)).save(path)  # not compiled
        loss = resolve_loss(load_model(path), train, None)
        assert type(loss).__name__ == "SparseCategoricalCrossentropy"
        assert loss.get_config()["from_logits"] is logits


def test_qat_refusals(models: dict[str, Path], train: Samples) -> None:
    from edgeq.model.loading import load_model
    from edgeq.quantization.qat import qat_finetune

    with pytest.raises(UserError, match="Keras model"):
        qat_finetune(load_model(models["saved_model"]), train)
    keras3 = load_model(models["keras"])
    with pytest.raises(UserError, match="labels"):
        qat_finetune(keras3, Samples(train.xs, None, "x-only.npy"))
    with pytest.raises(UserError, match="--epochs"):
        qat_finetune(keras3, train, epochs=0)


# ----------------------------------------------------------------------------- the CLI
def test_build_qat_from_keras3_file(models: dict[str, Path], train: Samples, tmp_path: Path) -> None:
    """The acceptance command: build --qat from a Keras 3 file, full-integer uint8 I/O, within 1 point."""
    from tests.conftest import run_edgeq

    np.savez(tmp_path / "train.npz", x=train.xs[0], y=train.y)
    out = tmp_path / "out"
    r = run_edgeq("build", models["keras"], "--target", "cortex-m", "--qat", "--train-data", tmp_path / "train.npz",
                  "--epochs", "2", "--calibration", models["calib"], "--eval-data", models["eval"], "--out", out,
                  "--layer-report", "--json")
    assert r.code == 0, r.stderr
    assert "QAT epoch 2/2" in r.stderr and "loss" in r.stderr  # progress on stderr, JSON alone on stdout
    doc = r.json
    q, v, qa = doc["quantization"], doc["validation"], doc["qat"]
    assert (q["input_dtype"], q["output_dtype"], q["fully_integer"]) == ("uint8", "uint8", True)
    assert v["quantized_accuracy"] >= v["float_accuracy"] - 0.01
    assert qa["qat_accuracy"] == v["quantized_accuracy"] and qa["float_accuracy"] == v["float_accuracy"]
    assert qa["ptq_accuracy"] is not None and qa["rebuilt_from_keras3"] is True
    assert qa["loss_source"] == "compiled model" and len(qa["epoch_losses"]) == 2
    # tfmot quantizes Dense per tensor; on outputs a hair from a rounding tie (x.499) TFLM's
    # FULLY_CONNECTED then differs from LiteRT's reference kernel by 1 LSB (measured: 2 of 197).
    assert v["tflm_match_rate"] >= 0.95 and doc["micro"]["supported"] is True
    md = (out / "report.md").read_text()
    assert "float / PTQ / QAT" in md and "## Per-layer quantization error" in md
    import keras

    real = [la.name for la in keras.models.load_model(models["keras"], compile=False).layers]  # e.g. conv2d_3
    conv, flat, dense = (next(n for n in real if n.startswith(p)) for p in ("conv2d", "flatten", "dense"))
    assert f"| {conv} | CONV_2D |" in md  # the Keras layer's real name, not a converter tensor name
    assert {conv, flat, dense} <= {row["layer"] for row in doc["layer_report"]["layers"]}


def test_qat_options_are_checked(models: dict[str, Path], tmp_path: Path) -> None:
    from tests.conftest import assert_clean_error, run_edgeq

    r = run_edgeq("quantize", models["keras"], "-o", tmp_path / "m.tflite", "--qat", "--calibration", models["calib"])
    assert_clean_error(r, "--train-data")
    r = run_edgeq("quantize", models["keras"], "-o", tmp_path / "m.tflite", "--train-data", models["eval"],
                  "--calibration", models["calib"])
    assert_clean_error(r, "--qat")


# ----------------------------------------------------------------------------- labels and layers (no training)
def _fake_model(units: int, shape: tuple[int, ...] | None = None) -> Any:
    from edgeq.model.loading import IOSpec, LoadedModel

    out = IOSpec("output_0", shape or (1, units))
    return LoadedModel(Path("m.keras"), "keras", "0", (IOSpec("args_0", (1, 4)),), (out,))


@pytest.mark.parametrize(("loss", "given", "want_shape", "note"), [
    ("categorical_crossentropy", "int", (6, 3), "class indices → one-hot"),
    ("categorical_crossentropy", "onehot", (6, 3), "one-hot labels for"),
    ("sparse_categorical_crossentropy", "onehot", (6,), "one-hot labels → class indices"),
    ("sparse_categorical_crossentropy", "int", (6,), "class indices for"),
])
def test_labels_are_converted_to_what_the_loss_needs(loss: str, given: str, want_shape: tuple[int, ...], note: str) -> None:
    import tf_keras

    from edgeq.quantization.qat_loss import prepare_targets

    y = np.array([0, 1, 2, 2, 1, 0])
    labels = y if given == "int" else np.eye(3, dtype=np.float32)[y]
    train = Samples((np.zeros((6, 4), np.float32),), None, "t.npz", (labels,))
    arrays, notes = prepare_targets(_fake_model(3), train, [tf_keras.losses.get(loss)])
    assert arrays[0].shape == want_shape and note in notes[0]
    assert np.array_equal(arrays[0] if arrays[0].ndim == 1 else arrays[0].argmax(1), y)


def test_bad_labels_are_user_errors() -> None:
    import tf_keras

    from edgeq.quantization.qat_loss import prepare_targets

    x = (np.zeros((4, 4), np.float32),)
    cce, mse = tf_keras.losses.get("categorical_crossentropy"), tf_keras.losses.get("mse")
    with pytest.raises(UserError, match="label 7 is out of range for 3 classes"):
        prepare_targets(_fake_model(3), Samples(x, None, "", (np.array([0, 1, 7, 2]),)), [cce])
    with pytest.raises(UserError, match="do not fit the output shape"):
        prepare_targets(_fake_model(640), Samples(x, None, "", (np.zeros((4, 10), np.float32),)), [mse])
    with pytest.raises(UserError, match="2 outputs but the training data"):
        two = _fake_model(3)
        two.outputs = (*two.outputs, two.outputs[0])
        prepare_targets(two, Samples(x, None, "", (np.array([0, 1, 2, 2]),)), [cce, cce])
    arrays, notes = prepare_targets(_fake_model(8, (1, 8)), Samples(x, None, "", (np.ones((4, 8), np.float32),)), [mse])
    assert arrays[0].shape == (4, 8) and "array targets" in notes[0]


def test_annotation_plan_widens_tfmots_registry() -> None:
    """BN after conv folds (tfmot), after an activation/Dense is output-quantized, Conv1D gets weights, LSTM is refused."""
    import tf_keras

    from edgeq.quantization.qat import _tfmot
    from edgeq.quantization.qat_annotate import plan

    tfmot = _tfmot()
    L = tf_keras.layers
    inp = tf_keras.Input((16, 16, 1))
    a = L.BatchNormalization(name="bn_folded")(L.Conv2D(4, 3, name="conv_linear")(inp))
    b = L.BatchNormalization(name="bn_after_relu")(L.Conv2D(4, 3, activation="relu", name="conv_relu")(a))
    img = tf_keras.Model(inp, L.Dense(2, name="head")(L.Flatten()(b)))
    kinds = plan(img, tfmot)
    assert kinds["bn_folded"] == "default" and kinds["bn_after_relu"] == "output" and kinds["head"] == "default"
    seq = tf_keras.Input((16, 3))
    h = L.LSTM(4, name="lstm")(L.Conv1D(4, 3, name="conv1d")(seq))
    h = L.BatchNormalization(name="bn_after_dense")(L.Dense(4, name="dense")(h))
    kinds = plan(tf_keras.Model(seq, h), tfmot)
    assert (kinds["conv1d"], kinds["lstm"], kinds["bn_after_dense"]) == ("weighted", "refuse", "output")
