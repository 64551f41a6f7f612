"""uint8 I/O by a flatbuffer edit (issue 14, part 3): ``edgeq.quantization.uint8_io.with_uint8_io``.

The reference is TF's own converter: every model here is converted twice by edgeq's real
conversion (``edgeq.quantization.convert.convert``) from the same representative data, once with int8
and once with uint8 I/O. The edited int8 model must have the uint8 model's interface and
give byte-identical outputs for random uint8 inputs under LiteRT and under the TFLM
Python runtime. Byte-identical is the right bar, not a tolerance: the two conversions
share every internal tensor and scale, and the added QUANTIZE ops requantize with an
effective scale of exactly 1 (same scale, zero point +128), which both runtimes compute
exactly. Malformed and unsupported models are made from those by one field changed
through the schema's object API.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from edgeq.errors import ModelError
from edgeq.quantization.uint8_io import OFFLINE_PLAN, QUANTIZE_VERSION, repack, with_uint8_io
from tests.conftest import run_edgeq

N_SAMPLES = 12


# ---------------------------------------------------------------- models (built once per module)

def _cnn(keras: Any) -> Any:
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1), name="image")
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    h = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(h)
    h = keras.layers.Flatten()(h)
    return keras.Model(inp, keras.layers.Dense(5, activation="softmax", name="probs")(h))


def _multi_io(keras: Any) -> Any:
    keras.utils.set_random_seed(1)
    a, b = keras.Input((4,), name="alpha"), keras.Input((3,), name="beta")
    h = keras.layers.Concatenate()([keras.layers.Dense(8, activation="relu")(a), keras.layers.Dense(8, activation="relu")(b)])
    return keras.Model([a, b], [keras.layers.Dense(3, activation="softmax", name="cls")(h), keras.layers.Dense(2, name="reg")(h)])


def _conv1d(keras: Any) -> Any:
    keras.utils.set_random_seed(2)
    inp = keras.Input((16, 2), name="signal")
    h = keras.layers.Conv1D(6, 3, activation="relu")(inp)
    h = keras.layers.GlobalAveragePooling1D()(h)
    return keras.Model(inp, keras.layers.Dense(4, name="score")(h))


def _cond_savedmodel(path: Path) -> Path:
    """A tf.Module with a data-dependent tf.cond: an IF op and two branch subgraphs."""
    import tensorflow as tf

    class Branchy(tf.Module):
        def __init__(self) -> None:
            r = np.random.default_rng(3)
            self.w = tf.constant(r.normal(size=(4, 4)).astype(np.float32))
            self.v = tf.constant(r.normal(size=(4, 4)).astype(np.float32))

        @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32, name="x")])
        def __call__(self, x: Any) -> Any:
            return {"y": tf.cond(tf.reduce_sum(x) > 2.0, lambda: tf.nn.relu(tf.matmul(x, self.w)),
                                 lambda: tf.nn.relu(tf.matmul(x, self.v)))}

    mod = Branchy()
    tf.saved_model.save(mod, str(path), signatures=mod.__call__.get_concrete_function())
    return path


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, bytes]]:
    """name -> {"int8", "uint8", "edited"} .tflite bytes (and "float32" for the CNN)."""
    import keras

    from edgeq.model.calibration import Samples
    from edgeq.model.loading import load_model
    from edgeq.quantization.convert import QuantSettings, convert

    root = tmp_path_factory.mktemp("uint8_io")
    paths = {}
    for name, build in (("cnn", _cnn), ("multi_io", _multi_io), ("conv1d", _conv1d)):
        build(keras).save(root / f"{name}.keras")
        paths[name] = root / f"{name}.keras"
    paths["cond"] = _cond_savedmodel(root / "cond")
    out: dict[str, dict[str, bytes]] = {}
    for name, path in paths.items():
        model = load_model(path)
        rng = np.random.default_rng(10)
        calib = Samples(tuple(rng.random((40, *s.shape[1:]), dtype=np.float32) for s in model.inputs))
        out[name] = {io: convert(model, QuantSettings("int8", io=io), calib) for io in ("int8", "uint8")}
        out[name]["edited"] = with_uint8_io(out[name]["int8"])
        if name == "cnn":
            out[name]["float32"] = convert(model, QuantSettings("float32"), None)
    return out


MODELS = ("cnn", "multi_io", "conv1d", "cond")


# ---------------------------------------------------------------- helpers

def unpack(data: bytes) -> Any:
    from ai_edge_litert import schema_py_generated as schema

    return schema.ModelT.InitFromPackedBuf(data, 0)


def pack(model: Any) -> bytes:
    import flatbuffers

    builder = flatbuffers.Builder(4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def edit(data: bytes, change: Callable[[Any], None]) -> bytes:
    model = unpack(data)
    change(model)
    return pack(model)


def same_tree(a: Any, b: Any, path: str = "model") -> None:
    """Two unpacked flatbuffer objects are equal field by field (numpy arrays by value)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        assert np.array_equal(np.asarray(a), np.asarray(b)), path
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            same_tree(x, y, f"{path}[{i}]")
    elif hasattr(a, "__dict__"):
        assert type(a).__name__ == type(b).__name__, path
        for key in vars(a):
            same_tree(getattr(a, key), getattr(b, key), f"{path}.{key}")
    else:
        assert a == b, (path, a, b)


