"""Fast checks of the bench building blocks: no sshd, no TensorFlow."""

from __future__ import annotations

import base64
import dataclasses
import json

import numpy as np
import pytest
import typer

import edgeq
from edgeq.bench import CommandResult, command_error, tail
from edgeq.bench import device_script as ds
from edgeq.bench.command import parse_threads
from edgeq.bench.report import BenchReport, BenchResult, DeviceInfo, compare_outputs, render_table, with_comparisons
from edgeq.bench.ssh import split_host
from edgeq.errors import RemoteError, ToolMissingError, UserError


@pytest.mark.parametrize("spec, expected", [
    ("pi", (None, "pi", None)),
    ("me@pi", ("me", "pi", None)),
    ("me@10.0.0.2:2222", ("me", "10.0.0.2", 2222)),
    ("[fe80::1]:22", (None, "fe80::1", 22)),
    ("fe80::1", (None, "fe80::1", None)),
])
def test_split_host(spec: str, expected: tuple) -> None:
    assert split_host(spec) == expected


def test_split_host_rejects_garbage() -> None:
    with pytest.raises(UserError):
        split_host("pi:ssh")


def test_parse_threads() -> None:
    assert parse_threads("1,2,4") == (1, 2, 4)
    for bad in ("", "0", "a,b", "2,-1"):
        with pytest.raises(typer.BadParameter):
            parse_threads(bad)


def _probe(**changes: object) -> CommandResult:
    data = {"python": "3.11.2", "executable": "/usr/bin/python3", "system": "Linux", "release": "6.1",
            "machine": "aarch64", "cores": 4, "cpu": "Raspberry Pi 4 Model B", "mem_total_bytes": 4 << 30,
            "modules": {"ai_edge_litert": None, "tflite_runtime": "2.14.0", "tensorflow": None, "numpy": "1.26.4"}}
    data.update(changes)
    return CommandResult("probe", ds.PROBE_PREFIX + json.dumps(data) + "\n", "", 0)


def test_probe_parsing_picks_the_available_interpreter() -> None:
    info = DeviceInfo.from_probe("pi", "me@pi:22", "python3", _probe())
    assert (info.interpreter, info.interpreter_version, info.machine) == ("tflite_runtime", "2.14.0", "aarch64")
    assert "Raspberry Pi 4" in info.summary()


@pytest.mark.parametrize("result, needle", [
    (CommandResult("probe", "EDGEQ-NO-PYTHON\n", "", 0), "was not found"),
    (_probe(python="3.7.3"), "too old"),
    (_probe(modules={"numpy": None}), "numpy is not installed"),
    (_probe(modules={"numpy": "1.26", "ai_edge_litert": None}), "no TFLite interpreter"),
])
def test_probe_refusals_say_what_to_install(result: CommandResult, needle: str) -> None:
    with pytest.raises(ToolMissingError) as caught:
        DeviceInfo.from_probe("pi", "me@pi:22", "python3", result)
    assert needle in caught.value.message
    assert caught.value.exit_code == 2 and caught.value.hint


def test_probe_code_runs_here_and_is_python2_syntax_free_of_fstrings() -> None:
    assert "f\"" not in ds.PROBE_CODE and "f'" not in ds.PROBE_CODE
    namespace: dict = {}
    exec(compile(ds.PROBE_CODE, "probe", "exec"), namespace)  # prints one line; must not raise


def test_command_error_shows_command_and_tail() -> None:
    result = CommandResult("python3 x.py", "", "EDGEQ-PROGRESS {}\n" + "\n".join(f"l{i}" for i in range(40)), 3)
    error = command_error("me@pi:22", result)
    assert isinstance(error, RemoteError)
    assert "python3 x.py" in error.message and "status 3" in error.message
    assert "l39" in error.message and "l5\n" not in error.message and "PROGRESS" not in error.message
    assert "signal" in command_error("h", dataclasses.replace(result, exit_status=-1)).message
    assert tail(b"", b"only stdout") == "  | only stdout"


def _encoded(array: np.ndarray) -> dict:
    return {"dtype": array.dtype.name, "shape": list(array.shape),
            "data_b64": base64.b64encode(array.astype(array.dtype.newbyteorder("<")).tobytes()).decode()}


