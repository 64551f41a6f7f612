"""Benchmark: edgeq's C array formatter and the whole `edgeq emit` process vs `xxd -i`.

    python bench/c_array.py [--model MODEL.tflite] [--repeat 5]

Without --model, a ~10 MB int8 model (Dense 3200x3200 + Dense 16) is converted once with
the real TFLite converter and cached in the system temp folder. All three contenders run
in the same invocation, interleaved, each timed best-of-N, and each writes a C source
file to the same disk:

* ``xxd -i MODEL > out.c``                     (the usual way, one process)
* formatter: ``format_c_bytes`` + file write   (in this process; goal >= 4x xxd)
* ``edgeq emit MODEL --out DIR --force``       (a fresh ``python -m edgeq`` process:
  interpreter start, imports, parse, host arena measurement in TFLM, four files,
  manifest; goal >= 2x xxd)
* the same with ``--arena-bytes N``            (the arena already known: no TFLM child)

The emit processes run with Python's bytecode cache on, in a private
``PYTHONPYCACHEPREFIX`` that the warm-up run fills: what an installed package has (pip
compiles it at install). This sandbox sets ``PYTHONDONTWRITEBYTECODE``, which would
otherwise make every run compile edgeq's source again. ``--no-bytecode-cache`` measures
that case too. Nothing about the model is cached between runs: every emit process reads,
parses, measures in TFLM and formats it again.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def make_model(path: Path) -> Path:
    """Convert a ~10 MB full-integer model once (cached)."""
    if path.is_file():
        return path
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import numpy as np
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3200,)), keras.layers.Dense(3200), keras.layers.Dense(16)])
    export = path.with_suffix(".savedmodel")
    model.export(str(export), input_signature=[tf.TensorSpec([1, 3200], tf.float32)], verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(export))
    rng = np.random.default_rng(0)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([rng.random((1, 3200), dtype=np.float32)] for _ in range(4))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.uint8
    path.write_bytes(converter.convert())
    shutil.rmtree(export, ignore_errors=True)
    return path


def timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="a .tflite (default: a converted ~10 MB model)")
    parser.add_argument("--repeat", type=int, default=5, help="best of N runs per contender")
    parser.add_argument("--no-bytecode-cache", action="store_true",
                        help="run emit with PYTHONDONTWRITEBYTECODE=1 and no cache prefix (compiles on every run)")
    args = parser.parse_args()
    xxd = shutil.which("xxd")
    if xxd is None:
        sys.exit("xxd is not installed (Debian: apt-get install xxd)")
    model = args.model or make_model(Path(tempfile.gettempdir()) / "edgeq-bench-10mb.tflite")
    data = model.read_bytes()
    mb = len(data) / 1e6

    from edgeq.firmware.c_array import format_c_bytes

    work = Path(tempfile.mkdtemp(prefix="edgeq-bench-"))
    try:
        def run_xxd() -> None:
            with open(work / "xxd.c", "wb") as f:
                subprocess.run([xxd, "-i", str(model)], stdout=f, check=True)

        def run_formatter() -> None:
            (work / "fmt.c").write_bytes(format_c_bytes(data, head=b"const unsigned char m[] = {\n", tail=b"};\n"))

        env = dict(os.environ)
        if args.no_bytecode_cache:
            env["PYTHONDONTWRITEBYTECODE"] = "1"
            env.pop("PYTHONPYCACHEPREFIX", None)
        else:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")

        def emit_process(*extra: str) -> Callable[[], None]:
            def run() -> None:
                proc = subprocess.run([sys.executable, "-m", "edgeq", "emit", str(model), "--out", str(work / "emit"),
                                       "--force", "--json", *extra], capture_output=True, text=True, cwd=ROOT, env=env)
                if proc.returncode != 0:
                    sys.exit(f"edgeq emit failed:\n{proc.stderr}")
                arena.append(json.loads(proc.stdout)["arena"]["host_bytes"])
            return run

        arena: list[int] = []
        run_emit = emit_process()
        run_emit()  # warm-up, and the host arena for the --arena-bytes variant
        run_emit_known = emit_process("--arena-bytes", str(arena[0]))

        contenders = (("xxd", run_xxd), ("formatter", run_formatter), ("emit", run_emit), ("emit_known", run_emit_known))
        results: dict[str, list[float]] = {name: [] for name, _ in contenders}
        for _ in range(args.repeat):  # interleaved, so load changes hit all of them alike
            for name, fn in contenders:
                results[name].append(timed(fn))
        best = {k: min(v) for k, v in results.items()}
        median = {k: statistics.median(v) for k, v in results.items()}
        same = _values(work / "xxd.c") == _values(work / "fmt.c") == data
        print(f"model: {model} ({mb:.1f} MB), best of {args.repeat}, same bytes as xxd: {same}, "
              f"bytecode cache: {'off' if args.no_bytecode_cache else 'on'}, {os.cpu_count()} CPUs")
        print(f"{'contender':<34}{'seconds':>9}{'MB/s':>9}{'vs xxd':>9}{'median s':>10}{'vs xxd':>8}")
        rows = (("xxd -i (process)", "xxd"), ("edgeq formatter (+ file write)", "formatter"),
                ("edgeq emit (whole process)", "emit"), ("edgeq emit --arena-bytes N", "emit_known"))
        for label, key in rows:
            print(f"{label:<34}{best[key]:>9.3f}{mb / best[key]:>9.1f}{best['xxd'] / best[key]:>8.1f}x"
                  f"{median[key]:>10.3f}{median['xxd'] / median[key]:>7.1f}x")
        print(f"ratios: formatter {best['xxd'] / best['formatter']:.1f}x xxd (goal 4x), "
              f"emit process {best['xxd'] / best['emit']:.1f}x xxd (goal 2x; "
              f"{best['xxd'] / best['emit_known']:.1f}x without measuring the arena in TFLM)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _values(path: Path) -> bytes:
    from edgeq.firmware.c_array import parse_c_bytes

    text = path.read_text()
    return parse_c_bytes(text[text.index("{") + 1 : text.rindex("}")])


if __name__ == "__main__":
    main()
