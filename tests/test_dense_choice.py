"""``--dense auto`` / ``--optimize ram`` (issue 15, part 3): per-tensor dense layers only
where they cost nothing, both variants measured on the float model and on TFLM.

The Dense anomaly-detection autoencoder (640-128x4-8-128x4-640 with BatchNorm, the shape
whose per-channel arrays cost 22 KB of arena) must come out per-tensor at a few KB; a dense
layer whose output channels have ranges 10^6 apart must stay per-channel (one scale for all
would flatten the small channels to zero).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import assert_clean_error, run_edgeq


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import keras

    from tests.firmware_corpus import _autoencoder

    keras.utils.set_random_seed(0)
    root = tmp_path_factory.mktemp("dense")
    x = np.random.default_rng(0).normal(size=(200, 640)).astype(np.float32)
    ae = _autoencoder(keras)
    ae.compile("adam", "mse")
    ae.fit(x, x, epochs=1, verbose=0)
    ae.save(root / "ae.keras")
    np.save(root / "ae_calib.npy", x)
    # Output channel k of the first layer scaled by 10^(k - 3): per-tensor int8 keeps only the largest.
    skew = keras.Sequential([keras.Input((16,)), keras.layers.Dense(6), keras.layers.Dense(4)])
    kernel, bias = skew.layers[0].get_weights()
    skew.layers[0].set_weights([kernel * (10.0 ** (np.arange(6) - 3)), bias])
    skew.save(root / "skew.keras")
    np.save(root / "skew_calib.npy", np.random.default_rng(1).normal(size=(200, 16)).astype(np.float32))
    return {"root": root, "ae": root / "ae.keras", "ae_calib": root / "ae_calib.npy",
            "skew": root / "skew.keras", "skew_calib": root / "skew_calib.npy"}


def _build(models: dict[str, Path], name: str, out: str, *flags: str) -> dict:
    r = run_edgeq("build", models[name], "--target", "cortex-m4", "--calibration", models[f"{name}_calib"],
                  "--out", models["root"] / out, "--json", *flags)
    assert r.code == 0, r.stderr
    assert "Traceback" not in r.stderr
    return json.loads(r.stdout)


@pytest.mark.slow
def test_the_autoencoder_goes_per_tensor_at_a_few_kilobytes(models: dict[str, Path]) -> None:
    report = _build(models, "ae", "ae-ram", "--optimize", "ram")
    dense = report["quantization"]["dense"]
    assert dense["chosen"] == "per-tensor", dense
    pc, pt = dense["variants"]["per-channel"], dense["variants"]["per-tensor"]
    assert pt["arena_bytes"] < pc["arena_bytes"] and pt["size_bytes"] < pc["size_bytes"]
    assert pt["rmse"] <= 1.10 * pc["rmse"]
    assert report["micro"]["arena_bytes"] <= 6 * 1024 == 6144  # the bound, default uint8 I/O
    assert report["firmware"]["budget"]["arena"]["host_bytes"] == report["micro"]["arena_bytes"]
    default = _build(models, "ae", "ae-default")
    assert default["quantization"]["dense"] is None and default["micro"]["arena_bytes"] == pc["arena_bytes"]
    assert "dense layers" in (models["root"] / "ae-ram" / "report.md").read_text()


@pytest.mark.slow
def test_a_dense_layer_that_needs_its_channel_scales_keeps_them(models: dict[str, Path]) -> None:
    report = _build(models, "skew", "skew-auto", "--dense", "auto")
    dense = report["quantization"]["dense"]
    assert dense["chosen"] == "per-channel", dense
    assert "RMSE" in dense["reason"] and dense["variants"]["per-tensor"]["rmse"] > 1.10 * dense["variants"]["per-channel"]["rmse"]
    forced = _build(models, "skew", "skew-pt", "--dense", "per-tensor")
    assert forced["quantization"]["dense"] is None
    assert forced["micro"]["arena_bytes"] <= report["micro"]["arena_bytes"]  # what auto turned down, built on request


def test_bad_dense_options_are_clear_errors(tmp_path: Path) -> None:
    r = run_edgeq("build", "--example", "--out", tmp_path / "a", "--dense", "sometimes")
    assert_clean_error(r, "--dense", "auto")
    r = run_edgeq("build", "--example", "--target", "arduino-nano33ble", "--out", tmp_path / "b", "--dense", "per-channel")
    assert_clean_error(r, "per tensor", "--dense per-channel")
    r = run_edgeq("build", "--example", "--out", tmp_path / "c", "--optimize", "speed")
    assert r.code == 2 and "--optimize" in r.stderr and "Traceback" not in r.stderr
    assert not any((tmp_path / n).exists() for n in "abc")


@pytest.mark.slow
def test_compare_lists_the_per_tensor_dense_variant_and_the_lower_bound(models: dict[str, Path]) -> None:
    r = run_edgeq("compare", models["skew"], "--calibration", models["skew_calib"], "--json")
    assert r.code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert set(doc["modes"]) == {"int8", "int16x8", "float16", "dynamic", "float32"}  # the contract, unchanged
    variant = doc["variants"]["int8 (per-tensor dense)"]
    assert variant["runs_on_tflm"] and variant["lower_bound_bytes"] > 0 and variant["rmse"] > doc["modes"]["int8"]["rmse"]
    assert doc["modes"]["int8"]["lower_bound_bytes"] > 0 and doc["modes"]["float16"]["lower_bound_bytes"] is None
    table = run_edgeq("compare", models["skew"], "--calibration", models["skew_calib"])
    assert table.code == 0 and "int8 (per-tensor dense)" in table.stdout and "lower bound" in table.stdout