def test_compare_outputs_tolerances() -> None:
    ref = np.array([[10, 200, 3]], dtype=np.uint8)
    assert compare_outputs([ref], [_encoded(ref + np.array([[2, 0, 0]], np.uint8))]) == (True, 2.0)
    assert compare_outputs([ref], [_encoded(ref + np.array([[3, 0, 0]], np.uint8))])[0] is False
    f = np.array([0.5, -2.0], dtype=np.float32)
    assert compare_outputs([f], [_encoded(f + np.float32(1e-4))])[0] is True
    assert compare_outputs([f], [_encoded(f + np.float32(1e-2))])[0] is False
    assert compare_outputs([f], [_encoded(f.reshape(2, 1))]) == (False, None)
    assert compare_outputs([f], [{"sha256": ds.hashlib_sha256(f)}]) == (True, 0.0)


def test_fixed_input_is_deterministic_and_in_range() -> None:
    a = ds.fixed_input([1, 4, 4, 3], np.uint8)
    assert a.dtype == np.uint8 and np.array_equal(a, ds.fixed_input([1, 4, 4, 3], np.uint8))
    assert ds.fixed_input([8], np.int8).min() >= -128
    assert 0.0 <= ds.fixed_input([8], np.float32).min() and ds.fixed_input([8], np.float32).max() <= 1.0


def _result(model: str, quant: str, p50: float, size: int, threads: int = 1) -> BenchResult:
    return BenchResult(
        host="pi", model=model, model_size_bytes=size, quantization=quant, threads=threads, xnnpack=True,
        runs=100, warmup=10, min_ms=p50, mean_ms=p50, p50_ms=p50, p90_ms=p50, p99_ms=p50, max_ms=p50, std_ms=0.0,
        init_ms=1.0, first_inference_ms=1.0, import_ms=100.0, peak_rss_bytes=50 << 20, interpreter="ai_edge_litert",
        interpreter_version="2.3.0", delegate="xnnpack", output_match=True, output_max_abs_diff=0.0)


def test_ratios_and_agreement_are_relative_to_the_float_model() -> None:
    q, f = _result("q.tflite", "int8", 2.0, 250), _result("f.tflite", "float", 8.0, 1000)
    out = with_comparisons([q, f], {id(q): [1, 2, 3, 4], id(f): [1, 2, 3, 0]})
    assert (out[0].latency_ratio, out[0].size_ratio, out[0].agreement) == (0.25, 0.25, 0.75)
    assert out[1].baseline_model == "f.tflite" and out[1].latency_ratio == 1.0


def test_json_envelope_contract() -> None:
    report = BenchReport((_result("[q].tflite", "int8", 2.0, 250),), ())
    doc = json.loads(json.dumps(report.to_dict()))
    assert (doc["schema_version"], doc["kind"], doc["edgeq_version"]) == (1, "bench", edgeq.__version__)
    for key in ("host", "model", "threads", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "init_ms", "peak_rss_bytes",
                "interpreter"):
        assert key in doc["results"][0]
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(render_table(report))
    assert "[q].tflite" in console.export_text()  # brackets are text, not markup


def test_edgeq_bench_stays_callable_after_submodule_imports() -> None:
    import edgeq.bench.ssh  # noqa: F401  (binds the package to edgeq.bench)

    assert callable(edgeq.bench)
    with pytest.raises(UserError):
        edgeq.bench([], hosts=["local"])


def test_command_adapter_passes_options_and_flags_mismatches(monkeypatch: pytest.MonkeyPatch) -> None:
    """The typer adapter alone: typed keyword arguments in, JSON on stdout, warnings on stderr."""
    from typer.testing import CliRunner

    import edgeq.bench.runner as runner
    from edgeq.bench.command import bench_command

    seen: dict = {}
    bad = dataclasses.replace(_result("q.tflite", "int8", 2.0, 250), output_match=False, output_max_abs_diff=7.0)

    def fake_bench(models: list, **options: object) -> BenchReport:
        seen.update(options, models=models)
        return BenchReport((bad,), ())

    monkeypatch.setattr(runner, "bench", fake_bench)
    app = typer.Typer()
    app.command("bench")(bench_command)
    app.command("other")(lambda: None)  # two commands: "bench" stays a subcommand, as in edgeq.cli
    done = CliRunner().invoke(app, ["bench", "q.tflite", "--host", "pi", "-H", "local", "--threads", "1,4",
                                    "--no-xnnpack", "--timeout", "3", "--json"])
    assert done.exit_code == 0, done.output
    assert seen["hosts"] == ["pi", "local"] and seen["threads"] == (1, 4) and seen["xnnpack"] is False
    assert seen["connect_timeout"] == 3.0 and seen["progress"] is True
    assert json.loads(done.stdout)["results"][0]["output_match"] is False
