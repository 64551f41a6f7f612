"""PyTorch models through the whole of `edgeq build` (issue 14): the real CLI, real
conversions (torchao PT2E + litert-torch in a child), uint8 I/O by the flatbuffer edit, the
TFLM check, the arena rule and firmware — and one model's firmware on QEMU Cortex-M4 against
real TFLM + CMSIS-NN. Data files are in the model's own layout (NCHW / NCL), as PyTorch
users keep them; the firmware's input is channel-last.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import assert_clean_error, require_module, run_edgeq

pytestmark = pytest.mark.slow
NAMES = ("cnn1", "cnn3", "dwres", "conv1d", "two_inputs")


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory: pytest.TempPathFactory) -> dict:
    for name in ("torch", "torchao", "litert_torch"):
        require_module(name)
    from tests import torch_models

    root = tmp_path_factory.mktemp("pt-build")
    out = {}
    for name in NAMES:
        f = torch_models.build(name, root)
        keys = [f"x{i}" for i in range(len(f.calibration))]
        np.savez(root / f"{name}_calib.npz", **dict(zip(keys, f.calibration)))
        np.savez(root / f"{name}_eval.npz", **dict(zip(keys, f.eval_x)), y=f.eval_y)
        np.savez(root / f"{name}_train.npz", **dict(zip(keys, f.calibration)), y=f.calibration_y)
        spec = ",".join(keys)
        out[name] = {"f": f, "calib": f"{root / f'{name}_calib.npz'}:{spec}",
                     "eval": f"{root / f'{name}_eval.npz'}:{spec},y", "train": f"{root / f'{name}_train.npz'}:{spec},y"}
    out["root"] = root
    return out


def _build(fx: dict, name: str, out: str, *flags: str, pt2: str = "static_pt2") -> dict:
    m = fx[name]
    r = run_edgeq("build", getattr(m["f"], pt2), "--target", "cortex-m4", "--calibration", m["calib"],
                  "--eval-data", m["eval"], "--out", fx["root"] / out, "--json", *flags, timeout=1200)
    assert r.code == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    return json.loads(r.stdout)


@pytest.mark.parametrize("name", NAMES)
def test_ptq_builds_full_integer_firmware_with_uint8_io(fixtures: dict, name: str) -> None:
    doc = _build(fixtures, name, f"{name}-ptq")
    q, v, m = doc["quantization"], doc["validation"], doc["micro"]
    assert doc["model"]["format"] == "pytorch"
    assert q["fully_integer"] and q["input_dtype"] == "uint8" and q["output_dtype"] == "uint8"
    assert m["supported"] and m["arena_bytes"] > 0 and v["tflm_match_rate"] is not None
    f = fixtures[name]["f"]
    if f.classify:
        assert v["float_accuracy"] - v["quantized_accuracy"] <= 0.01, v  # within 1 point of the float PyTorch model
    else:
        assert v["rmse"] is not None and v["rmse"] < 0.15 * float(np.std(f.eval_y)), v
    x0 = f.eval_x[0]
    if x0.ndim in (3, 4):  # the firmware's input is channel-last
        assert tuple(q["inputs"][0]["shape"][1:]) == tuple(np.moveaxis(x0, 1, -1).shape[1:])
    assert (fixtures["root"] / f"{name}-ptq" / "src").is_dir()


def test_qat_from_a_static_batch_export(fixtures: dict) -> None:
    doc = _build(fixtures, "cnn3", "cnn3-qat", "--qat", "--train-data", fixtures["cnn3"]["train"], "--epochs", "1")
    qat = doc["qat"]
    assert qat["framework"].startswith("pytorch") and len(qat["epoch_losses"]) == 1 and qat["loss"] == "crossentropy"
    assert qat["ptq_accuracy"] is not None and qat["qat_accuracy"] is not None
    assert doc["quantization"]["fully_integer"] and doc["quantization"]["input_dtype"] == "uint8"


def test_qat_from_a_dynamic_batch_export_of_a_regression_model(fixtures: dict) -> None:
    doc = _build(fixtures, "two_inputs", "two-qat", "--qat", "--train-data", fixtures["two_inputs"]["train"],
                 "--epochs", "1", pt2="dynamic_pt2")
    assert doc["qat"]["loss"] == "mse" and doc["task"] == "regression"


def test_int8_io_and_nchw_layout_on_request(fixtures: dict) -> None:
    doc = _build(fixtures, "cnn3", "cnn3-int8", "--io", "int8", "--layout", "nchw")
    q = doc["quantization"]
    assert q["input_dtype"] == "int8" and tuple(q["inputs"][0]["shape"][1:]) == fixtures["cnn3"]["f"].eval_x[0].shape[1:]


def test_the_firmware_of_a_pytorch_model_matches_on_qemu(fixtures: dict, tmp_path_factory: pytest.TempPathFactory) -> None:
    from tests.conftest import require_tool
    from tests.tools import tflm_cache, tflm_dir

    for tool in ("cmake", "arm-none-eabi-gcc", "qemu-system-arm"):
        require_tool(tool)
    tflm_cache(tmp_path_factory)
    doc = _build(fixtures, "cnn3", "cnn3-qemu", "--board", "qemu-mps2-an386", "--verify", "--tflm-dir", tflm_dir("cmsis-nn"))
    assert doc["verify"]["ok"] and doc["verify"]["output_match"], doc["verify"]


def test_a_factory_builds_from_the_current_folder(fixtures: dict, tmp_path: Path) -> None:
    root = Path(__file__).resolve().parent.parent
    calib = tmp_path / "calib.npy"
    np.save(calib, np.random.default_rng(0).random((32, 1, 12, 12), dtype=np.float32))
    r = run_edgeq("build", "tests.torch_models:bn_model", "--target", "cortex-m4", "--calibration", calib,
                  "--out", tmp_path / "fw", "--json", cwd=root, timeout=1200)
    assert r.code == 0, r.stderr[-3000:]
    assert json.loads(r.stdout)["quantization"]["fully_integer"]


def test_without_torch_a_pt2_is_a_clear_error_naming_the_extra(fixtures: dict, tmp_path: Path) -> None:
    fake = tmp_path / "no-torch" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('No module named torch')\n")
    env = {"PYTHONPATH": os.pathsep.join([str(fake.parent), str(Path(__file__).resolve().parent.parent)])}
    r = run_edgeq("build", fixtures["cnn1"]["f"].static_pt2, "--calibration", "random", "--out", tmp_path / "x", env=env)
    assert_clean_error(r, "torch", "edgeq[torch]", "torch==2.13.0")
    assert not (tmp_path / "x").exists()


def test_help_imports_neither_torch_nor_tensorflow() -> None:
    import subprocess

    code = ("import sys, runpy\nsys.argv = ['edgeq', '--help']\ntry:\n    runpy.run_module('edgeq', run_name='__main__')\n"
            "except SystemExit:\n    pass\nheavy = [m for m in ('torch', 'litert_torch', 'torchao', 'tensorflow') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_onnx_is_refused_with_a_reason(tmp_path: Path) -> None:
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"\x08\x07")
    r = run_edgeq("build", onnx, "--calibration", "random", "--out", tmp_path / "o")
    assert_clean_error(r, "ONNX", "torch.export")
