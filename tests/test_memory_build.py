"""The memory step inside `edgeq build` (issue 15): profile in the report, an offline plan
kept only where TFLM proves it, and everything after it (arena rule, budget, firmware)
using the planned figure.

The model is the depthwise-separable 32x32 net where TFLM's greedy planner misses the
lower bound (tests/firmware_corpus.py's ``mobilenet_dw``; test_verify.py runs its planned
firmware on QEMU). Built once with ``--memory-plan auto`` (twice: same bytes) and once with
``off``, through the real CLI.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import assert_clean_error, run_edgeq
from tests.tools import arena_constant, build_report


@pytest.fixture(scope="module")
def planned(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import keras

    from tests.firmware_corpus import _mobilenet_dw

    keras.utils.set_random_seed(0)
    root = tmp_path_factory.mktemp("memory-build")
    model = _mobilenet_dw(keras)
    model.save(root / "mnet.keras")
    rng = np.random.default_rng(0)
    np.save(root / "calib.npy", rng.random((40, 32, 32, 3), dtype=np.float32))
    outs = {}
    for key, flag in (("auto", "auto"), ("again", "auto"), ("off", "off")):
        r = run_edgeq("build", root / "mnet.keras", "--target", "cortex-m4", "--calibration", root / "calib.npy",
                      "--out", root / key, "--memory-plan", flag, "--json")
        assert r.code == 0, r.stderr
        assert "Traceback" not in r.stderr
        outs[key] = root / key
    outs["root"] = root
    return outs


@pytest.mark.slow
def test_the_plan_is_kept_and_shrinks_every_arena_figure(planned: dict[str, Path]) -> None:
    auto, off = build_report(planned["auto"]), build_report(planned["off"])
    plan = auto["memory"]["plan"]
    assert plan["kept"] and plan["outputs_identical"], plan
    assert plan["arena_with_bytes"] < plan["arena_without_bytes"] == off["micro"]["arena_bytes"]
    assert auto["micro"]["arena_bytes"] == plan["arena_with_bytes"]
    # The plan left room for the target's CMSIS-NN scratch buffers (cortex-m4: the dsp code path).
    assert plan["plan"]["target_planned_bytes"] is not None
    assert plan["plan"]["target_planned_bytes"] <= plan["plan"]["target_greedy_bytes"]
    profile = auto["memory"]["profile"]
    assert profile["lower_bound_bytes"] <= plan["plan"]["planned_bytes"] < profile["greedy_bytes"]
    # The arena rule and the firmware use the planned host figure.
    assert auto["firmware"]["budget"]["arena"]["host_bytes"] == plan["arena_with_bytes"]
    assert arena_constant(planned["auto"]) < arena_constant(planned["off"])
    assert arena_constant(planned["auto"]) == auto["firmware"]["arena_bytes"]
    # Same model otherwise: the plan is metadata, the validation figures are the same.
    assert auto["validation"] == off["validation"]
    assert b"OfflineMemoryAllocation" in (planned["auto"] / "mnet.tflite").read_bytes()
    assert b"OfflineMemoryAllocation" not in (planned["off"] / "mnet.tflite").read_bytes()
    assert off["memory"]["plan"] is None and off["memory"]["memory_plan"] == "off"
    # The persistent part comes from TFLM's allocation report, of the model it ships: the plan
    # moves only non-persistent buffers, so the head shrinks to the plan and the tail stays.
    for r in (auto, off):
        m = r["micro"]
        assert m["arena_tail_bytes"] > 0 and m["arena_parts"]["NodeAndRegistration struct"] > 0
        assert sum(m["arena_parts"].values()) <= m["arena_tail_bytes"]
        assert m["arena_head_bytes"] + m["arena_tail_bytes"] <= m["arena_bytes"]
    assert auto["micro"]["arena_head_bytes"] == plan["plan"]["planned_bytes"]
    assert off["micro"]["arena_head_bytes"] == profile["greedy_bytes"]


@pytest.mark.slow
def test_the_report_shows_the_profile_and_the_output_is_deterministic(planned: dict[str, Path]) -> None:
    md = (planned["auto"] / "report.md").read_text()
    assert "## Memory profile" in md and "lower bound" in md and "| peak |" in md
    assert "Offline memory plan (auto): the plan shrinks the host arena" in md
    tail = build_report(planned["auto"])["micro"]["arena_tail_bytes"]
    assert f"{tail:,} B persistent (TFLM's allocation report" in md and f"| **total persistent** | **{tail:,}** |" in md
    for name in ("mnet.tflite", "src/mnet_model_data.cc", "src/mnet_model_settings.h"):  # report.md names its folder
        assert (planned["auto"] / name).read_bytes() == (planned["again"] / name).read_bytes(), name
    pytest.importorskip("matplotlib")  # edgeq[plots]: installed by .ci/run
    png = planned["auto"] / "memory_profile.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.read_bytes() == (planned["again"] / "memory_profile.png").read_bytes()
    assert build_report(planned["auto"])["memory"]["chart"] == str(png)


@pytest.mark.slow
def test_inspect_shows_the_profile_of_the_planned_model(planned: dict[str, Path]) -> None:
    r = run_edgeq("inspect", planned["auto"] / "mnet.tflite", "--json")
    assert r.code == 0, r.stderr
    doc = json.loads(r.stdout)
    memory = doc["memory"]
    assert memory["peak_op"] is not None and memory["total_macs"] > 0
    assert doc["micro"]["arena_bytes"] == build_report(planned["auto"])["micro"]["arena_bytes"]  # TFLM reads the plan
    text = run_edgeq("inspect", planned["auto"] / "mnet.tflite")
    assert text.code == 0 and "memory profile" in text.stdout and "lower bound" in text.stdout
    assert f"{doc['micro']['arena_tail_bytes']:,} B persistent" in text.stdout.replace("\n", " ")


def test_a_bad_memory_plan_value_is_a_clear_error(tmp_path: Path) -> None:
    r = run_edgeq("build", "--example", "--out", tmp_path / "x", "--memory-plan", "always")
    assert_clean_error(r, "--memory-plan", "auto")
    assert not (tmp_path / "x").exists()
