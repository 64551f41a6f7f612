"""The core pipeline through the real CLI: Keras 3, tf_keras, SavedModel, multi-I/O."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import assert_clean_error, run_edgeq

REPORT_KEYS = {
    "model": {"path", "format", "sha256"},
    "tflite": {"path", "size_bytes", "sha256"},
    "quantization": {"mode", "input_dtype", "output_dtype", "input_scale", "input_zero_point", "output_scale", "output_zero_point"},
    "validation": {"samples", "float_accuracy", "quantized_accuracy", "agreement", "rmse", "max_abs_error", "cosine", "tflm_match_rate",
                   "tflm_mismatch_values", "tflm_compared_values", "tflm_max_step_diff"},
    "micro": {"supported", "unsupported_ops", "ops", "arena_bytes"},
}


def _arena_works(tflite: Path, arena: int) -> bool:
    """Ask the real TFLM runtime, in its own process, whether ``arena`` bytes suffice."""
    code = textwrap.dedent(
        f"""
        import numpy as np, sys
        from tflite_micro import runtime
        b = open({str(tflite)!r}, 'rb').read()
        try:
            it = runtime.Interpreter.from_bytes(b, arena_size={arena})
            it.set_input(np.zeros((1, 8, 8, 1), np.uint8), 0)
            it.invoke()
        except RuntimeError:
            sys.exit(3)
        """
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


@pytest.mark.parametrize("kind,fmt", [("keras", "keras"), ("tf_keras", "tf_keras"), ("saved_model", "saved_model")])
def test_build_full_integer(models: dict[str, Path], tmp_path: Path, kind: str, fmt: str) -> None:
    out = tmp_path / "out"
    r = run_edgeq("build", models[kind], "--target", "cortex-m", "--calibration", models["calib"],
                  "--eval-data", models["eval"], "--out", out, "--json", "--name", "cnn")
    assert r.code == 0, r.stderr
    doc = r.json
    for section, keys in REPORT_KEYS.items():
        assert keys <= set(doc[section]), (section, set(doc[section]))
    assert doc["schema_version"] == 1
    assert doc["model"]["format"] == fmt
    assert json.loads((out / "report.json").read_text()) == doc
    q = doc["quantization"]
    assert (q["input_dtype"], q["output_dtype"]) == ("uint8", "uint8")
    assert q["fully_integer"] is True
    v = doc["validation"]
    assert v["samples"] == 197
    assert v["float_accuracy"] > 0.8
    assert v["quantized_accuracy"] >= v["float_accuracy"] - 0.01
    assert v["tflm_match_rate"] == 1.0
    assert 0.99 < v["cosine"] <= 1.0 + 1e-9
    m = doc["micro"]
    assert m["supported"] is True and m["unsupported_ops"] == []
    assert isinstance(m["arena_bytes"], int)
    tfl = out / "cnn.tflite"
    assert tfl.is_file() and doc["tflite"]["size_bytes"] == tfl.stat().st_size
    from edgeq.model.tflite_info import read_tflite

    _, info = read_tflite(tfl)
    assert info.fully_integer and info.inputs[0].dtype == "UINT8" and info.outputs[0].dtype == "UINT8"
    # The arena is the real minimum: it works, and 16 bytes less does not.
    assert _arena_works(tfl, m["arena_bytes"])
    assert not _arena_works(tfl, m["arena_bytes"] - 16)


def test_io_int8_and_float32(models: dict[str, Path], tmp_path: Path) -> None:
    from edgeq.model.tflite_info import read_tflite

    for io, want in (("int8", "INT8"), ("float32", "FLOAT32")):
        out = tmp_path / f"m_{io}.tflite"
        r = run_edgeq("quantize", models["keras"], "-o", out, "-c", models["calib"], "-e", models["eval"], "--io", io, "--json")
        assert r.code == 0, r.stderr
        _, info = read_tflite(out)
        assert info.inputs[0].dtype == want and info.outputs[0].dtype == want
        inner = [t for t in info.tensors if t.index not in {info.inputs[0].index, info.outputs[0].index}]
        assert all(t.dtype in {"INT8", "INT32"} for t in inner), [(t.name, t.dtype) for t in inner]
        assert r.json["validation"]["tflm_match_rate"] == 1.0


def test_multi_input_multi_output(models: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "mio.tflite"
    r = run_edgeq("quantize", models["multi_io"], "-o", out, "-c", models["multi_io"].parent / "multi_calib.npz", "--json")
    assert r.code == 0, r.stderr
    doc = r.json
    assert len(doc["quantization"]["inputs"]) == 2 and len(doc["quantization"]["outputs"]) == 2
    assert doc["validation"]["samples"] == 30
    assert doc["validation"]["tflm_match_rate"] == 1.0
    assert doc["validation"]["cosine"] > 0.99


def test_image_folder_calibration(models: dict[str, Path], tmp_path: Path) -> None:
    import tensorflow as tf

    folder = tmp_path / "images" / "sub"
    folder.mkdir(parents=True)
    calib = np.load(models["calib"])[:40]
    for i, x in enumerate(calib):
        big = tf.image.resize(x * 255.0, (16, 16)).numpy().astype(np.uint8)  # resized back to 8x8 by edgeq
        (folder / f"img_{i:03}.png").write_bytes(tf.io.encode_png(big).numpy())
    out = tmp_path / "img.tflite"
    r = run_edgeq("quantize", models["keras"], "-o", out, "-c", tmp_path / "images", "-e", models["eval"], "--json")
    assert r.code == 0, r.stderr
    assert "only 40 calibration samples" in r.stderr
    assert r.json["validation"]["quantized_accuracy"] > 0.7


def test_random_calibration_needs_opt_in(models: dict[str, Path], tmp_path: Path) -> None:
    r = run_edgeq("quantize", models["keras"], "-o", tmp_path / "x.tflite")
    assert_clean_error(r, "representative data", "--calibration")
    assert not (tmp_path / "x.tflite").exists()
    r = run_edgeq("quantize", models["keras"], "-o", tmp_path / "x.tflite", "--calibration", "random", "--json")
    assert r.code == 0, r.stderr
    assert "RANDOM" in r.stderr and "mean nothing" in r.stderr
    assert r.json["warnings"]


def test_accuracy_gate_exits_1(models: dict[str, Path], tmp_path: Path) -> None:
    r = run_edgeq("quantize", models["keras"], "-o", tmp_path / "g.tflite", "-c", models["calib"], "-e", models["eval"],
                  "--max-accuracy-drop", "-50")
    assert r.code == 1, r.stderr
    assert "below float" in r.stderr and "Traceback" not in r.stderr
    r = run_edgeq("quantize", models["keras"], "-o", tmp_path / "g.tflite", "-c", models["calib"], "-e", models["eval"],
                  "--max-accuracy-drop", "1", "--force")
    assert r.code == 0, r.stderr


def test_an_accuracy_gate_that_cannot_apply_is_refused_before_any_output(models: dict[str, Path], tmp_path: Path,
                                                                         example_tflite: Path) -> None:
    """Unlabelled evaluation data, or a .tflite (no float model), give no top-1 accuracy to
    gate on: exit 2 before converting, and no file or folder left behind."""
    with np.load(models["eval"]) as z:
        np.savez(tmp_path / "unlabelled.npz", x=z["x"][:40])
    r = run_edgeq("quantize", models["keras"], "-o", tmp_path / "q.tflite", "-c", models["calib"],
                  "-e", tmp_path / "unlabelled.npz", "--max-accuracy-drop", "1")
    assert_clean_error(r, "--max-accuracy-drop", "no class labels")
    assert not (tmp_path / "q.tflite").exists()
    r = run_edgeq("build", models["keras"], "--target", "cortex-m4", "-o", tmp_path / "fw", "-c", models["calib"],
                  "-e", tmp_path / "unlabelled.npz", "--max-accuracy-drop", "1")
    assert_clean_error(r, "--max-accuracy-drop", "no class labels")
    assert not (tmp_path / "fw").exists() and [p.name for p in tmp_path.iterdir()] == ["unlabelled.npz"]
    from edgeq.cli.example import example_files

    _, _, ev = example_files()
    r = run_edgeq("quantize", example_tflite, "-o", tmp_path / "t.tflite", "-e", ev, "--max-accuracy-drop", "1")
    assert_clean_error(r, "--max-accuracy-drop", "no float model")
    assert not (tmp_path / "t.tflite").exists()


def test_existing_tflite_is_not_requantized(example_tflite: Path, tmp_path: Path) -> None:
    from edgeq.cli.example import example_files

    _, _, ev = example_files()
    r = run_edgeq("quantize", example_tflite, "-o", tmp_path / "copy.tflite", "-e", ev, "--json")
    assert r.code == 0, r.stderr
    assert (tmp_path / "copy.tflite").read_bytes() == example_tflite.read_bytes()
    doc = r.json
    assert doc["model"]["format"] == "tflite" and doc["validation"]["float_accuracy"] is None
    assert doc["validation"]["quantized_accuracy"] > 0.9 and doc["validation"]["tflm_match_rate"] == 1.0


def test_rebuild_keeps_user_edits_and_files(tmp_path: Path) -> None:
    """Re-running build into its own output refreshes it atomically, keeps what the user
    edited or added (with a warning), and --force regenerates everything."""
    out = tmp_path / "fw"
    r = run_edgeq("build", "--example", "--out", out)
    assert r.code == 0, r.stderr
    main_cc = out / "src" / "main.cc"
    generated = main_cc.read_text()
    main_cc.write_text(generated + "// my change\n")
    (out / "NOTES.txt").write_text("mine")
    r = run_edgeq("build", "--example", "--out", out, "--samples", "150")
    assert r.code == 0, r.stderr
    assert "kept your edited src/main.cc" in r.stderr
    assert main_cc.read_text().endswith("// my change\n") and (out / "NOTES.txt").read_text() == "mine"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left
    r = run_edgeq("build", "--example", "--out", out, "--force")
    assert r.code == 0, r.stderr
    assert main_cc.read_text() == generated and not (out / "NOTES.txt").exists()


def test_two_builds_are_byte_identical(tmp_path: Path) -> None:
    for d in ("a", "b"):
        r = run_edgeq("build", "--example", "--out", tmp_path / d, "--board", "qemu-mps2-an386")
        assert r.code == 0, r.stderr
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert files_a == files_b
    for rel in files_a:
        if rel.name in ("report.json", "report.md"):
            continue  # they name the output folder, which differs here by design
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel


def _embedded(header: Path, kind: str, index: int = 0) -> list[int]:
    """The bytes of ``g_<name>_<kind><index>`` in a generated ``_sample_input.h``."""
    import re

    body = re.search(rf"_{kind}{index}\[\d+\] = \{{(.*?)\}};", header.read_text(), re.S).group(1)
    return [int(v, 16) for v in re.findall(r"0x[0-9a-f]{2}", body)]


def test_every_firmware_embeds_an_input_and_tflm_output(example_tflite: Path, tmp_path: Path) -> None:
    """Without eval data the firmware still checks something: a calibration sample when
    --calibration is given (for a .tflite it is otherwise unused), else the seeded
    pseudo-random input; the expected output is host TFLM's for that input."""
    from edgeq.firmware.sources import pseudo_random_input
    from edgeq.cli.example import example_files
    from edgeq.check.micro import host_outputs
    from edgeq.model.tflite_info import read_tflite

    _, calib, _ = example_files()
    data, info = read_tflite(example_tflite)
    for args, origin in (((), "pseudo-random (seed 0)"), (("--calibration", calib), "calibration sample 0")):
        out = tmp_path / origin.split()[0]
        r = run_edgeq("build", example_tflite, "--target", "host", "--out", out, "--name", "digits", *args, "--json")
        assert r.code == 0, r.stderr
        fw = r.json["firmware"]
        assert fw["reference_input"] == origin and fw["reference_output"].startswith("TFLM")
        assert r.json["validation"]["tflm_match_rate"] is None  # nothing to validate against
        header = out / "src" / "digits_sample_input.h"
        assert f"input:  {origin}" in header.read_text()
        if args:
            x = np.clip(np.round(np.load(calib)[0:1] * 255.0), 0, 255).astype(np.uint8).reshape(1, 8, 8, 1)
        else:
            x = pseudo_random_input(info.inputs)[0]
        assert _embedded(header, "sample_input") == list(x.ravel())
        assert _embedded(header, "reference_output") == list(np.asarray(host_outputs(data, info, [x])[0]).ravel())
        runner = (out / "src" / "digits_runner.cpp").read_text()
        assert "no reference output" not in runner and "LiteRT" not in runner


