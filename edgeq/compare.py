"""``edgeq compare``: convert a model in every quantization mode and put the numbers side by side.

Choosing a mode is a trade-off between size, accuracy, where it runs and speed; the
figures only mean something measured on the same data in the same way, so every mode
goes through the same conversion, the same LiteRT reference kernels for accuracy and
error, the same TFLM check, and the same host latency measurement. A mode that fails to
convert becomes a row with its error, not a failed command.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgeq.model.calibration import Samples
from edgeq.console import info, quiet
from edgeq.errors import EdgeqError, UserError
from edgeq.model.loading import LoadedModel, load_model
from edgeq.check.memory_profile import profile
from edgeq.check.micro import check_micro
from edgeq.quantization.convert import MICRO_INCAPABLE, MODES, QuantSettings, convert
from edgeq.model.tflite_info import ModelInfo, parse
from edgeq.quantization.dense_choice import has_per_channel_dense
from edgeq.check.validation import ReferenceRunner, compare

SCHEMA_VERSION = 1
#: Inputs sent to TFLM: enough to prove it runs and to measure the arena.
MICRO_SAMPLES = 4
LATENCY_RUNS = 50
_NOT_ON_TFLM = "TFLM cannot run float16/dynamic-range (hybrid) models"
#: The extra row for models with per-channel dense layers (``--dense per-tensor``).
PER_TENSOR_DENSE = "int8 (per-tensor dense)"


@dataclass(frozen=True)
class ModeRow:
    """One mode's figures; ``error`` is set (and figures are None) when conversion failed."""

    mode: str
    size_bytes: int | None = None
    input_dtype: str | None = None
    output_dtype: str | None = None
    accuracy: float | None = None
    agreement: float | None = None
    rmse: float | None = None
    runs_on_tflm: bool | None = None
    tflm_note: str | None = None
    arena_bytes: int | None = None
    latency_us: float | None = None
    error: str | None = None
    lower_bound_bytes: int | None = None  # the memory profile's bound on TFLM's non-persistent arena
    dense_per_channel: bool = field(default=False, repr=False)  # has a per-channel FULLY_CONNECTED weight

    def to_dict(self) -> dict[str, Any]:
        return {
            "size_bytes": self.size_bytes, "input_dtype": self.input_dtype, "output_dtype": self.output_dtype,
            "accuracy": self.accuracy, "agreement": self.agreement, "rmse": self.rmse,
            "runs_on_tflm": self.runs_on_tflm, "tflm_note": self.tflm_note, "arena_bytes": self.arena_bytes,
            "latency_us": self.latency_us, "error": self.error, "lower_bound_bytes": self.lower_bound_bytes,
        }


@dataclass(frozen=True)
class CompareReport:
    """All modes for one model, measured on the same evaluation samples."""

    model: dict[str, Any]
    samples: int
    source: str
    float_accuracy: float | None
    rows: tuple[ModeRow, ...]
    latency_runs: int = LATENCY_RUNS
    warnings: tuple[str, ...] = field(default=())
    variants: tuple[ModeRow, ...] = field(default=())  # other conversions of a mode (PER_TENSOR_DENSE)

    def to_dict(self) -> dict[str, Any]:
        from edgeq.version import __version__

        return {
            "schema_version": SCHEMA_VERSION, "kind": "compare", "edgeq_version": __version__,
            "model": self.model, "samples": self.samples, "source": self.source,
            "float_accuracy": self.float_accuracy, "latency_runs": self.latency_runs,
            "modes": {r.mode: r.to_dict() for r in self.rows}, "warnings": list(self.warnings),
            "variants": {r.mode: r.to_dict() for r in self.variants},
        }

    def render_table(self) -> None:
        from rich.table import Table

        from edgeq.console import out

        labelled = self.float_accuracy is not None
        title = f"edgeq compare — {Path(self.model['path']).name}, {self.samples} samples"
        if labelled:
            title += f", float accuracy {100 * self.float_accuracy:.2f} %"
        table = Table(title=title, title_justify="left")
        for col in ("mode", "size", "accuracy" if labelled else "agreement", "RMSE vs float", "runs on TFLM",
                    "TFLM arena", "lower bound", "host latency"):
            table.add_column(col, justify="left" if col in ("mode", "runs on TFLM") else "right")
        for r in (*self.rows, *self.variants):
            if r.error:
                table.add_row(r.mode, "–", "–", "–", "–", "–", "–", "–", style="red")
                continue
            table.add_row(
                r.mode, f"{r.size_bytes:,} B", _pct(r.accuracy if labelled else r.agreement), _num(r.rmse),
                {True: "yes", False: "no", None: "not checked"}[r.runs_on_tflm],
                "–" if r.arena_bytes is None else f"{r.arena_bytes:,} B",
                "–" if r.lower_bound_bytes is None else f"{r.lower_bound_bytes:,} B",
                "–" if r.latency_us is None else f"{r.latency_us:,.1f} µs",
            )
        out.print(table)
        out.print(f"host latency: LiteRT, 1 thread, default kernels, median of {self.latency_runs} runs")
        notes: dict[str, list[str]] = {}
        for r in self.rows:
            if r.tflm_note and not r.runs_on_tflm and not r.error:
                notes.setdefault(r.tflm_note, []).append(r.mode)
        for note, modes in notes.items():
            out.print(f"not on TFLM ({', '.join(modes)}): {note}")
        for r in self.rows:
            if r.error:
                out.print(f"[red]{r.mode}:[/] {r.error}")
        for w in self.warnings:
            out.print(f"[yellow]warning:[/] {w}")


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.2f} %"