def uint8_inputs(data: bytes, seed: int = 0) -> list[list[np.ndarray]]:
    """N_SAMPLES sets of random uint8 inputs in subgraph-input order."""
    from ai_edge_litert.interpreter import Interpreter

    details = Interpreter(model_content=data).get_input_details()
    rng = np.random.default_rng(seed)
    return [[rng.integers(0, 256, d["shape"], dtype=np.uint8) for d in details] for _ in range(N_SAMPLES)]


def litert_run(data: bytes, xs: list[np.ndarray]) -> list[np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=data)
    it.allocate_tensors()
    for d, x in zip(it.get_input_details(), xs):
        it.set_tensor(d["index"], x)
    it.invoke()
    return [it.get_tensor(d["index"]) for d in it.get_output_details()]


def tflm_run(data: bytes, xs: list[np.ndarray]) -> list[np.ndarray]:
    from tflite_micro.python.tflite_micro import runtime

    it = runtime.Interpreter.from_bytes(data)
    for i, x in enumerate(xs):
        it.set_input(x, i)
    it.invoke()
    n = len(unpack(data).subgraphs[0].outputs)
    return [np.array(it.get_output(i)) for i in range(n)]


def interface(data: bytes) -> list[tuple[str, str, str, tuple[int, ...], tuple[float, ...], tuple[int, ...]]]:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=data)
    rows = []
    for role, details in (("in", it.get_input_details()), ("out", it.get_output_details())):
        for d in details:
            q = d["quantization_parameters"]
            rows.append((role, d["name"], np.dtype(d["dtype"]).name, tuple(d["shape"]),
                         tuple(q["scales"].tolist()), tuple(q["zero_points"].tolist())))
    return rows


def data_alignments(data: bytes) -> list[int]:
    """Where each non-empty buffer's data starts, modulo 16."""
    m = unpack(data)
    base = np.frombuffer(data, np.uint8).ctypes.data
    return [(b.data.ctypes.data - base) % 16 for b in m.buffers if b.data is not None and len(b.data)]


# ---------------------------------------------------------------- equivalence with TF's uint8 conversion

@pytest.mark.parametrize("name", MODELS)
def test_interface_equals_tfs_uint8_conversion(converted: dict[str, dict[str, bytes]], name: str) -> None:
    c = converted[name]
    assert interface(c["edited"]) == interface(c["uint8"])
    assert {row[2] for row in interface(c["edited"])} == {"uint8"}


@pytest.mark.parametrize("name", MODELS)
def test_outputs_byte_identical_under_litert_and_tflm(converted: dict[str, dict[str, bytes]], name: str) -> None:
    c = converted[name]
    for xs in uint8_inputs(c["uint8"]):
        want = litert_run(c["uint8"], xs)
        got = litert_run(c["edited"], xs)
        assert [g.dtype for g in got] == [np.uint8] * len(want)
        assert all(np.array_equal(g, w) for g, w in zip(got, want)), (name, got, want)
        # The same, independent of TF's uint8 model: the int8 model fed x - 128 gives y - 128.
        shifted = litert_run(c["int8"], [(x.astype(np.int16) - 128).astype(np.int8) for x in xs])
        assert all(np.array_equal(g, (s.astype(np.int16) + 128).astype(np.uint8)) for g, s in zip(got, shifted))
        want_micro = tflm_run(c["uint8"], xs)
        got_micro = tflm_run(c["edited"], xs)
        assert all(np.array_equal(g, w) for g, w in zip(got_micro, want_micro)), (name, got_micro, want_micro)