def test_dense_only_model_warns_of_litert_mismatch_and_embeds_tflm(tmp_path: Path) -> None:
    """A per-channel Dense-only model: LiteRT's reference kernels round differently from
    TFLM, so the report says how many values differ (a warning and validation.tflm_*),
    and the firmware's reference is TFLM's output, not LiteRT's."""
    from edgeq.check.micro import host_outputs
    from edgeq.model.tflite_info import read_tflite
    from tests.codegen_models import dense_only

    model = dense_only()
    rng = np.random.default_rng(7)
    ev = tmp_path / "eval.npz"
    np.savez(ev, x=rng.random((200, 64), dtype=np.float32))
    out = tmp_path / "fw"
    r = run_edgeq("build", model, "--target", "host", "--eval-data", ev, "--out", out, "--name", "dense", "--json")
    assert r.code == 0, r.stderr
    v = r.json["validation"]
    assert v["tflm_compared_values"] == 200 * 8
    assert 0 < v["tflm_mismatch_values"] < v["tflm_compared_values"] and v["tflm_max_step_diff"] >= 1
    assert v["tflm_match_rate"] < 1.0
    warning = next(w for w in r.json["warnings"] if "differ on" in w)
    assert f"differ on {v['tflm_mismatch_values']} of 1600 output values" in warning
    assert r.json["firmware"]["reference_input"] == "eval sample 0"
    data, info = read_tflite(model)
    header = out / "src" / "dense_sample_input.h"
    x = np.asarray(_embedded(header, "sample_input"), np.uint8).reshape(1, 64)
    assert _embedded(header, "reference_output") == list(np.asarray(host_outputs(data, info, [x])[0]).ravel())
