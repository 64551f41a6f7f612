"""`edgeq compare`: every mode measured the same way, as JSON and as a table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import assert_clean_error, run_edgeq

MODES = ("int8", "int16x8", "float16", "dynamic", "float32")


@pytest.fixture(scope="module")
def compare_json(models: dict[str, Path]) -> dict[str, Any]:
    r = run_edgeq("compare", models["keras"], "--calibration", models["calib"], "--eval-data", models["eval"], "--json")
    assert r.code == 0, r.stderr
    return r.json


def test_compare_json_lists_every_mode(compare_json: dict[str, Any]) -> None:
    doc = compare_json
    assert (doc["schema_version"], doc["kind"]) == (1, "compare")
    assert set(doc["modes"]) == set(MODES)  # (print_json sorts keys)
    assert doc["samples"] == 197 and doc["float_accuracy"] > 0.8
    for mode, row in doc["modes"].items():
        assert row["error"] is None, (mode, row["error"])
        assert row["size_bytes"] > 0
        assert row["accuracy"] >= doc["float_accuracy"] - 0.02, mode
        assert row["rmse"] is not None and row["latency_us"] > 0
    m = doc["modes"]
    assert m["int8"]["size_bytes"] < m["float16"]["size_bytes"] < m["float32"]["size_bytes"]
    assert (m["int8"]["input_dtype"], m["int16x8"]["input_dtype"]) == ("uint8", "float32")
    assert m["float32"]["rmse"] < m["int8"]["rmse"]


def test_compare_marks_what_runs_on_tflm(compare_json: dict[str, Any]) -> None:
    m = compare_json["modes"]
    for mode in ("float16", "dynamic"):
        assert m[mode]["runs_on_tflm"] is False and m[mode]["arena_bytes"] is None
        assert "TFLM" in m[mode]["tflm_note"]
    for mode in ("int8", "int16x8", "float32"):
        assert m[mode]["runs_on_tflm"] is True, m[mode]
        assert m[mode]["arena_bytes"] > 0
    assert m["int8"]["arena_bytes"] < m["float32"]["arena_bytes"]


def test_compare_without_labels_reports_agreement(models: dict[str, Path], tmp_path: Path) -> None:
    from edgeq.compare import compare_modes

    with np.load(models["eval"]) as z:
        np.savez(tmp_path / "unlabelled.npz", x=z["x"][:40])
    report = compare_modes(models["keras"], calibration=models["calib"], eval_data=tmp_path / "unlabelled.npz",
                           modes=("int8", "float16"), latency_runs=5)
    assert report.float_accuracy is None
    for row in report.rows:
        assert row.accuracy is None and 0.9 <= row.agreement <= 1.0


def test_compare_table(capsys: pytest.CaptureFixture[str]) -> None:
    from edgeq.compare import CompareReport, ModeRow

    rows = (
        ModeRow("int8", 8360, "uint8", "uint8", 0.939, 0.99, 0.003, True, None, 2976, 11.0),
        ModeRow("float16", 13196, "float32", "float32", 0.944, 1.0, 2e-5, False, "TFLM cannot run it", None, 2.3),
        ModeRow("int16x8", error="conversion failed: FOO"),
    )
    CompareReport({"path": "m.keras", "format": "keras", "sha256": "x"}, 197, "e.npz", 0.944, rows).render_table()
    text = capsys.readouterr().out
    assert "int8" in text and "8,360 B" in text and "93.90 %" in text and "2,976 B" in text
    line16 = next(ln for ln in text.splitlines() if "float16" in ln)
    assert "no" in line16
    assert "conversion failed: FOO" in text


def test_compare_refuses_tflite_and_unknown_mode(example_tflite: Path, models: dict[str, Path]) -> None:
    r = run_edgeq("compare", example_tflite, "--calibration", models["calib"])
    assert_clean_error(r, "float model")
    from edgeq.compare import compare_modes
    from edgeq.errors import UserError

    with pytest.raises(UserError, match="int4"):
        compare_modes(models["keras"], calibration=models["calib"], eval_data=None, modes=("int4",))


@pytest.fixture(scope="module")
def batch_savedmodels(models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The test CNN exported with a fixed batch of 1 and with a dynamic batch."""
    import keras
    import tensorflow as tf

    root = tmp_path_factory.mktemp("batch")
    m = keras.models.load_model(models["keras"], compile=False)
    m.export(str(root / "fixed1"), input_signature=[tf.TensorSpec([1, 8, 8, 1], tf.float32)], verbose=False)
    m.export(str(root / "dynamic"), verbose=False)
    return {"fixed": root / "fixed1", "dynamic": root / "dynamic"}


def test_compare_fixed_and_dynamic_batch_savedmodels(models: dict[str, Path], batch_savedmodels: dict[str, Path]) -> None:
    """A batch-1 signature is fed one sample at a time: the same figures as the dynamic-batch export."""
    from edgeq.compare import compare_modes

    docs = {k: compare_modes(p, calibration=models["calib"], eval_data=models["eval"], modes=("int8", "float32"),
                             latency_runs=2).to_dict() for k, p in batch_savedmodels.items()}
    fixed, dynamic = docs["fixed"], docs["dynamic"]
    assert fixed["samples"] == dynamic["samples"] == 197
    assert fixed["float_accuracy"] == dynamic["float_accuracy"] > 0.8
    for mode in ("int8", "float32"):
        a, b = fixed["modes"][mode], dynamic["modes"][mode]
        assert a["error"] is None and b["error"] is None, (a["error"], b["error"])
        assert a["accuracy"] == b["accuracy"] and a["agreement"] == b["agreement"]
        assert a["rmse"] == pytest.approx(b["rmse"], rel=1e-3, abs=1e-6)


def test_fixed_batch_prediction_matches_dynamic(models: dict[str, Path], batch_savedmodels: dict[str, Path]) -> None:
    from edgeq.model.loading import load_model

    x = np.load(models["calib"])[:70].astype(np.float32)  # not a multiple of 64: the last chunk is short
    fixed, dynamic = load_model(batch_savedmodels["fixed"]), load_model(batch_savedmodels["dynamic"])
    assert (fixed.fixed_batch, dynamic.fixed_batch) == (1, None)
    np.testing.assert_allclose(fixed.predict([x])[0], dynamic.predict([x])[0], rtol=1e-5, atol=1e-6)