@pytest.mark.parametrize("name", MODELS)
def test_structure_is_what_tf_adds(converted: dict[str, dict[str, bytes]], name: str) -> None:
    """Same op and tensor counts as TF's uint8 model, QUANTIZE v1, old indices untouched."""
    i8, u8, ed = (unpack(converted[name][k]) for k in ("int8", "uint8", "edited"))
    main, ref, before = ed.subgraphs[0], u8.subgraphs[0], i8.subgraphs[0]
    assert len(main.operators) == len(ref.operators) and len(main.tensors) == len(ref.tensors)
    assert len(ed.buffers) == len(u8.buffers)
    n_in, n_out = len(before.inputs), len(before.outputs)
    assert len(main.tensors) == len(before.tensors) + n_in + n_out
    quantize = [i for i, oc in enumerate(ed.operatorCodes) if max(oc.builtinCode, oc.deprecatedBuiltinCode) == 114]
    assert [ed.operatorCodes[i].version for i in quantize] == [QUANTIZE_VERSION]
    ops = main.operators
    assert all(op.opcodeIndex in quantize for op in ops[:n_in] + ops[len(ops) - n_out:])
    # Existing tensors keep index, buffer and data; only the interface names moved.
    for old, new in zip(before.tensors, main.tensors):
        assert (old.buffer, old.type, list(old.shape)) == (new.buffer, new.type, list(new.shape))
    for k, i in enumerate(before.inputs):
        assert main.tensors[i].name == before.tensors[i].name + b"_int8"
        assert main.tensors[main.inputs[k]].name == before.tensors[i].name
    for other_before, other_after in zip(i8.subgraphs[1:], ed.subgraphs[1:]):
        same_tree(other_before, other_after, "other subgraph")
    assert len(ed.subgraphs) == (3 if name == "cond" else 1)


@pytest.mark.parametrize("name", ("cnn", "multi_io"))
def test_signature_runner_keeps_the_names(converted: dict[str, dict[str, bytes]], name: str) -> None:
    from ai_edge_litert.interpreter import Interpreter

    c = converted[name]
    edited, reference = Interpreter(model_content=c["edited"]), Interpreter(model_content=c["uint8"])
    assert edited.get_signature_list() == reference.get_signature_list()
    keys = reference.get_signature_list()["serving_default"]["inputs"]
    rng = np.random.default_rng(5)
    for _ in range(4):
        feed = {}
        for key in keys:
            shape = reference.get_signature_runner().get_input_details()[key]["shape"]
            feed[key] = rng.integers(0, 256, shape, dtype=np.uint8)
        got, want = edited.get_signature_runner()(**feed), reference.get_signature_runner()(**feed)
        assert got.keys() == want.keys()
        assert all(got[k].dtype == np.uint8 and np.array_equal(got[k], want[k]) for k in want)


def test_edgeq_parser_and_inspect_accept_the_result(converted: dict[str, dict[str, bytes]], tmp_path: Path) -> None:
    from edgeq.model.tflite_info import parse

    info = parse(converted["multi_io"]["edited"])
    assert [t.dtype for t in info.inputs + info.outputs] == ["UINT8"] * 4
    assert info.fully_integer and ("QUANTIZE", QUANTIZE_VERSION) in {(o.name, o.version) for o in info.ops}
    ref = parse(converted["multi_io"]["uint8"])
    assert [(t.name, t.scale, t.zero_point) for t in info.inputs] == [(t.name, t.scale, t.zero_point) for t in ref.inputs]
    reports = {}
    for kind in ("edited", "uint8"):
        path = tmp_path / f"{kind}.tflite"
        path.write_bytes(converted["cnn"][kind])
        r = run_edgeq("inspect", path, "--json")
        assert r.code == 0 and "Traceback" not in r.stderr, r.stderr
        reports[kind] = r.json
    edited, tf_uint8 = reports["edited"], reports["uint8"]
    assert [t["dtype"] for t in edited["inputs"] + edited["outputs"]] == ["uint8", "uint8"]
    assert edited["fully_integer"] and edited["micro"]["supported"] and not edited["micro"]["error"]
    assert edited["micro"]["arena_bytes"] == tf_uint8["micro"]["arena_bytes"]  # TFLM plans both alike
    text = run_edgeq("inspect", tmp_path / "edited.tflite")
    assert text.code == 0 and "uint8" in text.stdout and "Traceback" not in text.stderr, text.stderr


