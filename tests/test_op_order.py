"""The operator-order search (issue 15, optional part): a branchy model whose converter order
keeps a branch's output alive through the other branch's peak runs in a better order, with
the same output bytes on TFLM, a smaller host arena, and firmware that matches on QEMU.

The model: two branches from one input, a narrow one (one 32-channel conv) and a wide one
(expands to 64 channels, shrinks to 4). The converter (TF 2.21, as edgeq calls it) orders
independent branches by layer name, not by memory: with these names it runs the narrow
branch first, so its 32-channel output is alive through the wide branch's 64-channel peak
(26,624 B); the wide branch first peaks at 19,456 B. (Name the narrow layer ``z_narrow``
and the converter's order is already the better one.)
"""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_edgeq


def _branchy(K):  # type: ignore[no-untyped-def]
    inp = K.Input((16, 16, 8))
    narrow = K.layers.Conv2D(32, 3, padding="same", activation="relu", name="narrow")(inp)
    wide = K.layers.Conv2D(64, 3, padding="same", activation="relu", name="wide_expand")(inp)
    wide = K.layers.Conv2D(4, 1, activation="relu", name="wide_project")(wide)
    x = K.layers.Concatenate()([narrow, wide])
    x = K.layers.GlobalAveragePooling2D()(x)
    return K.Model(inp, K.layers.Dense(4, activation="softmax")(x))


