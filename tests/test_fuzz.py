"""Fuzz: mutated .tflite models through inspect, emit and build end cleanly.

Models are files from strangers. The corpus is generated here, with fixed seeds, from two
tiny real models (a conv and a dense int8 model, converted in a fixture): structural
mutations through the schema's object API (``ai_edge_litert.schema_py_generated.ModelT``:
shapes, tensor types, buffer/tensor/opcode indices, quantization, builtin codes and
versions, builtin options, removed subgraphs/buffers/operators, names, signatures),
re-packed with ``flatbuffers.Builder``, plus byte flips and truncations of the file.

Each batch runs the library entry points the CLI uses (``edgeq.inspect`` with the TFLM
run, ``edgeq.emit``, and for a sample ``edgeq.build`` for cortex-m with evaluation data,
so LiteRT runs too) in a subprocess with a private ``$TMPDIR``: a segfault shows as a
signal, a hang as silence past the deadline, a leak as a file left there. Every case must
end in success or an ``EdgeqError`` with exit code 2, with no traceback.

``bench/fuzz_campaign.py`` reuses ``mutants`` (other seeds, more of them) through the CLI.
"""

from __future__ import annotations

import json
import math
import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
INTS = [-(1 << 31), -1, 0, 1, 2, 3, 7, 127, 255, 256, 65535, 65536, (1 << 31) - 1]
FLOATS = [math.nan, math.inf, -math.inf, 0.0, -1.0, 1e-45, 1e38, -0.0]
CASE_TIMEOUT = 60.0  # no single model may take longer (inspect, emit and build included)


# ----------------------------------------------------------------------------- seed models
def _convert(model: Any, shape: tuple[int, ...], path: Path) -> Path:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    export = path.with_suffix(".savedmodel")
    model.export(str(export), input_signature=[tf.TensorSpec([1, *shape], tf.float32)], verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(export))
    rng = np.random.default_rng(0)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([rng.random((1, *shape), dtype=np.float32)] for _ in range(16))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    path.write_bytes(converter.convert())
    return path


