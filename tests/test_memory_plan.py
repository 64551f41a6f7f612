"""Memory profile, TFLM lifetime replica and the offline memory plan, on real converted models.

Why these assertions: the plan is only safe if (1) the replica of TFLM's lifetimes and
greedy planner predicts what TFLM really does (checked against TFLM's own allocation
report, with and without a plan), (2) ``choose_plan`` never hands back a model that needs
a larger arena or computes other bytes, and (3) the metadata TFLM reads parses back. The
MobileNet-like 32x32 net is a shape where TFLM's greedy planner misses the bound (8,192 B
against 6,144 B): its plan must be kept and shrink the measured arena.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import re
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import require_module

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _convert(model, shape: tuple[int, ...], io: str = "int8", samples: int = 8) -> bytes:  # type: ignore[no-untyped-def]
    """Full-int8 conversion with a fixed batch of 1 (an LSTM needs it), seeded calibration."""
    import tempfile

    import tensorflow as tf

    with tempfile.TemporaryDirectory() as tmp:
        model.export(tmp, input_signature=[tf.TensorSpec([1, *shape], tf.float32)], verbose=False)
        conv = tf.lite.TFLiteConverter.from_saved_model(tmp)
        rng = np.random.default_rng(0)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([rng.random((1, *shape), dtype=np.float32)] for _ in range(samples))
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = conv.inference_output_type = {"int8": tf.int8, "uint8": tf.uint8}[io]
        return bytes(conv.convert())


def _residual():  # type: ignore[no-untyped-def]
    import keras

    inp = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    for _ in range(2):
        y = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
        y = keras.layers.Conv2D(8, 3, padding="same")(y)
        x = keras.layers.Activation("relu")(keras.layers.Add()([x, y]))
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(4)(x)), (16, 16, 3)


def _mobilenet_like():  # type: ignore[no-untyped-def]
    """Depthwise-separable blocks on 32x32x3: TFLM's greedy planner needs 8,192 B, the bound is 6,144 B."""
    import keras

    inp = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inp)
    for filters, stride in ((16, 1), (32, 2), (32, 1), (64, 2)):
        x = keras.layers.DepthwiseConv2D(3, strides=stride, padding="same", activation="relu")(x)
        x = keras.layers.Conv2D(filters, 1, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(4)(x)), (32, 32, 3)