def _num(v: float | None) -> str:
    return "–" if v is None else f"{v:.4g}"


def compare_modes(
    model_path: str | Path,
    *,
    calibration: str | Path | None,
    eval_data: str | Path | None,
    samples: int | None = None,
    scale: str = "0..1",
    modes: Sequence[str] = MODES,
    latency_runs: int = LATENCY_RUNS,
) -> CompareReport:
    """Convert ``model_path`` in each of ``modes`` and measure every one the same way."""
    from edgeq.pipeline import Options, prepare_data

    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise UserError(f"unknown mode(s) {', '.join(unknown)}", hint="choose from " + ", ".join(MODES))
    model = load_model(model_path)
    if model.format == "tflite":
        raise UserError("compare needs the float model (Keras or SavedModel), not a .tflite",
                        hint="each mode is a different conversion of the float model")
    warnings: list[str] = []
    calib, eval_s = prepare_data(model, Options(calibration, eval_data, samples, QuantSettings("int8"), scale), warnings)
    if eval_s is None:
        raise UserError("compare needs evaluation data", hint="pass --eval-data, or real --calibration data to hold some out")
    float_out = model.predict(list(eval_s.xs))
    float_acc = compare(float_out, float_out, eval_s.y).float_accuracy
    rows: list[ModeRow] = []
    variants: list[ModeRow] = []
    for mode in modes:
        info(f"[{mode}] converting…")
        rows.append(_measure(model, mode, calib, eval_s, float_out, latency_runs))
        if mode == "int8" and rows[-1].dense_per_channel:  # the --dense per-tensor variant, side by side
            info(f"[{PER_TENSOR_DENSE}] converting…")
            variants.append(_measure(model, PER_TENSOR_DENSE, calib, eval_s, float_out, latency_runs,
                                     QuantSettings("int8", per_channel_dense=False)))
    meta = {"path": str(model.path), "format": model.format, "sha256": model.sha256}
    return CompareReport(meta, len(eval_s), eval_s.source, float_acc, tuple(rows), latency_runs, tuple(warnings),
                         tuple(variants))


def _measure(
    model: LoadedModel, mode: str, calib: Samples | None, eval_s: Samples, float_out: list[np.ndarray], runs: int,
    settings: QuantSettings | None = None,
) -> ModeRow:
    try:
        data = convert(model, settings or QuantSettings(mode), calib)
        mi = parse(data)
        runner = ReferenceRunner(data, mi, [s.name for s in model.inputs], [s.name for s in model.outputs],
                                 trusted=True)  # edgeq's own conversion, not a file from outside
        q_in = runner.to_subgraph(list(eval_s.xs))
        v = compare(float_out, runner.from_subgraph(runner.run_raw(q_in)), eval_s.y)
    except EdgeqError as exc:
        return ModeRow(mode, error=exc.message)
    runs_on, note, arena = _micro(data, mi, mode, [q[:MICRO_SAMPLES] for q in q_in])
    bound = profile(data).lower_bound if runs_on else None
    return ModeRow(
        mode, mi.size_bytes, mi.inputs[0].dtype.lower(), mi.outputs[0].dtype.lower(),
        v.quantized_accuracy, v.agreement, v.rmse, runs_on, note, arena, host_latency_us(data, q_in, runs=runs),
        lower_bound_bytes=bound, dense_per_channel=has_per_channel_dense(mi),
    )


def _micro(data: bytes, mi: ModelInfo, mode: str, q: list[np.ndarray]) -> tuple[bool | None, str | None, int | None]:
    """(runs, note, arena) from the real TFLM runtime; any failure means 'no', with the reason."""
    if mode in MICRO_INCAPABLE:
        return False, _NOT_ON_TFLM, None
    try:
        m = check_micro(data, mi, samples=q, strict=False)
    except EdgeqError as exc:
        return False, exc.message.splitlines()[0][:160], None
    if m.supported is False:
        return False, "no TFLM kernel for " + ", ".join(m.unsupported_ops), None
    if not m.runtime_available:
        return None, "tflite-micro runtime not installed", None
    return True, None, m.arena_bytes


def host_latency_us(data: bytes, q_in: Sequence[np.ndarray], *, runs: int = LATENCY_RUNS, warmup: int = 5) -> float:
    """Median wall time of one ``invoke()`` (LiteRT, 1 thread, default kernels incl. XNNPACK), in µs.

    The median of many runs of one fixed sample resists scheduler noise; the default
    kernels are what an edge Linux deployment would use (unlike the BUILTIN_REF reference).
    """
    from ai_edge_litert.interpreter import Interpreter

    with quiet():
        interp = Interpreter(model_content=data, num_threads=1)
        interp.allocate_tensors()
    details = interp.get_input_details()
    for d, q in zip(details, q_in):
        interp.set_tensor(d["index"], q[0:1])
    for _ in range(warmup):
        interp.invoke()
    times = []
    for _ in range(max(1, runs)):
        t0 = time.perf_counter_ns()
        interp.invoke()
        times.append(time.perf_counter_ns() - t0)
    return statistics.median(times) / 1000.0
