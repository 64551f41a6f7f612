"""Per-layer quantization error: real layer names, flagged layers, Markdown and the optional chart."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeq.model.calibration import Samples
from edgeq.errors import UserError
from tests.conftest import require_module

EXAMPLE = Path(__file__).resolve().parent.parent / "edgeq" / "data" / "example"


@pytest.fixture(scope="module")
def digits() -> dict[str, Any]:
    """The bundled example: its layers conv2d and conv2d_1 exercise the name-scope mapping."""
    from edgeq.model.loading import load_model

    model = load_model(EXAMPLE / "digits.keras")
    calib = Samples((np.load(EXAMPLE / "digits_calibration.npy").astype(np.float32),), None, "calib")
    with np.load(EXAMPLE / "digits_eval.npz") as z:
        ev = Samples((z["x"][:150].astype(np.float32),), z["y"][:150], "eval")
    return {"model": model, "calib": calib, "eval": ev}


@pytest.fixture(scope="module")
def report(digits: dict[str, Any]) -> Any:
    from edgeq.quantization.layer_report import layer_report
    from edgeq.quantization.convert import QuantSettings

    return layer_report(digits["model"], digits["calib"], digits["eval"], QuantSettings("int8"))


def test_rows_name_the_models_real_layers(report: Any, digits: dict[str, Any]) -> None:
    real = [layer.name for layer in digits["model"].keras_model.layers]
    names = [r.layer for r in report.rows]
    assert set(names) <= set(real), names
    assert {"conv2d", "conv2d_1", "dense", "digit"} <= set(names)
    ops = {r.layer: r.op for r in report.rows if r.op != "SOFTMAX"}
    assert ops["conv2d"] == ops["conv2d_1"] == "CONV_2D" and ops["dense"] == "FULLY_CONNECTED"
    assert names.index("conv2d") < names.index("conv2d_1") < names.index("dense")  # graph order
    assert report.samples == 150
    for r in report.rows:
        assert np.isfinite(r.rmse_scale) and r.scale > 0


def test_report_renders(report: Any, capsys: pytest.CaptureFixture[str]) -> None:
    doc = report.to_dict()
    assert {"layer", "op", "rmse_scale", "mean_error", "flagged", "hint"} <= set(doc["layers"][0])
    md = report.to_markdown()
    assert md.startswith("## Per-layer quantization error") and "| conv2d_1 | CONV_2D |" in md
    report.render_table()
    out = capsys.readouterr().out
    assert "conv2d_1" in out and "RMSE/scale" in out


def test_badly_calibrated_layers_are_flagged(digits: dict[str, Any]) -> None:
    """Calibrating on inputs 20x too small clips real inputs: the first layers must light up."""
    from edgeq.quantization.layer_report import layer_report
    from edgeq.quantization.convert import QuantSettings

    tiny = Samples((digits["calib"].xs[0] * 0.05,), None, "tiny")
    rep = layer_report(digits["model"], tiny, digits["eval"].take(slice(0, 40)), QuantSettings("int8"))
    flagged = [r for r in rep.rows if r.flagged]
    assert flagged and rep.worst and rep.worst[0] in {r.layer for r in flagged}
    assert all(r.rmse_scale > rep.threshold and r.hint for r in flagged)
    assert "**" in rep.to_markdown()


def test_tensor_names_map_to_layers() -> None:
    from edgeq.quantization.layer_report import map_tensor_to_layers

    layers = ["img", "conv2d", "batch_normalization", "re_lu", "add", "conv2d_1", "dense"]
    fused = "functional_1/re_lu_1/Relu6;functional_1/batch_normalization_1/batchnorm/add_1;functional_1/conv2d_1/convolution"
    assert map_tensor_to_layers(fused, layers) == ("conv2d", "batch_normalization", "re_lu")  # not 'add'
    assert map_tensor_to_layers("functional_1/conv2d_1_2/Relu", layers) == ("conv2d_1",)
    assert map_tensor_to_layers("functional_1/add_1/Add", layers) == ("add",)
    assert map_tensor_to_layers("StatefulPartitionedCall_1:0", layers) == ()


def test_only_int8_and_float_models(digits: dict[str, Any], example_tflite: Path) -> None:
    from edgeq.quantization.layer_report import layer_report
    from edgeq.model.loading import load_model
    from edgeq.quantization.convert import QuantSettings

    with pytest.raises(UserError, match="int8"):
        layer_report(digits["model"], digits["calib"], digits["eval"], QuantSettings("int16x8"))
    with pytest.raises(UserError, match="float model"):
        layer_report(load_model(example_tflite), digits["calib"], digits["eval"], QuantSettings("int8"))


def test_chart_png(report: Any, tmp_path: Path) -> None:
    require_module("matplotlib")
    from edgeq.quantization.layer_report import attach_chart

    with_chart = attach_chart(report, tmp_path / "layers.png")
    assert with_chart.chart == str(tmp_path / "layers.png")
    assert (tmp_path / "layers.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "![RMSE/scale per layer](layers.png)" in with_chart.to_markdown()


def test_chart_skipped_silently_without_matplotlib(report: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeq.quantization.layer_report import attach_chart

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib → ImportError
    assert attach_chart(report, tmp_path / "layers.png") is report
    assert not (tmp_path / "layers.png").exists()


def test_quantize_layer_report_cli(models: dict[str, Path], tmp_path: Path) -> None:
    from tests.conftest import run_edgeq

    r = run_edgeq("quantize", models["tf_keras"], "-o", tmp_path / "m.tflite", "--calibration", models["calib"],
                  "--eval-data", models["eval"], "--layer-report")
    assert r.code == 0, r.stderr
    assert "per-layer int8 error" in r.stdout and "conv2d" in r.stdout and "RMSE/scale" in r.stdout


@pytest.mark.parametrize("batch", ["fixed", "dynamic"])
def test_layer_report_on_savedmodels_of_any_batch(batch: str, digits: dict[str, Any], report: Any, tmp_path: Path) -> None:
    """A SavedModel exported with a fixed batch of 1 analyses like the dynamic one (and the .keras file)."""
    import keras
    import tensorflow as tf

    from edgeq.quantization.layer_report import layer_report
    from edgeq.model.loading import load_model
    from edgeq.quantization.convert import QuantSettings

    m = keras.models.load_model(EXAMPLE / "digits.keras", compile=False)
    sig = [tf.TensorSpec([1, *m.inputs[0].shape[1:]], tf.float32)] if batch == "fixed" else None
    m.export(str(tmp_path / "sm"), input_signature=sig, verbose=False)
    model = load_model(tmp_path / "sm")
    assert model.fixed_batch == (1 if batch == "fixed" else None)
    small = Samples(digits["eval"].xs, digits["eval"].y, "eval").take(slice(0, 40))
    got = layer_report(model, digits["calib"], small, QuantSettings("int8"))
    assert got.samples == 40 and len(got.rows) == len(report.rows)
    assert [r.op for r in got.rows] == [r.op for r in report.rows]
    assert all(np.isfinite(r.rmse_scale) for r in got.rows)