def _autoencoder():  # type: ignore[no-untyped-def]
    import keras

    inp = keras.Input((64,))
    x = inp
    for units in (32, 8, 32):
        x = keras.layers.Dense(units)(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.Activation("relu")(x)
    return keras.Model(inp, keras.layers.Dense(64)(x)), (64,)


def _lstm():  # type: ignore[no-untyped-def]
    import keras

    inp = keras.Input((16, 8))
    x = keras.layers.LSTM(16, unroll=True)(inp)  # unrolled, as edgeq converts recurrent layers
    return keras.Model(inp, keras.layers.Dense(4)(x)), (16, 8)


BUILDERS = {"residual": _residual, "mobilenet_like": _mobilenet_like, "autoencoder": _autoencoder, "lstm": _lstm}


@lru_cache(maxsize=None)
def model(name: str, io: str = "int8") -> bytes:
    import keras

    keras.utils.set_random_seed(0)
    built, shape = BUILDERS[name]()
    return _convert(built, shape, io)


_REPORT = r"""
import sys
from tflite_micro.python.tflite_micro import runtime
it = runtime.Interpreter.from_bytes(open(sys.argv[1], "rb").read(), arena_size=16 << 20)
it.invoke()
it.print_allocations()
"""


def tflm_head(data: bytes, tmp_path: Path) -> int:
    """TFLM's own "Arena allocation head" (its planner's non-persistent size), from a child."""
    require_module("tflite_micro")
    path = tmp_path / f"m{len(list(tmp_path.iterdir()))}.tflite"
    path.write_bytes(data)
    proc = subprocess.run([sys.executable, "-c", _REPORT, str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    m = re.search(r"Arena allocation head (\d+) bytes", proc.stderr + proc.stdout)
    assert m, proc.stderr[-2000:]
    return int(m.group(1))


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_the_replica_predicts_tflm_and_the_bound_is_below_it(name: str, tmp_path: Path) -> None:
    from edgeq.check.memory_profile import profile
    from edgeq.firmware.memory_plan import plan, write_plan

    data = model(name)
    prof = profile(data)
    head = tflm_head(data, tmp_path)
    assert prof.greedy_bytes == head  # TFLM's lifetimes and greedy planner, replayed exactly
    assert prof.tensor_bound <= prof.lower_bound <= head
    proposal = plan(data)
    assert proposal.lower_bound == prof.lower_bound
    assert proposal.lower_bound <= proposal.planned_bytes <= proposal.greedy_bytes == head
    if proposal.planned_bytes < proposal.greedy_bytes:  # with offline offsets, too
        assert tflm_head(write_plan(data, proposal), tmp_path) == proposal.planned_bytes


@pytest.mark.parametrize("name,io", [("residual", "int8"), ("mobilenet_like", "uint8"), ("autoencoder", "uint8"),
                                     ("lstm", "int8")])
def test_choose_plan_never_grows_the_arena_nor_changes_an_output(name: str, io: str) -> None:
    require_module("tflite_micro")
    from edgeq.firmware.memory_plan import choose_plan, read_plan

    data = model(name, io)
    out, report = choose_plan(data)
    json.dumps(report.to_dict())
    if report.kept:
        assert report.arena_with is not None and report.arena_without is not None
        assert report.arena_with < report.arena_without
        assert report.outputs_identical is True
        assert read_plan(out) == report.plan.offsets
    else:
        assert out == data, report.reason
        if report.arena_with is not None and report.arena_without is not None:
            assert report.outputs_identical is False or report.arena_with >= report.arena_without


def test_the_mobilenet_like_plan_is_kept_and_shrinks_the_measured_arena() -> None:
    require_module("tflite_micro")
    from edgeq.firmware.memory_plan import choose_plan, probe_inputs
    from edgeq.check.micro import MicroRun
    from edgeq.model.tflite_info import parse

    data = model("mobilenet_like")
    inputs = probe_inputs(data, 2, seed=7)
    base = MicroRun(data, parse(data), inputs).result()  # as the build measures it: reused, not re-run
    out, report = choose_plan(data, inputs=inputs, baseline=base)
    assert report.kept, report.reason
    assert report.plan.greedy_bytes == 8192 and report.plan.planned_bytes == report.plan.lower_bound == 6144
    assert report.arena_without == base.arena_bytes and report.arena_without - report.arena_with == 2048
    planned = MicroRun(out, parse(out), inputs).result()  # measured again, independently
    assert planned.arena_bytes == report.arena_with
    assert all(a.tobytes() == b.tobytes() for a, b in zip(base.outputs, planned.outputs))


def test_the_metadata_parses_back_and_rewriting_replaces_it() -> None:
    from ai_edge_litert import schema_py_generated as schema

    from edgeq.errors import ModelError
    from edgeq.firmware.memory_plan import METADATA_NAME, Plan, plan, read_plan, write_plan
    from edgeq.model.tflite_info import parse

    data = model("mobilenet_like")
    proposal = plan(data)
    once = write_plan(data, proposal)
    assert write_plan(data, proposal) == once  # deterministic bytes
    assert parse(once).tensors == parse(data).tensors
    assert read_plan(data) is None and read_plan(once) == proposal.offsets
    m = schema.Model.GetRootAs(once, 0)
    names = [m.Metadata(i).Name().decode() for i in range(m.MetadataLength())]
    assert names.count(METADATA_NAME) == 1 and len(names) > 1  # the converter's entries are kept
    raw = m.Buffers(m.Metadata(names.index(METADATA_NAME)).Buffer()).DataAsNumpy()
    header = np.frombuffer(raw.tobytes(), "<i4")[:3]
    assert list(header) == [0, 1, len(parse(data).tensors)]
    for i in range(m.BuffersLength()):  # 16-byte aligned data, as the converter writes it
        b = m.Buffers(i)
        if b.DataLength():
            assert (b._tab.Vector(b._tab.Offset(4))) % 16 == 0
    other = Plan(tuple(-1 for _ in proposal.offsets), 0, 0, 0, "test", False)
    twice = write_plan(once, other)
    assert read_plan(twice) == other.offsets
    m2 = schema.Model.GetRootAs(twice, 0)
    assert m2.BuffersLength() == m.BuffersLength()  # the old plan's buffer was reused
    with pytest.raises(ModelError, match="offsets"):
        write_plan(data, Plan((0,), 0, 0, 0, "test", False))


def test_the_plan_leaves_room_for_each_ops_scratch() -> None:
    """A plan made from tensors alone can push a kernel's scratch buffer above it; edgeq's
    reserves each op's scratch (here a 4 KiB im2col-like buffer per CONV_2D) and never
    ends above TFLM's own plan with the same buffers."""
    from edgeq.check.tensor_lifetimes import greedy_offsets, plan_size, read_graph, requests
    from edgeq.firmware.memory_plan import plan

    graph = read_graph(model("mobilenet_like"))
    scratch = {j: 4096 for j, op in enumerate(graph.ops) if op.name == "CONV_2D"}
    with_room = plan(graph, scratch={}, target_scratch=scratch)
    assert with_room.target_planned_bytes is not None and with_room.target_greedy_bytes is not None
    assert with_room.target_planned_bytes <= with_room.target_greedy_bytes
    blind = plan(graph, scratch={})
    reqs = requests(graph, scratch, blind.offsets)
    assert with_room.target_planned_bytes <= plan_size(reqs, greedy_offsets(reqs))


def test_esp_nn_targets_reserve_esp_nn_scratch() -> None:
    """On an ESP32-S3 the conv, depthwise and softmax kernels request ESP-NN scratch the
    reference kernels do not: the plan for that target must be told, as for CMSIS-NN; the
    plain ESP32's ESP-NN asks for softmax scratch only."""
    from edgeq.check.tensor_lifetimes import read_graph
    from edgeq.firmware.esp_nn_memory import esp_nn_extra
    from edgeq.firmware.memory_step import target_scratch
    from edgeq.firmware.targets import load_target

    data = model("mobilenet_like")
    ops = [op.name for op in read_graph(data).ops]
    s3 = target_scratch(data, load_target("esp32s3"))
    assert s3 and {ops[k] for k in s3} >= {"CONV_2D", "DEPTHWISE_CONV_2D"}
    assert all(v % 16 == 0 and v > 0 for v in s3.values())
    assert max(s3.values()) <= esp_nn_extra(data, "esp32s3")
    plain = target_scratch(data, load_target("esp32"))
    assert plain is not None and {ops[k] for k in plain} <= {"SOFTMAX"}
    assert target_scratch(data, load_target("host")) is None


def _valid(items, offsets) -> bool:  # type: ignore[no-untyped-def]
    from edgeq.firmware.plan_solver import overlap

    return all(o >= 0 for o in offsets) and all(
        not overlap(a, b) or oa + a.size <= ob or ob + b.size <= oa
        for (a, oa), (b, ob) in itertools.combinations(zip(items, offsets), 2))


def test_the_exact_search_matches_brute_force() -> None:
    from edgeq.firmware.plan_solver import Item, Solution, branch_and_bound, extent, lower_bound, place, solve

    rng = random.Random(5)
    for _ in range(120):
        n, times = rng.randint(2, 6), rng.randint(2, 6)
        items = []
        for _ in range(n):
            a = rng.randrange(times)
            items.append(Item(16 * rng.randint(1, 6), a, rng.randrange(a, min(times, a + 3))))
        best = min(extent(items, place(items, p)) for p in itertools.permutations(range(n)))
        stacked = Solution(tuple(sum(i.size for i in items[:k]) for k in range(n)), sum(i.size for i in items), 0,
                           "stack", False)
        exact = branch_and_bound(items, stacked, node_budget=10**6)
        assert exact.size == best and exact.optimal and _valid(items, exact.offsets)
        solved = solve(items)
        assert solved.size == best and _valid(items, solved.offsets) and solved.size >= lower_bound(items)


def test_profile_json_markdown_and_macs() -> None:
    from edgeq.check.memory_profile import profile, render_markdown, rich_table

    prof = profile(model("autoencoder", "uint8"))
    doc = json.loads(json.dumps(prof.to_dict()))
    fc = [o for o in doc["ops"] if o["op"] == "FULLY_CONNECTED"]
    assert [o["macs"] for o in fc] == [64 * 32, 32 * 8, 8 * 32, 32 * 64]
    assert doc["total_macs"] >= sum(o["macs"] for o in fc)
    assert doc["uint8_io"] and doc["uint8_io"][0]["role"] == "input" and doc["uint8_io"][0]["bytes"] == 64
    md = render_markdown(prof, arena=9999)
    assert "| peak |" in md and "lower bound" in md and "uint8 input" in md
    assert rich_table(prof).row_count == rich_table(doc).row_count == len(prof.ops)
    conv = profile(model("residual"))
    assert conv.ops[0].macs == 16 * 16 * 8 * 3 * 3 * 3 and conv.peak_op is not None


def test_the_plot_is_deterministic(tmp_path: Path) -> None:
    require_module("matplotlib")
    from edgeq.check.memory_profile import plot, profile

    prof = profile(model("mobilenet_like"))
    a, b = plot(prof, tmp_path / "a.png", 6144), plot(prof, tmp_path / "b.png", 6144)
    assert a.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert a.read_bytes() == b.read_bytes() and b"Software" not in a.read_bytes()