@pytest.fixture(scope="module")
def branchy(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import keras

    keras.utils.set_random_seed(0)
    root = tmp_path_factory.mktemp("op-order")
    _branchy(keras).save(root / "branchy.keras")
    rng = np.random.default_rng(0)
    np.save(root / "calib.npy", rng.random((32, 16, 16, 8), dtype=np.float32))
    return {"root": root, "model": root / "branchy.keras", "calib": root / "calib.npy"}


@pytest.fixture(scope="module")
def converted(branchy: dict[str, Path]) -> bytes:
    out = branchy["root"] / "q.tflite"
    r = run_edgeq("quantize", branchy["model"], "-o", out, "-c", branchy["calib"], "--io", "int8",
                  "--memory-plan", "off")
    assert r.code == 0, r.stderr
    return out.read_bytes()


def _topological(graph, order) -> bool:  # type: ignore[no-untyped-def]
    produced = {t for t in graph.inputs}
    for j in order:
        op = graph.ops[j]
        if any(t >= 0 and graph.tensor(t).kind == "activation" and t not in produced for t in op.inputs):
            return False
        produced.update(op.outputs)
    return True


def test_the_search_finds_the_lower_peak_and_agrees_with_tflms_lifetimes(converted: bytes) -> None:
    from edgeq.check.memory_profile import profile
    from edgeq.check.tensor_lifetimes import read_graph
    from edgeq.firmware.op_order import best_order, reorder

    graph = read_graph(converted)
    found = best_order(graph)
    assert found.original_peak == profile(converted).lower_bound == 26_624  # the replica of TFLM's scopes
    assert found.exact and found.changed and found.peak == 19_456 and _topological(graph, found.order)
    again = reorder(converted, found.order)
    assert profile(again).lower_bound == found.peak  # what the search predicted is what TFLM's lifetimes give
    assert best_order(read_graph(again)).order == tuple(range(len(graph.ops)))  # nothing left to gain
    with pytest.raises(ValueError):
        reorder(converted, (0, 0, 1, 2, 3, 4, 5))


def test_the_reordered_model_computes_the_same_bytes_in_a_smaller_tflm_arena(converted: bytes) -> None:
    from edgeq.check.micro import MicroRun
    from edgeq.firmware.memory_plan import probe_inputs
    from edgeq.firmware.op_order import best_order, choose_order, reorder
    from edgeq.check.tensor_lifetimes import read_graph
    from edgeq.model.tflite_info import parse

    probe = probe_inputs(converted, 4)
    base = MicroRun(converted, parse(converted), probe).result()
    again = reorder(converted, best_order(read_graph(converted)).order)
    run = MicroRun(again, parse(again), probe).result()
    assert [a.tobytes() for a in run.outputs] == [a.tobytes() for a in base.outputs]
    assert run.arena_bytes is not None and base.arena_bytes is not None and run.arena_bytes < base.arena_bytes
    report = choose_order(converted, probe, base.outputs, base.arena_bytes)
    assert report.kept and report.arena_with is not None and report.arena_with < base.arena_bytes
    assert report.measured is not None and report.measured.arena_tail_bytes
    # an arena already below what any order reaches: the order is dropped, the model kept as it was
    assert not choose_order(converted, probe, base.outputs, 16).kept
    wrong = [np.zeros_like(a) + 1 for a in base.outputs]
    dropped = choose_order(converted, probe, wrong, base.arena_bytes)
    assert not dropped.kept and "different output bytes" in dropped.reason


def test_the_exact_search_matches_every_topological_order_by_brute_force() -> None:
    from edgeq.check.tensor_lifetimes import Graph, Op, Tensor
    from edgeq.firmware.op_order import best_order

    rng = random.Random(3)
    for _ in range(60):
        n = rng.randint(3, 7)
        tensors = [Tensor(0, 0, "in", "INT8", (16,), 16 * rng.randint(1, 4), "activation")]
        ops = []
        for j in range(n):
            ins = tuple(sorted(rng.sample(range(len(tensors)), rng.randint(1, min(2, len(tensors))))))
            tensors.append(Tensor(0, len(tensors), f"t{j}", "INT8", (16,), 16 * rng.randint(1, 6), "activation"))
            ops.append(Op(0, j, "ADD", ins, (len(tensors) - 1,), j + 1, j + 1))
        consumed = {t for op in ops for t in op.inputs}
        outputs = tuple(t.index for t in tensors[1:] if t.index not in consumed) or (len(tensors) - 1,)
        graph = Graph(tuple(tensors), tuple(ops), (0,), (0,), outputs, 0, n + 1)
        found = best_order(graph, scratch={})

        def peak(order) -> int:  # type: ignore[no-untyped-def]
            pos = {j: k + 1 for k, j in enumerate(order)}
            first = {0: 0, **{ops[j].outputs[0]: pos[j] for j in order}}
            last = dict(first)
            for j in order:
                for t in ops[j].inputs:
                    last[t] = max(last[t], pos[j])
            for t in outputs:
                last[t] = n
            return max(sum(tensors[t].aligned for t in first if first[t] <= s <= last[t]) for s in range(n + 1))

        orders = [p for p in itertools.permutations(range(n)) if _topological(graph, p)]
        assert found.exact and found.peak == min(peak(p) for p in orders) and found.order in orders
        assert found.original_peak == peak(tuple(range(n)))


@pytest.mark.slow
def test_build_keeps_the_order_and_the_firmware_matches_on_qemu(branchy: dict[str, Path],
                                                               tmp_path_factory: pytest.TempPathFactory) -> None:
    from tests.conftest import require_tool
    from tests.tools import tflm_cache, tflm_dir

    for tool in ("cmake", "arm-none-eabi-gcc", "qemu-system-arm"):
        require_tool(tool)
    tflm_cache(tmp_path_factory)  # the session's TFLM library cache, shared with test_verify.py
    root = tmp_path_factory.mktemp("op-order-build")
    docs = {}
    for key, flags in (("auto", ("--verify", "--board", "qemu-mps2-an386", "--tflm-dir", tflm_dir("cmsis-nn"))),
                       ("off", ("--memory-plan", "off"))):
        r = run_edgeq("build", branchy["model"], "--target", "cortex-m4", "-c", branchy["calib"], "--io", "int8",
                      "--out", root / key, "--json", *flags, timeout=1800)
        assert r.code == 0 and "Traceback" not in r.stderr, r.stderr[-3000:]
        docs[key] = json.loads(r.stdout)
    auto, off = docs["auto"], docs["off"]
    order = auto["memory"]["op_order"]
    assert order["kept"] and order["peak_bytes"] < order["original_peak_bytes"] and order["moved_ops"] > 0
    assert auto["micro"]["arena_bytes"] == order["arena_with_bytes"] < off["micro"]["arena_bytes"]
    assert auto["firmware"]["arena_bytes"] < off["firmware"]["arena_bytes"]
    assert auto["memory"]["profile"]["lower_bound_bytes"] == order["peak_bytes"]  # the profile of what ships
    assert off["memory"]["op_order"] is None
    assert auto["validation"] == off["validation"]  # same computation
    assert auto["verify"]["ok"] and auto["verify"]["output_match"]
    assert "Operator order: running" in (root / "auto" / "report.md").read_text()
