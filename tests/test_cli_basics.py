"""CLI start-up, help, the bundled example, and inspect."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import run_edgeq


def test_help_does_not_import_tensorflow() -> None:
    code = (
        "import sys\n"
        "from edgeq.cli.app import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'tf_keras', 'tensorflow_model_optimization') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr
    assert "build" in proc.stdout and "quantize" in proc.stdout and "inspect" in proc.stdout
    assert elapsed < 3.0  # generous for loaded CI machines; it is ~0.3 s here


def test_every_command_has_help() -> None:
    for cmd in ("build", "quantize", "inspect"):
        r = run_edgeq(cmd, "--help")
        assert r.code == 0 and "--json" in r.stdout, (cmd, r.stderr)


def test_version() -> None:
    import edgeq

    r = run_edgeq("--version")
    assert r.code == 0 and edgeq.__version__ in r.stdout


def test_inspect_json(example_tflite: Path) -> None:
    r = run_edgeq("inspect", example_tflite, "--json")
    assert r.code == 0, r.stderr
    doc = r.json
    assert doc["fully_integer"] is True
    assert [t["dtype"] for t in doc["inputs"]] == ["uint8"]
    assert doc["inputs"][0]["shape"] == [1, 8, 8, 1] and doc["inputs"][0]["scale"] > 0
    names = {o["name"] for o in doc["ops"]}
    assert {"CONV_2D", "FULLY_CONNECTED", "SOFTMAX"} <= names
    assert all(o["version"] >= 1 for o in doc["ops"])
    assert doc["micro"]["supported"] is True and doc["micro"]["arena_bytes"] > 0
    assert any(t["per_channel"] > 1 for t in doc["tensors"])  # conv weights are per-channel


def test_inspect_table(example_tflite: Path) -> None:
    r = run_edgeq("inspect", example_tflite)
    assert r.code == 0, r.stderr
    assert "CONV_2D" in r.stdout and "arena" in r.stdout and "fully integer: yes" in r.stdout


def test_tflm_runtime_present_in_ci() -> None:
    """edgeq degrades without tflite-micro (non-x86 hosts); CI must have it so the real check runs."""
    from tests.conftest import require_module

    require_module("tflite_micro")


def test_inspect_reports_a_model_tflm_refuses(tmp_path: Path) -> None:
    """inspect is a report: a model TFLM cannot run (float16) is described, not an error."""
    from edgeq.cli.example import example_files

    model, _, ev = example_files()
    f16 = tmp_path / "f16.tflite"
    r = run_edgeq("quantize", model, "--mode", "float16", "-o", f16, "-e", ev)
    assert r.code == 0, r.stderr
    assert "do not run on TensorFlow Lite Micro" in r.stderr
    r = run_edgeq("inspect", f16, "--json")
    assert r.code == 0, r.stderr
    micro = r.json["micro"]
    assert micro["supported"] is False and "DEQUANTIZE" in micro["error"]
    r = run_edgeq("inspect", f16)
    assert r.code == 0 and "TFLite Micro: no" in r.stdout
