"""Hostile and broken .tflite files (issue 12): each defect reproduced, each a clean refusal.

Every model here is the tiny conv model of the codegen tests with one field changed
through the schema's object API (or a few bytes of the file), run through the real CLI
with a private ``$TMPDIR``: exit 2, one error line naming the tensor/operator and the
limit, no traceback, nothing allocated from the claimed sizes, nothing left in TMPDIR.
"""

from __future__ import annotations

import faulthandler
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from tests.conftest import Result, assert_clean_error, require_module

TIME = Path("/usr/bin/time")  # GNU time, for the peak RSS of edgeq's own process tree


@pytest.fixture(scope="module")
def tiny() -> Path:
    from tests.codegen_models import tiny_cnn

    return tiny_cnn()


def mutate(seed: Path, dest: Path, change: Callable[[Any], None]) -> Path:
    """``seed`` with ``change(model)`` applied to its ``ModelT``, re-packed to ``dest``."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(seed.read_bytes(), 0)
    change(model)
    builder = flatbuffers.Builder(4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    dest.write_bytes(bytes(builder.Output()))
    return dest


def edgeq(tmp: Path, *args: str | Path, env: dict[str, str] | None = None) -> tuple[Result, int | None]:
    """The real CLI with a private TMPDIR (left empty, checked); also its peak RSS in bytes
    where GNU time is installed (its own process tree only, not pytest's)."""
    tmpdir = tmp / "tmpdir"
    tmpdir.mkdir(exist_ok=True)
    full_env = {**os.environ, "TMPDIR": str(tmpdir), **(env or {})}
    prefix = [str(TIME), "-f", "%M", "-o", str(tmp / "rss")] if TIME.exists() else []
    proc = subprocess.run([*prefix, sys.executable, "-m", "edgeq", *map(str, args)], capture_output=True, text=True,
                          env=full_env, timeout=120)
    assert list(tmpdir.iterdir()) == [], "edgeq left files in TMPDIR"
    rss = int((tmp / "rss").read_text().split()[-1]) * 1024 if prefix else None
    return Result(proc.returncode, proc.stdout, proc.stderr), rss


def _input(model: Any) -> Any:
    sg = model.subgraphs[0]
    return sg.tensors[int(sg.inputs[0])]


# ----------------------------------------------------------------------------- resource bounds
@pytest.mark.parametrize("shape", [[65536, 65536], [1, (1 << 31) - 1, 8, 1]])
def test_huge_input_shape_is_refused_before_anything_is_allocated(tiny: Path, tmp_path: Path, shape: list[int]) -> None:
    """Was: a 4.3 GB zeros file in TMPDIR and 4.2 GB RSS (or > 60 s and 5 GB)."""
    model = mutate(tiny, tmp_path / "big.tflite", lambda m: setattr(_input(m), "shape", shape))
    start = time.monotonic()
    for args in (["inspect", "--json", model], ["emit", model, "-o", tmp_path / "emit"],
                 ["build", model, "--target", "cortex-m", "-o", tmp_path / "build"]):
        r, rss = edgeq(tmp_path, *args)
        assert_clean_error(r, "serving_default_args_0", str(shape), "268,435,456", "EDGEQ_MAX_TENSOR_BYTES")
        assert rss is None or rss < 400 << 20, rss
    assert time.monotonic() - start < 60
    assert not (tmp_path / "emit").exists() and not (tmp_path / "build").exists()


def test_tensor_limits_are_overridable(tiny: Path, tmp_path: Path) -> None:
    """The limits are environment variables: lowered, they refuse the tiny model itself."""
    r, _ = edgeq(tmp_path, "inspect", tiny, env={"EDGEQ_MAX_TENSOR_BYTES": "32"})
    assert_clean_error(r, "more than the limit of 32 bytes per tensor")
    r, _ = edgeq(tmp_path, "inspect", "--no-micro", tiny, env={"EDGEQ_MAX_ACTIVATION_BYTES": "100"})
    assert_clean_error(r, "EDGEQ_MAX_ACTIVATION_BYTES")
    r, _ = edgeq(tmp_path, "inspect", "--no-micro", tiny, env={"EDGEQ_MAX_TENSOR_BYTES": "lots"})
    assert_clean_error(r, "EDGEQ_MAX_TENSOR_BYTES='lots' is not a positive number of bytes")
    r, _ = edgeq(tmp_path, "inspect", "--json", "--no-micro", tiny, env={"EDGEQ_MAX_TENSOR_BYTES": str(1 << 40)})
    assert r.code == 0, r.stderr


def test_the_tflm_worker_bounds_the_zeros_it_makes() -> None:
    """The forked ``emit`` child runs TFLM before the parent's parse: it checks the sizes too."""
    from edgeq.check import _micro_worker

    class Interp:
        def __init__(self, shape: list[int]) -> None:
            self.shape = shape

        def get_input_details(self, i: int) -> dict[str, Any]:
            if i:
                raise IndexError(i)
            return {"shape": np.array(self.shape), "dtype": np.float32}

    with pytest.raises(_micro_worker.TensorTooLarge, match="larger than 268,435,456 bytes"):
        _micro_worker._zeros_from_details(Interp([1, 1 << 20, 1 << 10]))
    with pytest.raises(_micro_worker.TensorTooLarge, match="larger than 1,000 bytes"):
        _micro_worker._zeros_from_details(Interp([4, 8, 8]), 1000)
    assert [z.shape for z in _micro_worker._zeros_from_details(Interp([4, 8, 8]))] == [(4, 8, 8)]


# ----------------------------------------------------------------------------- types and dims
@pytest.mark.parametrize("field,value,needle", [
    ("type", 99, "tensor type 99, which the TFLite schema does not define"),
    ("shape", [1, -8, 8, 1], "negative dimension in its shape [1, -8, 8, 1]"),
    ("shape", [1] * 17, "17 dimensions"),
])
def test_unknown_types_and_bad_dims_are_model_errors(tiny: Path, tmp_path: Path, field: str, value: Any,
                                                     needle: str) -> None:
    """Was: tracebacks in inspect and build (``data type 'type_99' not understood``...)."""
    model = mutate(tiny, tmp_path / "m.tflite", lambda m: setattr(_input(m), field, value))
    for args in (["inspect", model], ["build", model, "--target", "cortex-m", "-o", tmp_path / "b"]):
        r, _ = edgeq(tmp_path, *args)
        assert_clean_error(r, needle)


# ----------------------------------------------------------------------------- indices
def _set_subgraph_inputs(m: Any) -> None:
    m.subgraphs[0].inputs = [-1]


@pytest.mark.parametrize("change,needle", [
    (_set_subgraph_inputs, "input list refers to tensor -1"),
    (lambda m: setattr(m.subgraphs[0], "outputs", [13]), "output list refers to tensor 13, but there are 13"),
    (lambda m: setattr(m.subgraphs[0].operators[1], "outputs", [-1]), "an output of operator 1 (CONV_2D)"),
    (lambda m: setattr(m.subgraphs[0].operators[1], "inputs", [6, 5, 99]), "an input of operator 1 (CONV_2D)"),
    (lambda m: setattr(m.subgraphs[0].tensors[5], "buffer", 999), "refers to buffer 999"),
    (lambda m: setattr(m.subgraphs[0].operators[0], "opcodeIndex", 77), "refers to operator code 77"),
])
def test_out_of_range_indices_are_model_errors(tiny: Path, tmp_path: Path, change: Any, needle: str) -> None:
    """Was: input -1 read as the last tensor (python's negative indexing); now refused."""
    r, _ = edgeq(tmp_path, "inspect", "--json", mutate(tiny, tmp_path / "m.tflite", change))
    assert_clean_error(r, needle)


def test_minus_one_is_an_absent_optional_operator_input(tiny: Path, tmp_path: Path) -> None:
    """The one negative index the schema allows: an omitted optional input (here a bias)."""
    from edgeq.model.tflite_info import parse

    data = mutate(tiny, tmp_path / "optional.tflite",
                  lambda m: setattr(m.subgraphs[0].operators[1], "inputs", [6, 5, -1])).read_bytes()
    assert parse(data).inputs[0].name == "serving_default_args_0:0"


# ----------------------------------------------------------------------------- quantization
@pytest.mark.parametrize("scale", [math.nan, math.inf, 0.0, -1.0])
def test_bad_quantization_scales_are_refused_and_json_stays_json(tiny: Path, tmp_path: Path, scale: float) -> None:
    """Was: emit raised ValueError and ``inspect --json`` printed NaN (not JSON)."""
    model = mutate(tiny, tmp_path / "m.tflite", lambda m: setattr(_input(m).quantization, "scale", [scale]))
    r, _ = edgeq(tmp_path, "inspect", "--json", model)
    assert_clean_error(r, "quantization scale", "must be finite and positive")
    assert r.stdout == ""
    r, _ = edgeq(tmp_path, "emit", model, "-o", tmp_path / "emit")
    assert_clean_error(r, "quantization scale")


def test_inspect_json_is_strict_json(tiny: Path, tmp_path: Path) -> None:
    r, _ = edgeq(tmp_path, "inspect", "--json", tiny)
    assert r.code == 0, r.stderr
    json.loads(r.stdout, parse_constant=lambda c: pytest.fail(f"{c} in inspect --json"))


# ----------------------------------------------------------------------------- codes, strings, counts
def _custom(name: bytes) -> Callable[[Any], None]:
    def change(m: Any) -> None:
        code = m.operatorCodes[0]
        code.builtinCode = code.deprecatedBuiltinCode = 32  # CUSTOM
        code.customCode = name

    return change


@pytest.mark.parametrize("change,needle", [
    (lambda m: setattr(m.operatorCodes[0], "builtinCode", 9999), "builtin operator 9999, which this TFLite schema"),
    (lambda m: setattr(m.operatorCodes[0], "version", 0), "has version 0"),
    (lambda m: setattr(m.subgraphs[0].tensors[0], "name", b"\xff\xfe"), "name of tensor 0 of subgraph 0 is not UTF-8"),
    (_custom(b"\xc3\x28"), "custom code of operator code 0 is not UTF-8"),
])
def test_bad_codes_and_strings_are_model_errors(tiny: Path, tmp_path: Path, change: Any, needle: str) -> None:
    r, _ = edgeq(tmp_path, "inspect", mutate(tiny, tmp_path / "m.tflite", change))
    assert_clean_error(r, needle)


def test_a_vector_claiming_2_31_entries_allocates_nothing(tiny: Path, tmp_path: Path) -> None:
    """The tensors vector's length word set to 2^31-1 in a 3 KB file."""
    from ai_edge_litert import schema_py_generated as schema

    data = bytearray(tiny.read_bytes())
    sg = schema.Model.GetRootAs(bytes(data), 0).Subgraphs(0)
    vector = sg._tab.Vector(sg._tab.Offset(4))  # field 0 of SubGraph: tensors
    data[vector - 4 : vector] = ((1 << 31) - 1).to_bytes(4, "little")
    (tmp_path / "m.tflite").write_bytes(bytes(data))
    r, rss = edgeq(tmp_path, "inspect", tmp_path / "m.tflite")
    assert_clean_error(r, "claims 2,147,483,647 entries")
    assert rss is None or rss < 300 << 20, rss


def test_tables_shared_by_reference_are_refused(tiny: Path, tmp_path: Path) -> None:
    """One subgraph referenced 20,000 times (the object API would unpack each: ~10^6 objects)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    m = schema.ModelT.InitFromPackedBuf(tiny.read_bytes(), 0)
    b = flatbuffers.Builder(1 << 17)
    sg = m.subgraphs[0].Pack(b)
    codes, bufs = [c.Pack(b) for c in m.operatorCodes], [x.Pack(b) for x in m.buffers]

    def vector(start: Callable[[Any, int], None], items: list[int]) -> int:
        start(b, len(items))
        for item in reversed(items):
            b.PrependUOffsetTRelative(item)
        return int(b.EndVector())

    subgraphs = vector(schema.ModelStartSubgraphsVector, [sg] * 20000)
    codes_v, bufs_v = vector(schema.ModelStartOperatorCodesVector, codes), vector(schema.ModelStartBuffersVector, bufs)
    schema.ModelStart(b)
    schema.ModelAddVersion(b, 3)
    schema.ModelAddOperatorCodes(b, codes_v)
    schema.ModelAddSubgraphs(b, subgraphs)
    schema.ModelAddBuffers(b, bufs_v)
    b.Finish(schema.ModelEnd(b), file_identifier=b"TFL3")
    (tmp_path / "m.tflite").write_bytes(bytes(b.Output()))
    start = time.monotonic()
    r, rss = edgeq(tmp_path, "inspect", tmp_path / "m.tflite")
    assert_clean_error(r, "refers to more tables than a", "shared by reference")
    assert time.monotonic() - start < 30
    assert rss is None or rss < 300 << 20, rss


def test_control_flow_that_calls_itself_is_refused(tiny: Path, tmp_path: Path) -> None:
    """A WHILE without options calls subgraph 0, its own: TFLite would recurse forever."""
    def to_while(m: Any) -> None:
        m.operatorCodes[3].builtinCode = m.operatorCodes[3].deprecatedBuiltinCode = 119  # WHILE
        m.subgraphs[0].operators[3].builtinOptionsType = 0
        m.subgraphs[0].operators[3].builtinOptions = None

    r, _ = edgeq(tmp_path, "inspect", mutate(tiny, tmp_path / "m.tflite", to_while))
    assert_clean_error(r, "subgraph 0 calls itself")


# ----------------------------------------------------------------------------- crash isolation
def test_a_litert_crash_is_a_model_error_naming_the_signal(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A model that kills LiteRT (here: a stand-in job that segfaults) ends in a ModelError."""
    from edgeq.check import isolate, validation
    from edgeq.errors import ModelError
    from edgeq.model.tflite_info import read_tflite

    def crash(data: bytes) -> str:
        os.write(2, f"{isolate.STAGE_PREFIX}loading the model\n".encode())
        faulthandler.disable()  # pytest's handler would print this child's stack on the terminal
        os.kill(os.getpid(), signal.SIGSEGV)
        return ""

    data, info = read_tflite(tiny)
    monkeypatch.setattr(validation, "litert_smoke", crash)
    monkeypatch.setattr(isolate, "fork_is_safe", lambda: True)  # this process imported TF: the fork is only here
    with pytest.raises(ModelError, match="^LiteRT crashed with SIGSEGV while loading the model: the file is malformed"):
        validation.ReferenceRunner(data, info, [], [])
    assert info.sha256 not in validation._litert_ok


def test_litert_check_spawns_when_fork_is_unsafe(tiny: Path, tmp_path: Path) -> None:
    """With TensorFlow imported (as here) or another thread running, no fork: a new interpreter."""
    from edgeq.check import isolate, validation
    from edgeq.errors import ModelError
    from edgeq.model.tflite_info import read_tflite

    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert not isolate.fork_is_safe()
        data, info = read_tflite(tiny)
        validation.check_litert(data, "spawn-check-" + info.sha256)
        broken = mutate(tiny, tmp_path / "m.tflite", lambda m: setattr(m.subgraphs[0].tensors[5], "shape", [4, 3, 3]))
        data, info = read_tflite(broken)
        with pytest.raises(ModelError, match="LiteRT cannot load the model .allocating its tensors.: .*conv"):
            validation.check_litert(data, info.sha256)
    finally:
        stop.set()
        other.join()


def test_a_tflm_crash_names_the_signal(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require_module("tflite_micro")
    from edgeq.check import _micro_worker
    from edgeq.errors import ModelError
    from edgeq.check.micro import MicroRun
    from edgeq.model.tflite_info import read_tflite

    def crash(model: bytes, req: dict[str, Any]) -> dict[str, Any]:
        faulthandler.disable()
        os.kill(os.getpid(), signal.SIGABRT)
        return {}

    data, info = read_tflite(tiny)
    monkeypatch.setattr(_micro_worker, "measure_model", crash)
    with pytest.raises(ModelError, match="TensorFlow Lite Micro crashed with SIGABRT"):
        MicroRun.forked_report(data).result(60, info=info)


def test_a_build_of_a_model_litert_rejects_is_clean(tiny: Path, tmp_path: Path) -> None:
    """A conv filter of rank 3 passes the parse; LiteRT (in its child) and TFLM refuse it."""
    model = mutate(tiny, tmp_path / "m.tflite", lambda m: setattr(m.subgraphs[0].tensors[5], "shape", [4, 3, 3]))
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "ev.npz", x=rng.random((4, 8, 8, 1), dtype=np.float32), y=np.arange(4) % 3)
    r, _ = edgeq(tmp_path, "build", model, "-e", tmp_path / "ev.npz", "-o", tmp_path / "b")
    assert_clean_error(r, "conv")
    assert not (tmp_path / "b").exists()


def test_names_from_the_model_cannot_drive_the_terminal(tiny: Path, tmp_path: Path) -> None:
    """Escape sequences in tensor and custom op names are dropped; rich markup stays text."""
    def rename(m: Any) -> None:
        _input(m).name = b"\x1b]0;pwned\x07[red]x[/red]"
        _custom(b"\x1b[2JOp[bold]")(m)

    r, _ = edgeq(tmp_path, "inspect", "--no-micro", mutate(tiny, tmp_path / "m.tflite", rename))
    assert r.code == 0, r.stderr
    assert "\x1b" not in r.stdout and "[red]x[/red]" in r.stdout and "Op[bold] (custom)" in r.stdout


def test_an_output_without_a_batch_dimension_validates(tiny: Path, tmp_path: Path) -> None:
    """An output of shape [3] (here the bias constant): both runtimes' outputs are stacked
    per sample the same way, so the build compares them instead of failing on shapes."""
    model = mutate(tiny, tmp_path / "m.tflite", lambda m: setattr(m.subgraphs[0], "outputs", [12, 2]))
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "ev.npz", x=rng.random((4, 8, 8, 1), dtype=np.float32), y=np.arange(4) % 3)
    r, _ = edgeq(tmp_path, "build", model, "-e", tmp_path / "ev.npz", "-o", tmp_path / "b", "--json")
    assert r.code == 0, r.stderr
    assert r.json["validation"]["tflm_compared_values"] == 4 * (3 + 3), r.json["validation"]


def test_the_tflm_outputs_written_to_tmpdir_are_bounded(tiny: Path, tmp_path: Path) -> None:
    """A model whose output is MBs, times every evaluation sample, must not fill $TMPDIR:
    the worker writes the outputs of as many samples as fit its budget (the real protocol,
    with a budget of 4 bytes here), and the comparison uses the samples both runtimes ran."""
    require_module("tflite_micro")
    from edgeq.check import _micro_worker
    from edgeq.check.validation import tflm_agreement

    np.savez(tmp_path / "in.npz", x0=np.zeros((5, 8, 8, 1), np.uint8))
    request = {"model": str(tiny), "bisect": False, "inputs": str(tmp_path / "in.npz"),
               "outputs": str(tmp_path / "out.npz"), "n_outputs": 1, "max_output_bytes": 4}
    proc = subprocess.run([sys.executable, _micro_worker.__file__], input=json.dumps(request), capture_output=True,
                          text=True, timeout=120)
    assert json.loads(proc.stdout)["samples"] == 1, proc.stderr
    with np.load(tmp_path / "out.npz") as z:
        assert z["y0"].shape == (1, 3)
        agree = tflm_agreement([np.zeros((5, 3), np.uint8)], [z["y0"]])
    assert agree.compared_values == 3
