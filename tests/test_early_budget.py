"""A model that cannot fit is refused before conversion (issue 15, part 5), never wrongly.

The estimate's figures are lower bounds: the tests check both directions on real models:
a model over a Cortex-M3's 64 KiB RAM or 512 KiB flash is refused with exit 2 before the
converter runs (no "converting" line, no output folder), and for models that do fit, the
bounds sit below what the converted model really needs (TFLM's measured arena, the file).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import assert_clean_error, run_edgeq


def _save(model, path: Path) -> Path:  # type: ignore[no-untyped-def]
    model.save(path)
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import keras

    keras.utils.set_random_seed(0)
    L = keras.layers
    root = tmp_path_factory.mktemp("early")
    big_input = keras.Sequential([keras.Input((128, 128, 3)), L.Conv2D(8, 3, strides=2, activation="relu"),
                                  L.GlobalAveragePooling2D(), L.Dense(4)])
    wide = keras.Sequential([keras.Input((64,)), L.Dense(1024, activation="relu"), L.Dense(512), L.Dense(4)])
    inp = keras.Input((24, 24, 3))
    h = L.Conv2D(8, 3, padding="same")(inp)
    h = L.ReLU()(L.BatchNormalization()(h))
    h = L.Add()([h, L.Conv2D(8, 3, padding="same")(h)])
    small = keras.Model(inp, L.Dense(3)(L.GlobalAveragePooling2D()(h)))
    np.save(root / "calib24.npy", np.random.default_rng(0).random((16, 24, 24, 3), dtype=np.float32))
    return {"big_input": _save(big_input, root / "big_input.keras"), "wide": _save(wide, root / "wide.keras"),
            "small": _save(small, root / "small.keras"), "root": root}


@pytest.mark.parametrize(("name", "what"), [("big_input", "the uint8 input and its int8 copy alone needs"),
                                            ("wide", "its weights alone take")])
def test_a_hopeless_model_is_refused_before_conversion(models: dict[str, Path], name: str, what: str) -> None:
    out = models["root"] / f"out-{name}"
    r = run_edgeq("build", models[name], "--target", "cortex-m3", "--calibration", "random", "--out", out)
    assert_clean_error(r, "refused before converting it", what, "--allow-over-budget")
    assert "converting " not in r.stderr.replace("before converting it", "")  # the converter never started
    assert not out.exists()


def test_allow_over_budget_skips_the_early_refusal(models: dict[str, Path]) -> None:
    out = models["root"] / "out-allowed"
    r = run_edgeq("build", models["big_input"], "--target", "cortex-m3", "--calibration", "random", "--out", out,
                  "--allow-over-budget", "--json")
    assert r.code == 0, r.stderr
    assert json.loads(r.stdout)["firmware"]["budget"]["ok"] is False  # the exact check agrees: it does not fit


def test_the_bounds_stay_below_what_the_converted_model_needs(models: dict[str, Path]) -> None:
    import keras

    from edgeq.firmware.early_budget import estimate

    out = models["root"] / "out-small"
    r = run_edgeq("build", models["small"], "--target", "cortex-m3", "--calibration", models["root"] / "calib24.npy",
                  "--out", out, "--json")
    assert r.code == 0, r.stderr
    report = json.loads(r.stdout)
    found = estimate(keras.saving.load_model(models["small"]), activation_bytes=1, uint8_input=True)
    assert found is not None and found.weight_bytes > 0 and found.activation_bytes > 0
    assert found.weight_bytes <= report["tflite"]["size_bytes"]
    assert found.activation_bytes <= report["memory"]["profile"]["lower_bound_bytes"] <= report["micro"]["arena_bytes"]
    assert "BatchNormalization" not in found.layer  # folded away by the converter: never counted
