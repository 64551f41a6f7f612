"""Bad input: one readable reason, exit 2, no traceback, nothing written."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tests.conftest import assert_clean_error, run_edgeq


def test_reduce_prod_is_refused_by_name(models: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = run_edgeq("build", models["reduce_prod"], "--target", "cortex-m", "-c", models["reduce_prod"].parent / "calib4.npy",
                  "--out", out)
    assert_clean_error(r, "REDUCE_PROD", "TensorFlow Lite Micro")
    assert "FULLY_CONNECTED" in r.stderr or "BATCH_MATMUL" in r.stderr  # the model's op list is shown
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], list(tmp_path.iterdir())


def test_wrong_shape_calibration(models: dict[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((50, 28, 28, 1), np.float32))
    r = run_edgeq("build", models["keras"], "-c", bad, "--out", tmp_path / "out")
    assert_clean_error(r, "(50, 28, 28, 1)", "(N, 8, 8, 1)")
    assert not (tmp_path / "out").exists()


def test_nan_calibration_names_the_sample(models: dict[str, Path], tmp_path: Path) -> None:
    data = np.load(models["calib"]).copy()
    data[17, 3, 3, 0] = np.nan
    bad = tmp_path / "nan.npy"
    np.save(bad, data)
    r = run_edgeq("build", models["keras"], "-c", bad, "--out", tmp_path / "out")
    assert_clean_error(r, "NaN", "sample 17")
    assert not (tmp_path / "out").exists()


def test_corrupt_and_truncated_tflite(example_tflite: Path, tmp_path: Path) -> None:
    rnd = tmp_path / "random.tflite"
    rnd.write_bytes(os.urandom(4096))
    trunc = tmp_path / "truncated.tflite"
    trunc.write_bytes(example_tflite.read_bytes()[: example_tflite.stat().st_size // 2])
    for f in (rnd, trunc):
        for cmd in (("inspect", f), ("build", f, "--out", tmp_path / "out")):
            r = run_edgeq(*cmd)
            assert_clean_error(r, f.name)
            assert not (tmp_path / "out").exists()


def test_keras3_tf_saved_model_save_converts_with_its_weights(models: dict[str, Path], tmp_path: Path) -> None:
    """TF's converter drops the weights of this folder; edgeq's batch-1 re-export keeps them."""
    r = run_edgeq("build", models["weightless"], "-c", models["calib"], "-e", models["eval"], "--out", tmp_path / "out", "--json")
    assert r.code == 0, r.stderr
    v = r.json["validation"]
    assert v["quantized_accuracy"] >= v["float_accuracy"] - 0.01 and v["float_accuracy"] > 0.8


def test_uninitialized_variables_are_refused(models: dict[str, Path], tmp_path: Path) -> None:
    r = run_edgeq("build", models["weightless_tflite"], "--out", tmp_path / "out")
    assert_clean_error(r, "weights are missing", "model.export")
    assert not (tmp_path / "out").exists()


def test_missing_model_and_unknown_type(tmp_path: Path) -> None:
    assert_clean_error(run_edgeq("build", tmp_path / "nope.keras"), "no such model")
    odd = tmp_path / "model.onnx"
    odd.write_bytes(b"x")
    assert_clean_error(run_edgeq("build", odd), "unsupported model file type")


def test_non_empty_out_needs_force(models: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    keep = out / "precious.txt"
    keep.write_text("mine")
    r = run_edgeq("build", models["keras"], "-c", models["calib"], "--out", out)
    assert_clean_error(r, "not empty", "--force")
    assert keep.read_text() == "mine"
    r = run_edgeq("quantize", models["keras"], "-o", keep, "-c", models["calib"])
    assert_clean_error(r, "exists", "--force")
    assert keep.read_text() == "mine"


def test_debug_shows_traceback(tmp_path: Path) -> None:
    r = run_edgeq("build", tmp_path / "nope.keras", "--debug")
    assert r.code == 2 and "Traceback" in r.stderr


def test_usage_error_exit_2() -> None:
    r = run_edgeq("build", "--no-such-option")
    assert r.code == 2


def test_bad_board_is_refused_before_conversion(tmp_path: Path) -> None:
    r = run_edgeq("build", "--example", "--board", "qemu-nope", "--out", tmp_path / "out")
    assert_clean_error(r, "unknown board", "qemu-mps2-an386")
    assert "converting" not in r.stderr  # refused before any TensorFlow work
    r = run_edgeq("build", "--example", "--target", "host", "--board", "qemu-mps2-an386", "--out", tmp_path / "out")
    assert_clean_error(r, "needs a Cortex-M target, not 'host'")
    assert not (tmp_path / "out").exists()
