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


# ----------------------------------------------------------------------------- internal errors (exit 3)
_BOOM = """
import importlib, sys
target, attr = sys.argv[1].rsplit(":", 1)
def boom(*args, **kwargs):
    raise RuntimeError("simulated failure in a stage\\nsecond line of the message")
setattr(importlib.import_module(target), attr, boom)
from edgeq.cli.app import main
main(sys.argv[2:])
"""


def _run_with_failure(stage: str, *args: str | Path) -> tuple[int, str, str]:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", _BOOM, stage, *map(str, args)], capture_output=True, text=True,
                          timeout=600)
    return proc.returncode, proc.stdout, proc.stderr


def test_every_command_turns_an_unexpected_exception_into_exit_3(tmp_path: Path) -> None:
    """A bug anywhere: one line naming the step and the exception, a hint, exit 3; the traceback only with --debug."""
    tfl = tmp_path / "m.tflite"
    tfl.write_bytes(b"\0" * 64)
    keras_file = tmp_path / "m.keras"
    keras_file.write_bytes(b"\0" * 64)
    cases = {
        "build": ("edgeq.pipeline:load_model", "build", keras_file, "--out", tmp_path / "out", "-c", "random"),
        "quantize": ("edgeq.pipeline:load_model", "quantize", keras_file, "-o", tmp_path / "q.tflite"),
        "compare": ("edgeq.compare:load_model", "compare", keras_file),
        "inspect": ("edgeq.check.inspection:inspect", "inspect", tfl),
        "emit": ("edgeq.firmware.emit:emit", "emit", tfl, "--out", tmp_path / "src"),
        "targets": ("edgeq.firmware.targets:list_targets", "targets"),
        "bench": ("edgeq.remote.runner:bench", "bench", tfl, "--host", "local"),
    }
    for command, (stage, *args) in cases.items():
        code, out, err = _run_with_failure(stage, *args)
        assert code == 3, (command, code, err)
        assert "Traceback" not in err and "Traceback" not in out, (command, err)
        lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
        assert len(lines) == 1, (command, err)
        assert lines[0].startswith("error: internal error while "), (command, lines)
        assert lines[0].endswith("RuntimeError: simulated failure in a stage"), (command, lines)
        assert "second line" not in err and "--debug" in err, (command, err)
        code, out, err = _run_with_failure(stage, *args, "--debug")
        assert code == 3 and "Traceback" in err and "RuntimeError: simulated failure" in err, (command, err)
    assert not (tmp_path / "out").exists() and not (tmp_path / "q.tflite").exists() and not (tmp_path / "src").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_internal_error_names_the_step() -> None:
    from edgeq.cli.app import step_of

    def raise_in(module: str) -> BaseException:
        code = compile("def f():\n    raise ValueError('x')\n", module.replace(".", "/") + ".py", "exec")
        ns: dict[str, object] = {"__name__": module}
        exec(code, ns)
        try:
            ns["f"]()  # type: ignore[operator]
        except ValueError as exc:
            return exc
        raise AssertionError

    assert step_of(raise_in("edgeq.quantization.convert"), "build") == "converting the model"
    assert step_of(raise_in("edgeq.quantization.qat_annotate"), "build") == "quantization-aware training"
    assert step_of(raise_in("edgeq.firmware.emit"), "emit") == "emitting firmware sources"
    assert step_of(raise_in("somewhere.else"), "bench") == "running `edgeq bench`"


def test_failure_after_staging_leaves_the_output_folder_as_it_was(tmp_path: Path) -> None:
    """A crash while writing the firmware (inside the staged folder): the previous build stays, no temp folders."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("previous build")
    code, _, err = _run_with_failure("edgeq.firmware.step:write", "build", "--example", "--out", out, "--force")
    assert code == 3 and "Traceback" not in err, err
    assert "internal error while" in err
    assert sorted(p.name for p in out.iterdir()) == ["old.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


# ----------------------------------------------------------------------------- arrays by name
def test_npz_arrays_by_name(tmp_path: Path) -> None:
    import pytest

    from edgeq.model.calibration import load_samples, split_keys
    from edgeq.errors import CalibrationError
    from edgeq.model.loading import IOSpec

    spec = (IOSpec("args_0", (1, 4)),)
    f = tmp_path / "data.npz"
    # 'junk' is an object array: reading it with allow_pickle=False would fail, so it proves only used keys are read
    np.savez(f, specs=np.ones((5, 4), np.float32), labels=np.arange(5) % 2, junk=np.array([{"a": 1}], dtype=object))
    assert split_keys(f"{f}:specs,labels") == (f, ("specs", "labels"))
    assert split_keys(f) == (f, ())
    s = load_samples(f"{f}:specs,labels", spec, role="evaluation")
    assert len(s) == 5 and s.y is not None and list(s.y) == [0, 1, 0, 1, 0] and s.source.endswith(":specs,labels")
    s = load_samples(f"{f}:specs", spec)
    assert s.y is None and not s.targets
    with pytest.raises(CalibrationError, match=r"no array 'nope' \(keys: junk, labels, specs\)"):
        load_samples(f"{f}:nope", spec)
    with pytest.raises(CalibrationError, match="has no array for model input"):
        load_samples(f, spec)  # no 'x' and no key given: the keys are listed, the hint shows the syntax
    np.save(tmp_path / "a.npy", np.ones((3, 4), np.float32))
    with pytest.raises(CalibrationError, match="only apply to an .npz"):
        load_samples(f"{tmp_path / 'a.npy'}:x", spec)


def test_labels_keep_their_form(tmp_path: Path) -> None:
    """One-hot → class indices for validation, the raw arrays kept for QAT; regression targets are not classes."""
    from edgeq.model.calibration import load_samples
    from edgeq.model.loading import IOSpec

    spec = (IOSpec("args_0", (1, 4)),)
    x = np.ones((4, 4), np.float32)
    np.savez(tmp_path / "hot.npz", x=x, y=np.eye(3, dtype=np.float32)[[0, 2, 1, 2]])
    s = load_samples(tmp_path / "hot.npz", spec)
    assert list(s.y) == [0, 2, 1, 2] and s.targets[0].shape == (4, 3)
    np.savez(tmp_path / "ae.npz", x=x, y=x * 0.5)
    s = load_samples(tmp_path / "ae.npz", spec)
    assert s.y is None and s.targets[0].shape == (4, 4)
    np.savez(tmp_path / "two.npz", x=x, y0=np.array([0, 1, 1, 0]), y1=np.zeros((4, 1), np.float32))
    s = load_samples(tmp_path / "two.npz", spec)
    assert len(s.targets) == 2 and list(s.y) == [0, 1, 1, 0]
