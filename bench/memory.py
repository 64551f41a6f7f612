"""Arena and flash of well-known tinyML architectures under TFLM: default, lower bound, offline plan.

Issue 15 part 6: for models built here (ResNet-8 on CIFAR-10 32x32x3, MobileNetV1-0.25 on
VWW 96x96x3, DS-CNN on KWS 49x10x1, the MLPerf Dense autoencoder with BatchNormalization,
an LSTM, and edgeq's bundled digits example), each converted full int8 by edgeq's own
converter path with uint8 and with int8 I/O, one run prints side by side:

- flash: the .tflite bytes (without / with the plan's metadata);
- TFLM's default host arena (bisected minimum, 16-byte steps, the tflite-micro runtime);
- the lower bound of the non-persistent part and TFLM's greedy figure for it;
- the arena with edgeq's offline memory plan, where ``choose_plan`` keeps one.

Weights are random (seeded, He-normal as in tests/real_models.py) and calibration data is
random: arena and flash depend on the architecture, not on what it learnt.

    .venv/bin/python bench/memory.py [--only resnet8,mobilenet] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

#: (name, builder in tests/real_models.py, input shape); "example" is the bundled digits model.
MODELS = (
    ("resnet8", "resnet8", (32, 32, 3)),
    ("mobilenet", "mobilenet_v1", (96, 96, 3)),
    ("ds_cnn", "ds_cnn", (49, 10, 1)),
    ("autoencoder", "dense_autoencoder", (640,)),
    ("lstm", "lstm_classifier", (16, 8)),
    ("example", None, None),
)
#: The published int8 reference arenas of issue 15 (TFLM host, their own quantization).
REFERENCE = {"resnet8": 55_984, "mobilenet": 103_680, "ds_cnn": 24_272, "autoencoder": 4_640}


def keras_file(name: str, builder: str | None, tmp: Path) -> tuple[Path, np.ndarray]:
    """The Keras model file and calibration samples for one architecture."""
    if builder is None:
        from edgeq.cli.example import example_files

        model, calib, _ = example_files()
        return model, np.load(calib)[:64]
    import keras
    import real_models

    shape = dict((n, s) for n, _, s in MODELS)[name]
    keras.utils.set_random_seed(0)
    m = getattr(real_models, builder)(keras)
    path = tmp / f"{name}.keras"
    m.save(path)
    return path, np.random.default_rng(0).random((16, *shape), dtype=np.float32)


def convert(path: Path, calib: np.ndarray, io: str, per_channel_dense: bool = True) -> bytes:
    """edgeq's full-int8 conversion (the path ``edgeq build`` takes; per-tensor dense as ``--dense per-tensor``)."""
    from edgeq.model.calibration import Samples
    from edgeq.model.loading import load_model
    from edgeq.quantization.convert import QuantSettings, convert as edgeq_convert

    return edgeq_convert(load_model(path), QuantSettings(mode="int8", io=io, per_channel_dense=per_channel_dense),
                         Samples((calib,)))


def measure(name: str, io: str, tflite: bytes) -> dict[str, object]:
    from edgeq.check.memory_profile import profile
    from edgeq.firmware.arena import measure_host_arena
    from edgeq.firmware.memory_plan import choose_plan

    start = time.monotonic()
    prof = profile(tflite)
    planned, report = choose_plan(tflite)
    default = report.arena_without if report.arena_without is not None else measure_host_arena(tflite)
    arena = report.arena_with if report.kept else default
    return {"model": name, "io": io, "flash": len(tflite), "flash_planned": len(planned), "macs": prof.total_macs,
            "arena_default": default, "greedy": prof.greedy_bytes, "lower_bound": prof.lower_bound,
            "peak_op": prof.peak_op, "planned_head": report.plan.planned_bytes if report.kept else prof.greedy_bytes,
            "arena_planned": arena, "kept": report.kept, "reason": report.reason,
            "planner_temp": prof.planner_temp_bytes, "seconds": round(time.monotonic() - start, 1)}


def table(rows: list[dict[str, object]]) -> str:
    head = ("| model | I/O | flash B | TFLM default arena B | non-persistent: greedy / lower bound B | "
            "arena with plan B | change | plan | flash with plan B | per-tensor dense + plan: arena / flash B |")
    lines = [head, "|---|---|---:|---:|---:|---:|---:|---|---:|---:|"]
    for r in rows:
        change = (int(r["arena_planned"]) - int(r["arena_default"])) / int(r["arena_default"])  # type: ignore[arg-type]
        ref = REFERENCE.get(str(r["model"]))
        note = f" ({int(r['arena_planned']) / ref:.3f}x ref {ref:,})" if ref and r["io"] == "int8" else ""
        lines.append(f"| {r['model']} | {r['io']} | {r['flash']:,} | {r['arena_default']:,} | "
                     f"{r['greedy']:,} / {r['lower_bound']:,} | {r['arena_planned']:,}{note} | {change:+.1%} | "
                     f"{'kept' if r['kept'] else 'not needed' if r['greedy'] == r['lower_bound'] else 'dropped'} | "
                     f"{r['flash_planned']:,} | {_ram(r)} |")
    return "\n".join(lines)


def _ram(r: dict[str, object]) -> str:
    """What ``--optimize ram`` builds when per-tensor dense layers stay within the accuracy gate."""
    if r.get("arena_ram") is None:
        return "no per-channel dense layer"
    ref = REFERENCE.get(str(r["model"]))
    note = f" ({int(r['arena_ram']) / ref:.3f}x ref)" if ref and r["io"] == "int8" else ""  # type: ignore[call-overload]
    return f"{r['arena_ram']:,}{note} / {r['flash_ram']:,}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="", help="comma-separated model names (default: all)")
    ap.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = ap.parse_args()
    wanted = {n for n in args.only.split(",") if n}
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgeq-bench-memory-") as tmp:
        for name, builder, _ in MODELS:
            if wanted and name not in wanted:
                continue
            path, calib = keras_file(name, builder, Path(tmp))
            for io in ("uint8", "int8"):
                from edgeq.model.tflite_info import parse
                from edgeq.quantization.dense_choice import has_per_channel_dense

                tflite = convert(path, calib, io)
                row = measure(name, io, tflite)
                if has_per_channel_dense(parse(tflite)):
                    ram = measure(name, io, convert(path, calib, io, per_channel_dense=False))
                    row.update(arena_ram=ram["arena_planned"], flash_ram=ram["flash_planned"])
                print(json.dumps(row), file=sys.stderr, flush=True)
                rows.append(row)
    print(table(rows))
    for r in rows:
        if not r["kept"] and r["greedy"] != r["lower_bound"]:
            print(f"- {r['model']} {r['io']}: {r['reason']} (planner working memory ~{r['planner_temp']:,} B)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