def seed_models(root: Path) -> dict[str, tuple[Path, Path]]:
    """``{"conv": (tflite, eval.npz), "dense": (...)}``: a tiny conv model (uint8 I/O, shared
    with the codegen tests) and a tiny dense int8 model, each with evaluation data."""
    import keras

    from tests.codegen_models import tiny_cnn

    keras.utils.set_random_seed(3)
    dense = keras.Sequential([keras.Input((16,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(4)])
    seeds = {"conv": (tiny_cnn(), (8, 8, 1)), "dense": (_convert(dense, (16,), root / "dense.tflite"), (16,))}
    out = {}
    rng = np.random.default_rng(1)
    for name, (path, shape) in seeds.items():
        ev = root / f"{name}_eval.npz"
        np.savez(ev, x=rng.random((6, *shape), dtype=np.float32), y=rng.integers(0, 3, 6))
        out[name] = (Path(path), ev)
    return out


# ----------------------------------------------------------------------------- mutators
def _tensors(m: Any) -> list[Any]:
    return [t for sg in m.subgraphs or [] for t in sg.tensors or []]


def _ops(m: Any) -> list[Any]:
    return [op for sg in m.subgraphs or [] for op in sg.operators or []]


def _pick_index(rng: random.Random, n: int) -> int:
    return rng.choice([-1, n, n + 7, (1 << 31) - 1, rng.randrange(max(n, 1))])


def m_shape(m: Any, rng: random.Random) -> str:
    t = rng.choice(_tensors(m))
    shape = [int(d) for d in (t.shape if t.shape is not None else [])] or [1]
    pos = rng.randrange(len(shape))
    kind = rng.choice(["negative", "zero", "huge", "rank", "drop", "grow"])
    if kind == "negative":
        shape[pos] = rng.choice([-1, -8, -(1 << 31)])
    elif kind == "zero":
        shape[pos] = 0
    elif kind == "huge":
        shape[pos] = rng.choice([65536, 1 << 20, (1 << 31) - 1])
        if rng.random() < 0.5:
            shape = [65536, 65536]
    elif kind == "rank":
        shape = [1] * rng.choice([0, 5, 17, 40])
    elif kind == "drop":
        shape = shape[:-1]
    else:
        shape[pos] *= rng.choice([2, 3, 10])
    t.shape = shape
    return f"shape {shape}"


def m_type(m: Any, rng: random.Random) -> str:
    t = rng.choice(_tensors(m))
    t.type = rng.choice([-1, 23, 24, 99, 127, *range(0, 23)])
    return f"type {t.type}"


def m_buffer(m: Any, rng: random.Random) -> str:
    t = rng.choice(_tensors(m))
    t.buffer = rng.choice([len(m.buffers), len(m.buffers) + 9, (1 << 32) - 1, rng.randrange(len(m.buffers))])
    return f"buffer {t.buffer}"


def m_io(m: Any, rng: random.Random) -> str:
    sg = rng.choice(m.subgraphs)
    key = rng.choice(["inputs", "outputs"])
    values = [int(i) for i in getattr(sg, key)]
    n = len(sg.tensors or [])
    kind = rng.choice(["index", "index", "empty", "twice"])
    if kind == "index":
        values[rng.randrange(len(values))] = _pick_index(rng, n)
    elif kind == "empty":
        values = []
    else:
        values = values + values
    setattr(sg, key, values)
    return f"subgraph {key} {values}"


def m_op_tensors(m: Any, rng: random.Random) -> str:
    sg = rng.choice(m.subgraphs)
    op = rng.choice(sg.operators)
    key = rng.choice(["inputs", "outputs", "intermediates"])
    values = [int(i) for i in (getattr(op, key) if getattr(op, key) is not None else [])]
    n = len(sg.tensors or [])
    kind = rng.choice(["index", "index", "swap", "drop", "add"])
    if kind == "index" and values:
        values[rng.randrange(len(values))] = _pick_index(rng, n)
    elif kind == "swap" and values:
        values[rng.randrange(len(values))] = rng.randrange(n)
    elif kind == "drop" and values:
        values.pop(rng.randrange(len(values)))
    else:
        values.append(rng.choice([-1, rng.randrange(n)]))
    setattr(op, key, values)
    return f"op {key} {values}"


def m_opcode_index(m: Any, rng: random.Random) -> str:
    op = rng.choice(_ops(m))
    n = len(m.operatorCodes)
    op.opcodeIndex = rng.choice([n, n + 3, (1 << 32) - 1, rng.randrange(n)])
    return f"opcode index {op.opcodeIndex}"


def m_quant(m: Any, rng: random.Random) -> str:
    t = rng.choice([t for t in _tensors(m) if t.quantization is not None and t.quantization.scale is not None])
    q = t.quantization
    scale, zp = [float(s) for s in q.scale], [int(z) for z in q.zeroPoint]
    kind = rng.choice(["scale", "scale", "zero point", "dimension", "lengths"])
    if kind == "scale":
        scale[rng.randrange(len(scale))] = rng.choice(FLOATS)
    elif kind == "zero point":
        zp[rng.randrange(len(zp))] = rng.choice([-(1 << 40), -129, 128, 256, 1 << 40])
    elif kind == "dimension":
        q.quantizedDimension = rng.choice([-1, 3, 9, (1 << 31) - 1])
    else:
        scale, zp = rng.choice([(scale * 3, zp), (scale, []), (scale, zp + zp)])
    q.scale, q.zeroPoint = scale, zp
    return f"quantization {kind}"


def m_opcode(m: Any, rng: random.Random) -> str:
    code = rng.choice(m.operatorCodes)
    kind = rng.choice(["builtin", "deprecated", "version", "custom"])
    if kind == "builtin":
        code.builtinCode = rng.choice([-1, 210, 300, (1 << 31) - 1, rng.randrange(210)])
    elif kind == "deprecated":
        code.deprecatedBuiltinCode = rng.choice([-128, -1, 126, 127, rng.randrange(127)])
    elif kind == "version":
        code.version = rng.choice([0, -1, 99, (1 << 31) - 1])
    else:
        code.builtinCode = code.deprecatedBuiltinCode = 32
        code.customCode = rng.choice([b"", b"\xff\xfe", b"FancyOp", b"\x1b]0;pwned\x07"])
    return f"opcode {kind}"


def m_remove(m: Any, rng: random.Random) -> str:
    kind = rng.choice(["subgraphs", "buffers", "operators", "opcodes", "tensors", "signatures"])
    if kind == "subgraphs":
        m.subgraphs = rng.choice([[], m.subgraphs[1:], m.subgraphs * 2])
    elif kind == "buffers":
        m.buffers = m.buffers[: rng.randrange(len(m.buffers))]
    elif kind == "operators":
        sg = rng.choice(m.subgraphs)
        sg.operators.pop(rng.randrange(len(sg.operators)))
    elif kind == "opcodes":
        m.operatorCodes = m.operatorCodes[:-1]
    elif kind == "tensors":
        sg = rng.choice(m.subgraphs)
        sg.tensors = sg.tensors[:-1]
    else:
        m.signatureDefs = None
    return f"remove {kind}"


def m_options(m: Any, rng: random.Random) -> str:
    ops = [op for op in _ops(m) if op.builtinOptions is not None]
    op = rng.choice(ops or _ops(m))
    if op.builtinOptions is None or rng.random() < 0.25:
        op.builtinOptionsType = rng.randrange(1, 128)
        return f"options type {op.builtinOptionsType}"
    fields = [k for k, v in vars(op.builtinOptions).items() if isinstance(v, (int, bool)) and not isinstance(v, float)]
    if not fields:
        op.builtinOptions = None
        return "options dropped"
    key = rng.choice(fields)
    setattr(op.builtinOptions, key, rng.choice([-1, 0, 2, 5, 127, 255, 65535, (1 << 31) - 1]))
    return f"option {key}"


def m_buffer_data(m: Any, rng: random.Random) -> str:
    b = rng.choice([b for b in m.buffers if b.data is not None and len(b.data)] or m.buffers)
    kind = rng.choice(["truncate", "empty", "grow", "external"])
    data = bytes(b.data) if b.data is not None else b""
    if kind == "truncate":
        b.data = list(data[: len(data) // 2])
    elif kind == "empty":
        b.data = None
    elif kind == "grow":
        b.data = list(data * 3 + b"\x7f" * 5)
    else:
        b.offset, b.size = rng.choice([(1 << 40, 16), (64, 1 << 40), (2, 0)])
    return f"buffer data {kind}"


def m_names(m: Any, rng: random.Random) -> str:
    t = rng.choice(_tensors(m))
    t.name = rng.choice([b"\xff\xfe\xfd", b"\x1b[2J\x1b]0;title\x07", b"[red]x[/red]", b"", b"a" * 5000])
    return "tensor name"


def m_signature(m: Any, rng: random.Random) -> str:
    sigs = m.signatureDefs or []
    if not sigs:
        m.version = rng.choice([0, 2, 4, (1 << 32) - 1])
        return f"version {m.version}"
    sig = rng.choice(sigs)
    if rng.random() < 0.3:
        sig.subgraphIndex = rng.choice([1, 5, (1 << 32) - 1])
        return "signature subgraph"
    entry = rng.choice([*(sig.inputs or []), *(sig.outputs or [])])
    entry.tensorIndex = rng.choice([len(m.subgraphs[0].tensors), 999, (1 << 32) - 1])
    return "signature tensor"


# In-range mutations: they pass the parse and reach the kernels of LiteRT and TFLM.
def m_rewire(m: Any, rng: random.Random) -> str:
    sg = rng.choice(m.subgraphs)
    op = rng.choice(sg.operators)
    key = rng.choice(["inputs", "outputs"])
    values = [int(i) for i in getattr(op, key)]
    values[rng.randrange(len(values))] = rng.randrange(len(sg.tensors))
    setattr(op, key, values)
    return f"rewire {key}"


def m_small_shape(m: Any, rng: random.Random) -> str:
    t = rng.choice(_tensors(m))
    t.shape = [rng.choice([1, 1, 2, 3, 4, 8, 16]) for _ in range(rng.randint(1, 5))]
    return f"small shape {t.shape}"


def m_valid_type(m: Any, rng: random.Random) -> str:
    t = rng.choice(_tensors(m))
    t.type = rng.choice([0, 1, 2, 3, 4, 5, 6, 7, 9, 17])
    return f"valid type {t.type}"


def m_valid_builtin(m: Any, rng: random.Random) -> str:
    code = rng.choice(m.operatorCodes)
    code.builtinCode = rng.randrange(1, 210)
    code.deprecatedBuiltinCode = min(code.builtinCode, 127)
    return f"builtin {code.builtinCode}"


MUTATORS: tuple[Callable[[Any, random.Random], str], ...] = (
    m_shape, m_type, m_buffer, m_io, m_op_tensors, m_opcode_index, m_quant, m_opcode, m_remove, m_options,
    m_buffer_data, m_names, m_signature, m_rewire, m_small_shape, m_valid_type, m_valid_builtin, m_options,
)


def _pack(model: Any, size_hint: int) -> bytes:
    import flatbuffers

    builder = flatbuffers.Builder(size_hint + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def structural(seed: bytes, rng: random.Random, *, stack: int = 3) -> tuple[bytes, str]:
    """One to ``stack`` schema-level mutations of ``seed``, re-packed (retried until one packs)."""
    from ai_edge_litert import schema_py_generated as schema

    for _ in range(1000):
        model = schema.ModelT.InitFromPackedBuf(seed, 0)
        done = []
        try:
            for _ in range(rng.randint(1, stack)):
                done.append(rng.choice(MUTATORS)(model, rng))
            return _pack(model, len(seed)), "; ".join(done)
        except Exception:  # not applicable to this model, or not representable in its field: another one
            continue
    raise AssertionError("no mutation applies to this seed model")


def bytewise(seed: bytes, rng: random.Random) -> tuple[bytes, str]:
    """Byte flips, 32-bit word smashes (offsets and lengths), truncations."""
    data = bytearray(seed)
    kind = rng.choice(["flip", "flip", "word", "truncate", "splice"])
    if kind == "flip":
        for _ in range(rng.choice([1, 2, 8, 32])):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif kind == "word":
        at = rng.randrange(8, len(data) - 4) & ~3
        data[at : at + 4] = rng.choice([0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 0, len(data)]).to_bytes(4, "little")
    elif kind == "truncate":
        del data[rng.randrange(16, len(data)) :]
    else:
        at = rng.randrange(8, len(data))
        data[at:at] = bytes(rng.randrange(256) for _ in range(rng.choice([1, 4, 64])))
    return bytes(data), kind


def mutants(seed: bytes, count: int, rng_seed: int, *, bytes_share: float = 0.25) -> Iterator[tuple[bytes, str]]:
    """``count`` deterministic mutants of ``seed``: structural, and ``bytes_share`` byte-level."""
    rng = random.Random(rng_seed)
    for _ in range(count):
        yield bytewise(seed, rng) if rng.random() < bytes_share else structural(seed, rng)


# ----------------------------------------------------------------------------- the batch runner
def _run_case(case: dict[str, Any], out: Path) -> Iterator[tuple[str, str, str]]:
    """(step, status, detail) for each step of one case; status is ok/refused/exit-N/internal."""
    import edgeq
    from edgeq.errors import EdgeqError

    steps: list[tuple[str, Callable[[], Any]]] = [
        ("inspect", lambda: json.dumps(edgeq.inspect(case["path"], micro=True), allow_nan=False)),
        ("emit", lambda: edgeq.emit(case["path"], out=out / "emit")),
    ]
    if case.get("build"):
        steps.append(("build", lambda: edgeq.build(case["path"], target="cortex-m", out=out / "build",
                                                   eval_data=case.get("eval"), force=True)))
    for step, call in steps:
        print(f"START {case['name']} {step}", flush=True)
        try:
            call()
            yield step, "ok", ""
        except EdgeqError as exc:
            yield step, ("refused" if exc.exit_code == 2 else f"exit-{exc.exit_code}"), exc.message[:300]
        except Exception as exc:  # a bug: the parent sees the traceback on stderr
            import traceback

            traceback.print_exc()
            yield step, "internal", f"{type(exc).__name__}: {exc}"[:300]


def runner_main(manifest: Path) -> None:
    """``python -m tests.test_fuzz MANIFEST``: run the cases, one JSON line per step."""
    spec = json.loads(manifest.read_text())
    out_root = Path(spec["out"])
    for case in spec["cases"]:
        for step, status, detail in _run_case(case, out_root / case["name"]):
            print("END " + json.dumps({"case": case["name"], "step": step, "status": status, "detail": detail}),
                  flush=True)


def run_batch(cases: list[dict[str, Any]], work: Path, *, case_timeout: float = CASE_TIMEOUT) -> dict[str, Any]:
    """Run ``cases`` in subprocesses with a private TMPDIR; restart after a crash or hang.

    Returns ``{"results": [...], "failures": [...], "stderr": text, "leftovers": [...]}``.
    """
    tmp = work / "tmpdir"
    tmp.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TMPDIR": str(tmp), "TF_CPP_MIN_LOG_LEVEL": "3", "OPENBLAS_NUM_THREADS": "1"}
    results: list[dict[str, Any]] = []
    failures: list[str] = []
    stderr_all = []
    pending = list(cases)
    while pending:
        manifest = work / "manifest.json"
        manifest.write_text(json.dumps({"out": str(work / "out"), "cases": pending}))
        with (work / "stderr.txt").open("wb") as err:
            proc = subprocess.Popen([sys.executable, "-m", "tests.test_fuzz", str(manifest)], cwd=ROOT, env=env,
                                    stdout=subprocess.PIPE, stderr=err, start_new_session=True)
        assert proc.stdout is not None
        current, buf, deadline = None, b"", time.monotonic() + case_timeout
        done_names: set[str] = set()
        while True:
            ready = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))[0]
            if not ready:
                os.killpg(proc.pid, signal.SIGKILL)
                failures.append(f"{current}: hang (no progress within {case_timeout:.0f} s)")
                break
            chunk = os.read(proc.stdout.fileno(), 1 << 16)
            if not chunk:
                break
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                text = line.decode("utf-8", "replace")
                if text.startswith("START "):
                    current, deadline = text[6:], time.monotonic() + case_timeout
                elif text.startswith("END "):
                    r = json.loads(text[4:])
                    results.append(r)
                    done_names.add(r["case"])
                    if r["status"] not in ("ok", "refused"):
                        failures.append(f"{r['case']} {r['step']}: {r['status']} {r['detail']}")
        code = proc.wait()
        stderr_all.append((work / "stderr.txt").read_text("utf-8", "replace"))
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # a worker the runner left (there must be none)
        except ProcessLookupError:
            pass
        if code != 0 and current is not None:
            failures.append(f"{current}: runner ended with {code} (a signal when negative)")
        crashed = current.split()[0] if current else None
        pending = [c for c in pending if c["name"] not in done_names and c["name"] != crashed] if code else []
    leftovers = sorted(p.name for p in tmp.iterdir())
    return {"results": results, "failures": failures, "stderr": "\n".join(stderr_all), "leftovers": leftovers}


# ----------------------------------------------------------------------------- the test
@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    return seed_models(tmp_path_factory.mktemp("fuzz-seeds"))


def _corpus(seeds: dict[str, tuple[Path, Path]], root: Path, per_seed: int, build_every: int) -> list[dict[str, Any]]:
    cases = []
    for k, (name, (path, ev)) in enumerate(sorted(seeds.items())):
        seed = path.read_bytes()
        for i, (data, what) in enumerate(mutants(seed, per_seed, rng_seed=1000 + k)):
            case_path = root / f"{name}-{i:03d}.tflite"
            case_path.write_bytes(data)
            cases.append({"name": case_path.stem, "path": str(case_path), "what": what, "eval": str(ev),
                          "build": i % build_every == 0})
    return cases


def test_mutated_models_end_cleanly(seeds: dict[str, tuple[Path, Path]], tmp_path: Path) -> None:
    """~300 mutants: inspect + emit each, build every 12th; all exit 0 or a clean 2."""
    pytest.importorskip("tflite_micro")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    cases = _corpus(seeds, corpus, per_seed=150, build_every=12)
    report = run_batch(cases, tmp_path / "run")
    results = report["results"]
    by_status: dict[str, int] = {}
    for r in results:
        by_status[f"{r['step']}:{r['status']}"] = by_status.get(f"{r['step']}:{r['status']}", 0) + 1
    assert not report["failures"], (report["failures"][:10], by_status)
    assert "Traceback" not in report["stderr"], report["stderr"][-3000:]
    assert report["leftovers"] == [], report["leftovers"]
    builds = sum(1 for c in cases if c["build"])
    assert len(results) == 2 * len(cases) + builds, by_status
    # The corpus means something: many mutants are refused, and some still run end to end.
    assert by_status.get("inspect:refused", 0) > len(cases) // 4, by_status
    assert by_status.get("inspect:ok", 0) > len(cases) // 10, by_status
    assert by_status.get("build:ok", 0) + by_status.get("build:refused", 0) == builds


if __name__ == "__main__":
    runner_main(Path(sys.argv[1]))