# ---------------------------------------------------------------- properties

def test_deterministic_across_processes(converted: dict[str, dict[str, bytes]], tmp_path: Path) -> None:
    data = converted["multi_io"]["int8"]
    assert with_uint8_io(data) == with_uint8_io(data) == converted["multi_io"]["edited"]
    src = tmp_path / "in.tflite"
    src.write_bytes(data)
    code = ("import sys, hashlib; from edgeq.quantization.uint8_io import with_uint8_io; "
            "print(hashlib.sha256(with_uint8_io(open(sys.argv[1], 'rb').read())).hexdigest())")
    for seed in ("1", "2"):
        proc = subprocess.run([sys.executable, "-c", code, str(src)], capture_output=True, text=True, timeout=60,
                              env={**os.environ, "PYTHONHASHSEED": seed})
        assert proc.stdout.strip() == hashlib.sha256(converted["multi_io"]["edited"]).hexdigest(), proc.stderr


def test_already_uint8_and_no_flags_return_the_same_bytes(converted: dict[str, dict[str, bytes]]) -> None:
    c = converted["cnn"]
    assert with_uint8_io(c["uint8"]) == c["uint8"]
    assert with_uint8_io(c["edited"]) == c["edited"]
    assert with_uint8_io(c["int8"], inputs=False, outputs=False) == c["int8"]
    assert with_uint8_io(c["float32"], inputs=False, outputs=False) == c["float32"]
    # Nothing to edit, nothing to refuse: a second entry point passes through untouched.
    two_entries = edit(converted["multi_io"]["uint8"], _second_entry_point)
    assert with_uint8_io(two_entries) == two_entries


def test_inputs_or_outputs_only(converted: dict[str, dict[str, bytes]]) -> None:
    c = converted["multi_io"]
    only_out = with_uint8_io(c["int8"], inputs=False)
    only_in = with_uint8_io(c["int8"], outputs=False)
    assert [row[2] for row in interface(only_out)] == ["int8", "int8", "uint8", "uint8"]
    assert [row[2] for row in interface(only_in)] == ["uint8", "uint8", "int8", "int8"]
    # Finishing the job on a half-edited model gives the same model as doing it at once.
    assert interface(with_uint8_io(only_in)) == interface(c["edited"])
    for xs in uint8_inputs(c["uint8"])[:4]:
        signed = [(x.astype(np.int16) - 128).astype(np.int8) for x in xs]
        assert all(np.array_equal(a, b) for a, b in zip(litert_run(only_out, signed), litert_run(c["edited"], xs)))


def test_round_trip_of_an_unmodified_model(converted: dict[str, dict[str, bytes]]) -> None:
    """The object API's pack of TF's output is the very same file; of a 16-byte aligned one,
    the same tree with the alignment kept."""
    for name in MODELS:
        data = converted[name]["int8"]
        assert repack(data) == data, name
        # A measured fact (TF 2.21, flatbuffers 25.12) the module docstring states: if this
        # breaks after an upgrade, the converter's layout changed; the tree checks still hold.
        assert pack(unpack(data)) == data, name
    aligned = realign16(converted["cnn"]["int8"])
    assert set(data_alignments(aligned)) == {0} and aligned != converted["cnn"]["int8"]
    same_tree(unpack(aligned), unpack(converted["cnn"]["int8"]))
    assert repack(aligned) == aligned
    edited = with_uint8_io(aligned)
    assert set(data_alignments(edited)) == {0}
    assert set(data_alignments(pack(unpack(aligned)))) != {0}  # what the plain object API would do
    for xs in uint8_inputs(edited)[:4]:
        assert all(np.array_equal(a, b) for a, b in zip(tflm_run(edited, xs), tflm_run(converted["cnn"]["edited"], xs)))


