"""Every quantization mode converts, and its tensors have the dtypes the mode promises."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import assert_clean_error, run_edgeq

#: mode, --io → (input dtype, output dtype, activation dtypes, constant dtypes that must appear)
EXPECTED = {
    ("int8", None): ("UINT8", "UINT8", {"INT8", "UINT8"}, {"INT8", "INT32"}),
    ("int8", "int8"): ("INT8", "INT8", {"INT8"}, {"INT8", "INT32"}),
    ("int16x8", None): ("FLOAT32", "FLOAT32", {"INT16", "FLOAT32"}, {"INT8", "INT64"}),
    ("int16x8", "int16"): ("INT16", "INT16", {"INT16"}, {"INT8", "INT64"}),
    ("float16", None): ("FLOAT32", "FLOAT32", {"FLOAT32"}, {"FLOAT16"}),
    ("dynamic", None): ("FLOAT32", "FLOAT32", {"FLOAT32"}, {"INT8"}),
    ("float32", None): ("FLOAT32", "FLOAT32", {"FLOAT32"}, {"FLOAT32"}),
}


@pytest.fixture(scope="module")
def converted(models: dict[str, Path]) -> dict[tuple[str, str | None], Any]:
    """Each (mode, io) converted once from the Keras 3 test model."""
    from edgeq.model.calibration import load_samples
    from edgeq.model.loading import load_model
    from edgeq.quantization.convert import QuantSettings, convert
    from edgeq.model.tflite_info import parse

    model = load_model(models["keras"])
    calib = load_samples(models["calib"], model.inputs)
    return {key: parse(convert(model, QuantSettings(key[0], key[1]), calib)) for key in EXPECTED}


@pytest.mark.parametrize("key", list(EXPECTED), ids=[f"{m}-{io or 'default'}" for m, io in EXPECTED])
def test_mode_tensor_dtypes(converted: dict[tuple[str, str | None], Any], key: tuple[str, str | None]) -> None:
    mi = converted[key]
    in_dtype, out_dtype, activations, constants = EXPECTED[key]
    assert (mi.inputs[0].dtype, mi.outputs[0].dtype) == (in_dtype, out_dtype)
    acts = {t.dtype for t in mi.tensors if not t.is_constant}
    consts = {t.dtype for t in mi.tensors if t.is_constant}
    assert acts == activations, acts
    assert constants <= consts, consts
    mode = key[0]
    if mode in ("int8", "int16x8"):  # weights of conv/dense are int8, per channel
        weights = [t for t in mi.tensors if t.is_constant and t.dtype == "INT8"]
        assert weights and all(t.per_channel for t in weights)
    if mode == "float16":
        assert "DEQUANTIZE" in mi.op_names and "FLOAT32" not in consts - {"INT32"}
    if mode == "float32":
        assert consts <= {"FLOAT32", "INT32"}
    assert mi.fully_integer is (key in (("int8", None), ("int8", "int8"), ("int16x8", "int16")))


def test_modes_trade_size(converted: dict[tuple[str, str | None], Any]) -> None:
    size = {m: converted[(m, None)].size_bytes for m in ("int8", "float16", "float32")}
    assert size["int8"] < size["float16"] < size["float32"]


@pytest.mark.parametrize("mode", ["float16", "dynamic"])
def test_build_refuses_modes_tflm_cannot_run(models: dict[str, Path], tmp_path: Path, mode: str) -> None:
    r = run_edgeq("build", models["keras"], "--target", "cortex-m", "--mode", mode, "--calibration", models["calib"],
                  "--out", tmp_path / "out")
    assert_clean_error(r, f"--mode {mode}", "TensorFlow Lite Micro")
    assert not (tmp_path / "out").exists()


def test_quantize_allows_float16_for_linux(models: dict[str, Path], tmp_path: Path) -> None:
    """float16/dynamic are for edge Linux: `quantize` writes them and reports TFLM as unsupported."""
    out = tmp_path / "m.tflite"
    r = run_edgeq("quantize", models["keras"], "-o", out, "--mode", "float16", "--eval-data", models["eval"], "--json")
    assert r.code == 0, r.stderr
    doc = r.json
    assert doc["quantization"]["mode"] == "float16" and doc["quantization"]["input_dtype"] == "float32"
    assert doc["micro"]["supported"] is False
    assert doc["validation"]["quantized_accuracy"] >= doc["validation"]["float_accuracy"] - 0.01
    assert out.is_file()
