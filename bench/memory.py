"""Arena and flash of well-known tinyML architectures under TFLM: default, lower bound, offline plan.

Issue 15 part 6: for models built here (ResNet-8 on CIFAR-10 32x32x3, MobileNetV1-0.25 on
VWW 96x96x3, DS-CNN on KWS 49x10x1, the MLPerf Dense autoencoder with BatchNormalization,
the MLPerf streaming wake word DS-TCN on 30x1x40, an LSTM, and edgeq's bundled digits
example), each converted full int8 by edgeq's own converter path with uint8 and with int8
I/O, one run prints side by side:

- flash: the .tflite bytes (without / with the plan's metadata);
- TFLM's default host arena (bisected minimum, 16-byte steps, the tflite-micro runtime);
- the lower bound of the non-persistent part and TFLM's greedy figure for it;
- the arena with edgeq's offline memory plan, where ``choose_plan`` keeps one;
- with ``--device`` (the default when a TFLM tree, cmake, arm-none-eabi-gcc and QEMU are
  there): per model, ``edgeq build --optimize ram --io int8`` for a Cortex-M4 and a Cortex-M55
  QEMU board, then ``edgeq verify --find-min-arena``: the host arena that build measured,
  the ``k…TensorArenaSize`` it wrote, the smallest arena that works on the device and
  whether the device output matched. It runs the real CLI (a subprocess per step) so the
  figures are the ones a user gets; the TFLM tree is ``$EDGEQ_TFLM_DIR``, else
  ``../shared/tflm`` beside the checkout. ``--device-default`` also runs edgeq's default
  build (uint8 I/O, no ``--optimize``) on both cores.

Weights are random (seeded, He-normal as in tests/real_models.py) and calibration data is
random: arena and flash depend on the architecture, not on what it learnt.

    .venv/bin/python bench/memory.py [--only resnet8,mobilenet] [--json out.json] [--no-device | --device-default]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
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
    ("streaming_ww", "streaming_ww", (30, 1, 40)),
    ("lstm", "lstm_classifier", (16, 8)),
    ("example", None, None),
)
#: The published int8 reference arenas of issue 15 (TFLM host, their own quantization).
REFERENCE = {"resnet8": 55_984, "mobilenet": 103_680, "ds_cnn": 24_272, "autoencoder": 4_640,
             "streaming_ww": 16_640}
#: (label, edgeq target, QEMU board) for the device columns.
DEVICES = (("M4", "cortex-m4", "qemu-mps2-an386"), ("M55", "cortex-m55", "qemu-mps3-an547"))
#: The builds put on the devices: issue 15's RAM-first build, and (``--device-default``) edgeq's default.
VARIANTS = {"ram int8": ("--optimize", "ram", "--io", "int8"), "default uint8": ()}
TREE_MARKER = Path("tensorflow") / "lite" / "micro" / "micro_interpreter.h"


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


def device_tree() -> tuple[Path | None, str]:
    """The TFLM tree for the device columns, or None and why they cannot run here."""
    value = os.environ.get("EDGEQ_TFLM_DIR")
    root = Path(value) if value else ROOT.parent / "shared" / "tflm"
    if not any((p / TREE_MARKER).is_file() for p in (root, root / "cmsis-nn")):
        return None, f"no TFLM tree at {root} (set EDGEQ_TFLM_DIR)"
    missing = [t for t in ("cmake", "arm-none-eabi-gcc", "qemu-system-arm") if shutil.which(t) is None]
    return (None, f"{', '.join(missing)} not found") if missing else (root, "")


def _edgeq(*args: object) -> subprocess.CompletedProcess[str]:
    """The real CLI of this checkout (PYTHONPATH first), as a user runs it."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    return subprocess.run([sys.executable, "-m", "edgeq", *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=3600)


def _failure(what: str, proc: subprocess.CompletedProcess[str]) -> dict[str, object]:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    return {"error": f"{what} exit {proc.returncode}: {' / '.join(lines[-2:])}"}


