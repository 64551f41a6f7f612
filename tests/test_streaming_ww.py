"""Issue 15's streaming wake word row: the MLPerf Tiny DS-TCN (tests/real_models.py's
``streaming_ww``, 30x1x40 log-mel input) built with ``edgeq build --optimize ram --io int8``
needs no more host arena than the published int8 reference (16,640 B, TFLM host), and its
firmware matches the TFLM reference on QEMU Cortex-M4 and M55 at the k…TensorArenaSize the
build wrote.

Random weights and 48 random samples, no training: the arena depends on the graph, not on
what it learnt. The verify rows share the session's TFLM library cache with test_verify.py
(``tests.tools.tflm_cache``), so in a full run they cost a firmware build and a QEMU run each.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_edgeq
from tests.tools import arena_constant, build_report, require_tool, tflm_cache, tflm_dir

#: mlcommons/tiny trained_models/str_ww_ref_model.tflite on TFLM's host runtime (issue 15).
REFERENCE_ARENA = 16_640
CORES = {"cortex-m4": "qemu-mps2-an386", "cortex-m55": "qemu-mps3-an547"}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One ``--optimize ram --io int8`` project per core, through the real CLI."""
    import keras

    from tests.real_models import streaming_ww

    root = tmp_path_factory.mktemp("streaming-ww")
    keras.utils.set_random_seed(0)
    streaming_ww(keras).save(root / "sww.keras")
    np.save(root / "calib.npy", np.random.default_rng(0).random((48, 30, 1, 40), dtype=np.float32))
    outs = {}
    for target, board in CORES.items():
        r = run_edgeq("build", root / "sww.keras", "--calibration", root / "calib.npy", "--target", target,
                      "--board", board, "--optimize", "ram", "--io", "int8", "--out", root / target, "--json")
        assert r.code == 0, r.stderr
        assert "Traceback" not in r.stderr, r.stderr
        outs[target] = root / target
    return outs


@pytest.mark.slow
@pytest.mark.parametrize("target", CORES)
def test_host_arena_is_at_most_the_reference(built: dict[str, Path], target: str) -> None:
    report = build_report(built[target])
    arena = report["micro"]["arena_bytes"]
    assert report["micro"]["supported"] and arena is not None, report["micro"]
    assert arena <= REFERENCE_ARENA, f"{target}: host arena {arena} B > reference {REFERENCE_ARENA} B"
    # The reference graph: int8 I/O, the same op kinds (its RESHAPE before the Dense may fold away).
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "SOFTMAX"} <= set(report["micro"]["ops"])
    assert set(report["micro"]["ops"]) <= {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "SOFTMAX", "RESHAPE"}
    r = run_edgeq("inspect", built[target] / "sww.tflite", "--json")
    assert r.code == 0, r.stderr
    inputs = r.json["inputs"]
    assert [tuple(i["shape"]) for i in inputs] == [(1, 30, 1, 40)] and inputs[0]["dtype"] == "int8", inputs
    # The firmware's arena comes from that host figure.
    assert report["firmware"]["budget"]["arena"]["host_bytes"] == arena
    assert arena_constant(built[target]) == report["firmware"]["arena_bytes"]


@pytest.mark.slow
@pytest.mark.parametrize("target", CORES)
def test_firmware_matches_on_qemu_at_its_arena(built: dict[str, Path], target: str,
                                              tmp_path_factory: pytest.TempPathFactory) -> None:
    for tool in ("cmake", "arm-none-eabi-gcc", "qemu-system-arm"):
        require_tool(tool)
    tree = tflm_dir("cmsis-nn")
    tflm_cache(tmp_path_factory)  # exported: the CLI child builds each CPU's library once per run
    r = run_edgeq("verify", built[target], "--tflm-dir", tree, "--find-min-arena", "--jobs", "2", "--json",
                  timeout=1800)
    assert "Traceback" not in r.stderr, r.stderr
    assert r.code == 0, (r.stdout, r.stderr)
    doc = r.json
    arena = doc["arena"]
    figures = f"{target}: {doc['message']} {arena}"
    assert doc["ok"] and doc["output_match"] and doc["firmware_exit_code"] == 0, figures
    assert doc["target"] == target and doc["board"] == CORES[target], figures
    assert arena["size_bytes"] == arena_constant(built[target]), figures
    assert arena["min_bytes"] is not None and arena["used_bytes"] <= arena["min_bytes"] <= arena["size_bytes"], figures