def realign16(data: bytes) -> bytes:
    """``data`` with every buffer's data 16-byte aligned, as TFLM's realigning tool writes it."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    class Aligned(schema.BufferT):  # type: ignore[misc]
        def Pack(self, builder: Any) -> int:  # noqa: N802
            if self.data is not None and len(self.data):
                builder.Prep(16, len(self.data))
            return int(super().Pack(builder))

    model = unpack(data)
    for i, b in enumerate(model.buffers):
        model.buffers[i] = Aligned()
        model.buffers[i].__dict__.update(vars(b))
    builder = flatbuffers.Builder(4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def test_metadata_is_preserved(converted: dict[str, dict[str, bytes]]) -> None:
    for name in MODELS:
        before, after = unpack(converted[name]["int8"]), unpack(converted[name]["edited"])
        assert [(m.name, m.buffer) for m in before.metadata] == [(m.name, m.buffer) for m in after.metadata]
        assert {b"min_runtime_version", b"CONVERSION_METADATA"} <= {m.name for m in after.metadata}
        for m in before.metadata:
            assert bytes(before.buffers[m.buffer].data) == bytes(after.buffers[m.buffer].data)
        for i, b in enumerate(before.buffers):  # every old buffer, constant data included
            same_tree(b, after.buffers[i], f"{name} buffer {i}")


def with_offline_plan(data: bytes) -> bytes:
    """``data`` plus a real OfflineMemoryAllocation plan: each activation its own 16-byte
    aligned region (no reuse, so trivially valid), constants -1."""
    from ai_edge_litert import schema_py_generated as schema

    sizes = {schema.TensorType.INT8: 1, schema.TensorType.UINT8: 1, schema.TensorType.INT32: 4,
             schema.TensorType.FLOAT32: 4, schema.TensorType.BOOL: 1}

    def add(model: Any) -> None:
        offsets, at = [], 0
        for sg in model.subgraphs:
            for t in sg.tensors:
                buf = model.buffers[t.buffer].data
                if buf is not None and len(buf):
                    offsets.append(-1)
                    continue
                offsets.append(at)
                at += -(-int(np.prod(t.shape)) * sizes[t.type] // 16) * 16
        plan = schema.BufferT()
        plan.data = np.array([1, len(model.subgraphs), len(offsets), *offsets], "<i4").view(np.uint8)
        model.buffers.append(plan)
        entry = schema.MetadataT()
        entry.name, entry.buffer = OFFLINE_PLAN, len(model.buffers) - 1
        model.metadata.append(entry)

    return edit(data, add)


def plan_words(data: bytes) -> np.ndarray:
    m = unpack(data)
    (entry,) = [e for e in m.metadata if e.name == OFFLINE_PLAN]
    return np.asarray(m.buffers[entry.buffer].data).view("<i4")


@pytest.mark.parametrize("name", ("cnn", "cond"))
def test_offline_memory_plan_gets_online_entries(converted: dict[str, dict[str, bytes]], name: str) -> None:
    c = converted[name]
    planned = with_offline_plan(c["int8"])
    edited = with_uint8_io(planned)
    before, after = plan_words(planned), plan_words(edited)
    n0 = len(unpack(planned).subgraphs[0].tensors)
    added = len(unpack(edited).subgraphs[0].tensors) - n0
    assert list(after[:3]) == [before[0], before[1], before[2] + added]
    assert list(after[3:]) == list(before[3:3 + n0]) + [-1] * added + list(before[3 + n0:])
    for xs in uint8_inputs(c["uint8"])[:4]:
        assert all(np.array_equal(a, b) for a, b in zip(tflm_run(edited, xs), tflm_run(c["uint8"], xs)))
    if name == "cnn":  # the plan is really used: a stale one (no -1 entries) makes TFLM refuse the model
        stale = edit(edited, lambda m: setattr(m.buffers[m.metadata[-1].buffer], "data", before.view(np.uint8)))
        with pytest.raises(RuntimeError):
            tflm_run(stale, uint8_inputs(c["uint8"])[0])


# ---------------------------------------------------------------- refusals

def _schema() -> Any:
    from ai_edge_litert import schema_py_generated as schema

    return schema


def _set_input_type(type_name: str) -> Callable[[Any], None]:
    def change(m: Any) -> None:
        m.subgraphs[0].tensors[m.subgraphs[0].inputs[0]].type = getattr(_schema().TensorType, type_name)
    return change


def _per_channel(m: Any) -> None:
    q = m.subgraphs[0].tensors[m.subgraphs[0].inputs[0]].quantization  # alpha: shape [1, 4]
    q.scale, q.zeroPoint, q.quantizedDimension = [0.1, 0.2, 0.3, 0.4], [0, 0, 0, 0], 1


def _no_quantization(m: Any) -> None:
    m.subgraphs[0].tensors[m.subgraphs[0].inputs[0]].quantization = None


def _passthrough(m: Any) -> None:
    m.subgraphs[0].outputs = list(m.subgraphs[0].outputs) + [int(m.subgraphs[0].inputs[0])]


def _second_entry_point(m: Any) -> None:
    import copy

    m.subgraphs.append(copy.deepcopy(m.subgraphs[0]))
    sig = copy.deepcopy(m.signatureDefs[0])
    sig.signatureKey, sig.subgraphIndex = b"second", 1
    m.signatureDefs.append(sig)


def _main_called(m: Any) -> None:
    """A second subgraph holding an IF whose else-branch is subgraph 0."""
    import copy

    schema = _schema()
    other = copy.deepcopy(m.subgraphs[0])
    oc = schema.OperatorCodeT()
    oc.builtinCode = oc.deprecatedBuiltinCode = schema.BuiltinOperator.IF
    oc.version = 1
    m.operatorCodes.append(oc)
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = len(m.operatorCodes) - 1, list(other.inputs), list(other.outputs)
    op.builtinOptionsType, op.builtinOptions = schema.BuiltinOptions.IfOptions, schema.IfOptionsT()
    op.builtinOptions.thenSubgraphIndex, op.builtinOptions.elseSubgraphIndex = 1, 0
    other.operators = [op]
    m.subgraphs.append(other)


def _unknown_options(m: Any) -> None:
    m.subgraphs[0].operators[0].builtinOptionsType = 250


def _external_layout(m: Any) -> None:
    m.buffers[1].offset, m.buffers[1].size = 1 << 31, 16


def _bad_plan(m: Any) -> None:
    schema = _schema()
    plan = schema.BufferT()
    plan.data = np.array([1, 1, 3, -1, -1, -1], "<i4").view(np.uint8)  # 3 offsets, more tensors
    m.buffers.append(plan)
    entry = schema.MetadataT()
    entry.name, entry.buffer = OFFLINE_PLAN, len(m.buffers) - 1
    m.metadata.append(entry)


REFUSALS = {
    "float model": ("cnn", "float32", None, "FLOAT32, not int8"),
    "int16 input": ("multi_io", "int8", _set_input_type("INT16"), "INT16, not int8"),
    "per-channel input": ("multi_io", "int8", _per_channel, "per channel"),
    "unquantized int8": ("multi_io", "int8", _no_quantization, "without a scale"),
    "input is an output": ("multi_io", "int8", _passthrough, "both an input and an output"),
    "second signature": ("multi_io", "int8", _second_entry_point, "runs subgraph 1"),
    "main subgraph called": ("multi_io", "int8", _main_called, "also called by a control-flow op"),
    "unknown options": ("cnn", "int8", _unknown_options, "options this TFLite schema cannot copy"),
    ">2 GiB layout": ("cnn", "int8", _external_layout, "the >2 GiB layout"),
    "stale memory plan": ("cnn", "int8", _bad_plan, "OfflineMemoryAllocation"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_refusals_are_one_line_model_errors(converted: dict[str, dict[str, bytes]], case: str) -> None:
    name, kind, change, needle = REFUSALS[case]
    data = converted[name][kind] if change is None else edit(converted[name][kind], change)
    with pytest.raises(ModelError) as info:
        with_uint8_io(data)
    err = info.value
    assert needle in err.message and "\n" not in err.message and err.hint, (case, err.message, err.hint)


@pytest.mark.parametrize("data", [b"", b"not a model at all", b"\x00" * 4 + b"TFL3" + b"\xff" * 40], ids=["empty", "text", "garbage"])
def test_not_a_model(data: bytes) -> None:
    with pytest.raises(ModelError):
        with_uint8_io(data)


def test_truncated_model(converted: dict[str, dict[str, bytes]]) -> None:
    data = converted["cnn"]["int8"]
    for cut in (24, len(data) // 3, len(data) // 2):
        with pytest.raises(ModelError):
            with_uint8_io(data[:cut])


def test_size_limit(converted: dict[str, dict[str, bytes]], monkeypatch: pytest.MonkeyPatch) -> None:
    import edgeq.quantization.uint8_io as uint8_io

    monkeypatch.setattr(uint8_io, "MAX_BYTES", 1000)  # instead of allocating 2 GiB
    with pytest.raises(ModelError, match="up to 2 GiB"):
        with_uint8_io(converted["cnn"]["int8"])
