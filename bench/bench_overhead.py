"""How much does ``edgeq bench`` itself cost? Loopback SSH vs an in-process LiteRT loop.

Goals (issue 4): the remote p50 is within 5% of an in-process loop on the same machine,
and setup -- connect + probe + upload -- takes <= 1.5 s. Both are measured in the same
run, interleaved over several rounds (medians reported), against a real sshd on
127.0.0.1 started like the tests do (tests/sshd.py).

    .venv/bin/python bench/bench_overhead.py [--model M.tflite] [--runs 500] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from edgeq.remote import device_script as ds  # noqa: E402
from edgeq.remote.runner import RemoteDevice  # noqa: E402
from edgeq.remote.ssh import Connection, resolve_target  # noqa: E402


def build_model(directory: Path) -> Path:
    """A small int8 CNN (uint8 I/O) that takes a few ms per inference: big enough to time."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import numpy as np
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    side = 128
    model = keras.Sequential([
        keras.Input((side, side, 3)),
        keras.layers.Conv2D(32, 3, strides=2, activation="relu"),
        keras.layers.DepthwiseConv2D(3, activation="relu"), keras.layers.Conv2D(64, 1, activation="relu"),
        keras.layers.DepthwiseConv2D(3, strides=2, activation="relu"), keras.layers.Conv2D(128, 1, activation="relu"),
        keras.layers.DepthwiseConv2D(3, strides=2, activation="relu"), keras.layers.Conv2D(128, 1, activation="relu"),
        keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(10),
    ])
    spec = [tf.TensorSpec([1, side, side, 3], tf.float32)]
    model.export(str(directory / "saved"), input_signature=spec, verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(directory / "saved"))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    rng = np.random.default_rng(0)
    converter.representative_dataset = lambda: ([rng.random((1, side, side, 3), dtype=np.float32)] for _ in range(20))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.uint8
    saved_stdout = os.dup(1)  # the converter prints to the C-level stdout; keep this script's output clean
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
        flatbuffer = converter.convert()
    finally:
        os.dup2(saved_stdout, 1)
        os.close(saved_stdout)
    path = directory / "cnn_int8.tflite"
    path.write_bytes(flatbuffer)
    return path


def in_process_p50(model: Path, threads: int, runs: int, warmup: int) -> float:
    """The baseline: the same interpreter setup and timing loop, without any edgeq around it."""
    interpreter = ds.make_interpreter(ds.load_backend("ai_edge_litert"), str(model), threads, True)
    ds.set_fixed_inputs(interpreter)
    for _ in range(warmup + 1):
        interpreter.invoke()
    samples = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        interpreter.invoke()
        samples.append(time.perf_counter_ns() - start)
    return statistics.median(samples) / 1e6


def remote_round(server: object, model: Path, threads: int, runs: int, warmup: int) -> tuple[float, dict[str, float]]:
    """One full remote cycle; returns (device p50 ms, setup phase durations in s)."""
    target = resolve_target(f"127.0.0.1:{server.port}", user=server.user, identity=server.identity,  # type: ignore
                            known_hosts=server.directory / "known_hosts", accept_new_host_key=True)  # type: ignore
    device = RemoteDevice("loopback", Connection(target), sys.executable, keep_remote=False)
    phases: dict[str, float] = {}
    try:
        t0 = time.perf_counter()
        device.open()
        t1 = time.perf_counter()
        device.probe()
        t2 = time.perf_counter()
        remote = device.stage([(Path(ds.__file__), "device_script.py"), (model, model.name)])
        t3 = time.perf_counter()
        phases = {"connect": t1 - t0, "probe": t2 - t1, "upload": t3 - t2, "setup": t3 - t0}
        result = device.run_script(
            ["--model", remote[1], "--threads", str(threads), "--runs", str(runs), "--warmup", str(warmup)],
            on_line=lambda line: None, cancel=threading.Event(), timeout=600)
        document = json.loads([ln for ln in result.stdout.splitlines() if ln.startswith("{")][-1])
        return float(document["p50_ms"]), phases
    finally:
        device.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, help="a .tflite to use instead of the built-in CNN")
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    import sshd  # tests/sshd.py: the same loopback server the tests use

    with tempfile.TemporaryDirectory(prefix="edgeq-overhead-") as tmp:
        model = args.model or build_model(Path(tmp))
        factory = sshd.SshdFactory(Path(tmp))
        try:
            server = factory.start()
            local, remote, setups = [], [], []
            for _ in range(args.rounds):  # interleaved: drift in machine load hits both sides
                local.append(in_process_p50(model, args.threads, args.runs, args.warmup))
                p50, phases = remote_round(server, model, args.threads, args.runs, args.warmup)
                remote.append(p50)
                setups.append(phases)
        finally:
            factory.stop_all()
        size = model.stat().st_size
    local_p50, remote_p50 = statistics.median(local), statistics.median(remote)
    ratio = remote_p50 / local_p50
    print(f"model: {model.name} ({size} bytes), threads={args.threads}, runs={args.runs}, "
          f"warmup={args.warmup}, rounds={args.rounds}")
    print(f"in-process LiteRT p50 : {local_p50:.4f} ms  (rounds: {', '.join(f'{v:.4f}' for v in local)})")
    print(f"remote (loopback) p50 : {remote_p50:.4f} ms  (rounds: {', '.join(f'{v:.4f}' for v in remote)})")
    print(f"ratio remote/local    : {ratio:.3f}  (goal: within 5% -> {'ok' if abs(ratio - 1) <= 0.05 else 'MISSED'})")
    for phase in ("connect", "probe", "upload", "setup"):
        values = [s[phase] for s in setups]
        print(f"{phase:<8} median {statistics.median(values):.3f} s  (rounds: {', '.join(f'{v:.3f}' for v in values)})")
    setup = statistics.median(s["setup"] for s in setups)
    print(f"setup = connect + probe + upload: {setup:.3f} s  (goal: <= 1.5 s -> {'ok' if setup <= 1.5 else 'MISSED'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
