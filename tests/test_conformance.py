"""Conformance: MLPerf-Tiny-style architectures in every model format, PTQ and QAT, end to end.

Models are built once per session (tests/real_models.py: random weights, 40 random samples)
and run in-process through the library (``pipeline.build`` / ``pipeline.quantize``); the
subprocess tests at the end check what a user sees (one readable line, no traceback).
Every case either builds (full-integer, TFLM runs it, figures in the report) or refuses with
one readable reason that names the layer/op and a fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edgeq.errors import EdgeqError
from tests.conftest import assert_clean_error, run_edgeq
from tests.real_models import FORMATS, SPECS, Built

#: (architecture, format) → the reason a refusal must give; everything else must build.
REFUSED = {
    ("lstm", "sm_fixed"): ("While loop", "unroll=True"),
    ("lstm", "sm_dynamic"): ("While loop", "unroll=True"),
}
#: A few builds for the Cortex-M4 target (its own arena rule and budget), the rest generic cortex-m.
M4 = {("resnet8", "h5"), ("ds_cnn", "sm_fixed"), ("autoencoder", "keras"), ("conv1d", "sm_dynamic")}
SAMPLES = 16  # calibration samples (of 32 after the 20 % hold-out): plenty to prove conversion

_results: dict[tuple[str, str], Any] = {}


@pytest.fixture(scope="session")
def real(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Built]:
    from tests.real_models import build_all

    return build_all(tmp_path_factory.mktemp("real_models"))


def _build(real: dict[str, Built], arch: str, fmt: str, out: Path) -> Any:
    """PTQ build; the data is picked by array name for two architectures (``file.npz:key``)."""
    import edgeq.pipeline as pipeline

    b = real[arch]
    calibration: str = str(b.data)
    if arch in ("resnet8", "conv1d"):
        calibration = f"{b.named}:specs"
        eval_data = f"{b.named}:specs,labels"
        return pipeline.build(b.models[fmt], target="cortex-m4" if (arch, fmt) in M4 else "cortex-m", out=out,
                              calibration=calibration, eval_data=eval_data, samples=SAMPLES)
    return pipeline.build(b.models[fmt], target="cortex-m4" if (arch, fmt) in M4 else "cortex-m", out=out,
                          calibration=calibration, samples=SAMPLES)


def _check_report(report: Any, task: str, *, float_allowed: bool = False) -> None:
    from edgeq.report import render_markdown

    doc = report.to_dict()
    v = doc["validation"]
    if float_allowed and not doc["quantization"]["fully_integer"]:  # never silently: the build says so
        assert any("not full-integer" in w for w in doc["warnings"]), doc["warnings"]
    else:
        assert doc["quantization"]["fully_integer"] is True
    assert doc["micro"]["supported"] is True and doc["micro"]["arena_bytes"]
    assert v["samples"] > 0 and v["rmse"] is not None and v["tflm_match_rate"] is not None
    md = render_markdown(report)
    if task == "regression":
        assert doc["task"] == "regression"
        assert v["agreement"] is None and "top-1 agreement" not in md and "RMSE" in md
    else:
        assert v["agreement"] is not None and "top-1 agreement" in md


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("arch", [s.name for s in SPECS])
def test_ptq_build(real: dict[str, Built], arch: str, fmt: str, tmp_path: Path) -> None:
    spec = real[arch].spec
    if (arch, fmt) in REFUSED:
        with pytest.raises(EdgeqError) as info:
            _build(real, arch, fmt, tmp_path / "out")
        for needle in REFUSED[(arch, fmt)]:
            assert needle in str(info.value), str(info.value)
        assert not (tmp_path / "out").exists()
        return
    report = _build(real, arch, fmt, tmp_path / "out")
    _results[(arch, fmt)] = report
    # SavedModels too: regression targets in the eval data say so. The Keras 3 LSTM (rebuilt
    # unrolled) converts with its gate kernels dequantized to a float SPLIT: known, warned about.
    # Seen for the .h5 LSTM too in a full run (not alone): which the converter does varies; the warning is the contract.
    _check_report(report, spec.task, float_allowed=(arch, fmt) in (("lstm", "keras"), ("lstm", "h5")))
    if spec.task == "classification" and len(spec.classes) == 1:
        assert report.validation["quantized_accuracy"] is not None  # labels reached validation
    assert (tmp_path / "out" / "report.md").is_file()
    if fmt == "sm_fixed":  # batch 1 signature, fed one sample at a time: the same figures as its .keras twin
        twin = _results.get((arch, "keras")) or _build(real, arch, "keras", tmp_path / "twin")
        for key in ("samples", "float_accuracy", "quantized_accuracy", "agreement"):
            assert report.validation[key] == twin.validation[key], key
        for key in ("rmse", "max_abs_error", "cosine"):
            assert report.validation[key] == pytest.approx(twin.validation[key], rel=1e-3, abs=1e-6), key


# ----------------------------------------------------------------------------- QAT
QAT_CASES = [(s.name, "keras", "data") for s in SPECS] + [(s.name, "h5", "onehot") for s in SPECS]


@pytest.mark.parametrize(("arch", "fmt", "labels"), QAT_CASES)
def test_qat_one_epoch(real: dict[str, Built], arch: str, fmt: str, labels: str, tmp_path: Path) -> None:
    """--qat --epochs 1: integer labels on the .keras file, one-hot on the .h5 (compiled loss kept)."""
    import edgeq.pipeline as pipeline
    from edgeq.quantization.qat import QatConfig

    b = real[arch]
    train = b.data if labels == "data" else b.onehot
    qat = QatConfig(train, epochs=1, batch_size=16)
    if arch == "lstm":  # tfmot cannot fake-quantize LSTM cells; the converted model would keep float ops
        with pytest.raises(EdgeqError, match=r"recurrent layer\(s\) 'lstm\w*' \(LSTM\)") as info:
            pipeline.quantize(b.models[fmt], output=tmp_path / "m.tflite", calibration=str(b.data), samples=SAMPLES,
                              qat=qat)
        assert "without --qat" in str(info.value) and not (tmp_path / "m.tflite").exists()
        return
    if fmt == "keras":
        report = pipeline.build(b.models[fmt], target="cortex-m", out=tmp_path / "out", calibration=str(b.data),
                                samples=SAMPLES, qat=qat)
    else:
        report = pipeline.quantize(b.models[fmt], output=tmp_path / "m.tflite", calibration=str(b.data),
                                   samples=SAMPLES, qat=qat)
    _check_report(report, b.spec.task)
    qa = report.to_dict()["qat"]
    assert qa["epochs"] == 1 and len(qa["epoch_losses"]) == 1 and qa["loss_source"] == "compiled model"
    assert len(qa["labels"]) == len(b.spec.classes)
    assert qa["task"] == b.spec.task
    if b.spec.task == "regression":
        assert qa["qat_rmse"] is not None and qa["ptq_rmse"] is not None and qa["qat_accuracy"] is None
    else:
        assert qa["qat_agreement"] is not None and qa["ptq_agreement"] is not None
    sparse = "sparse" in str(b.spec.loss)
    if b.spec.task == "classification" and len(b.spec.classes) == 1:
        expected = {("data", False): "class indices → one-hot", ("onehot", True): "one-hot labels → class indices",
                    ("data", True): "class indices for", ("onehot", False): "one-hot labels for"}[(labels, sparse)]
        assert expected in qa["labels"][0], qa["labels"]
    if arch in ("conv_relu_bn", "autoencoder"):  # BN after an activation / after Dense: fake-quantized output
        assert qa["layers"]["output_quantized"], qa["layers"]


# ----------------------------------------------------------------------------- what a user sees
def test_cli_refusals_are_one_readable_line(real: dict[str, Built], tmp_path: Path) -> None:
    b = real["conv_relu_bn"]
    r = run_edgeq("build", b.models["sm_fixed"], "--qat", "--train-data", b.data, "-c", b.data, "--out", tmp_path / "o")
    assert_clean_error(r, "--qat")
    r = run_edgeq("build", b.models["keras"], "-c", f"{b.named}:nope", "--out", tmp_path / "o")
    assert_clean_error(r, "'nope'", "labels, specs, unused")
    assert not (tmp_path / "o").exists()
    lstm = real["lstm"]
    r = run_edgeq("quantize", lstm.models["sm_dynamic"], "-o", tmp_path / "l.tflite", "-c", lstm.data)
    assert_clean_error(r, "While loop", "unroll=True")


def test_cli_qat_with_key_syntax(real: dict[str, Built], tmp_path: Path) -> None:
    """The whole CLI on one model: --train-data/--calibration/--eval-data by array name, report side by side."""
    b = real["conv_relu_bn"]
    out = tmp_path / "out"
    r = run_edgeq("build", b.models["keras"], "--qat", "--epochs", "1", "--train-data", f"{b.named}:specs,labels",
                  "-c", f"{b.named}:specs", "-e", f"{b.named}:specs,labels", "-n", str(SAMPLES), "--out", out)
    assert r.code == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert "accuracy float / PTQ / QAT" in r.stdout and "class indices → one-hot" in r.stdout
    assert "accuracy float / PTQ / QAT" in (out / "report.md").read_text()