def on_device(name: str, variant: str, model: Path, calib: Path, tree: Path, work: Path) -> dict[str, object]:
    """``edgeq build`` (``variant``'s options) then ``edgeq verify --find-min-arena`` per core."""
    row: dict[str, object] = {"model": name, "variant": variant}
    for label, target, board in DEVICES:
        start = time.monotonic()
        out = work / f"{name}-{variant.replace(' ', '-')}-{target}"
        built = _edgeq("build", model, "--calibration", calib, "--target", target, "--board", board,
                       *VARIANTS[variant], "--out", out, "--json")
        if built.returncode != 0:
            row[label] = _failure("edgeq build", built)
            continue
        report = json.loads((out / "report.json").read_text())
        checked = _edgeq("verify", out, "--tflm-dir", tree, "--find-min-arena", "--jobs", "2", "--json")
        try:  # a mismatch exits 1 after printing its figures
            doc = json.loads(checked.stdout)
        except ValueError:
            row[label] = _failure("edgeq verify", checked)
            continue
        row[label] = {"host": report["micro"]["arena_bytes"], "k": doc["arena"]["size_bytes"],
                      "min": doc["arena"]["min_bytes"], "match": bool(doc["ok"]), "message": doc["message"],
                      "seconds": round(time.monotonic() - start, 1)}
    return row


def device_table(rows: list[dict[str, object]]) -> str:
    head = ("| model | build | host arena B | M4: k…TensorArenaSize / device minimum B | M4 match | "
            "M55: k…TensorArenaSize / device minimum B | M55 match | int8 reference B |")
    lines = [head, "|---|---|---:|---:|---|---:|---|---:|"]
    for r in rows:
        cells, hosts = [], []
        for label, _, _ in DEVICES:
            d = r[label]
            if "error" in d:  # type: ignore[operator]
                cells += [str(d["error"]).replace("|", "/"), "no"]  # type: ignore[index]
                continue
            hosts.append(f"{d['host']:,}")  # type: ignore[index]
            cells += [f"{d['k']:,} / " + (f"{d['min']:,}" if d["min"] is not None else "?"),  # type: ignore[index]
                      "yes" if d["match"] else "**no**"]  # type: ignore[index]
        ref = REFERENCE.get(str(r["model"])) if r["variant"] == "ram int8" else None
        host = " / ".join(dict.fromkeys(hosts)) or "-"
        build = f"`{' '.join(VARIANTS[str(r['variant'])])}`" if VARIANTS[str(r["variant"])] else "default"
        lines.append(f"| {r['model']} | {build} | {host} | {' | '.join(cells)} | {f'{ref:,}' if ref else ''} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="", help="comma-separated model names (default: all)")
    ap.add_argument("--json", type=Path, help="also write the rows as JSON ({'host': [...], 'device': [...]})")
    ap.add_argument("--device", action=argparse.BooleanOptionalAction, default=None,
                    help="QEMU M4/M55 columns via edgeq build + verify (default: on when a TFLM tree and the tools exist)")
    ap.add_argument("--device-default", action="store_true",
                    help="also put edgeq's default build (uint8 I/O, no --optimize) on the devices")
    args = ap.parse_args()
    wanted = {n for n in args.only.split(",") if n}
    tree, why = device_tree() if args.device is not False else (None, "--no-device")
    if args.device and tree is None:
        ap.error(f"--device: {why}")
    rows, devices = [], []
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
            if tree is not None:
                np.save(Path(tmp) / f"{name}-calib.npy", calib)
                for variant in list(VARIANTS)[:2 if args.device_default else 1]:
                    devices.append(on_device(name, variant, path, Path(tmp) / f"{name}-calib.npy", tree, Path(tmp)))
                    print(json.dumps(devices[-1]), file=sys.stderr, flush=True)
    print(table(rows))
    for r in rows:
        if not r["kept"] and r["greedy"] != r["lower_bound"]:
            print(f"- {r['model']} {r['io']}: {r['reason']} (planner working memory ~{r['planner_temp']:,} B)")
    print()
    print(device_table(devices) if devices else f"(device columns skipped: {why})")
    if args.json:
        args.json.write_text(json.dumps({"host": rows, "device": devices}, indent=1) + "\n")


if __name__ == "__main__":
    main()
