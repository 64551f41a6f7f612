"""Per-layer int8 quantization error, from TensorFlow's QuantizationDebugger.

When int8 loses accuracy the question is *where*. The debugger inserts NumericVerify
ops that compare every quantized op output with its float value on real samples; we
summarise each as RMSE / scale. Plain rounding error gives about 1/sqrt(12) = 0.29 (in
units of the tensor's quantization step); well above that (TF's guide uses 0.7) a layer's
range or weights quantize badly. Tensor names from the converter ("digits_1/conv2d_1_2/
Relu;...") are mapped back to the model's layer names, because that is what the user
can change.

The debugger quantizes with its own int8 path and float I/O (with uint8 I/O set on the
converter its model-level metrics refuse, see DESIGN.md), so the report analyses int8
post-training quantization of the float model, whatever I/O type the build uses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from edgeq.model.calibration import Samples
from edgeq.console import err, quiet
from edgeq.errors import ModelError, UserError
from edgeq.model.export import export_for_conversion
from edgeq.model.loading import LoadedModel, tf_module
from edgeq.quantization.convert import QuantSettings
from edgeq.workdir import temp_dir

#: RMSE/scale above which a layer is flagged (TF's QuantizationDebugger guide).
FLAG_THRESHOLD = 0.7
#: Plain rounding error of a uniform quantizer, in steps: 1/sqrt(12).
ROUNDING_FLOOR = 0.2887
#: The debugger runs sample by sample through TF's interpreter; more adds little.
MAX_SAMPLES = 200

_HINTS = {
    "SOFTMAX": "the output distribution is squeezed into 256 levels; compare accuracy before acting",
    "ADD": "its inputs have very different ranges but share one scale: add BatchNormalization or clip (ReLU6) before the merge",
    "CONCATENATION": "its inputs have very different ranges but share one scale: normalise or clip the branches before concatenating",
    "MUL": "products widen the range: clip the inputs or use --mode int16x8",
}
_HINT_WEIGHTED = (
    "activation outliers stretch the int8 range: clip activations (ReLU6), calibrate on more representative data, "
    "or use --qat / --mode int16x8"
)
_HINT_DEFAULT = "try --qat, or --mode int16x8 (16-bit activations)"


@dataclass(frozen=True)
class LayerRow:
    """One quantized op output compared with its float value."""

    layer: str  # the model layer the op belongs to (the first, for fused ops)
    layers: tuple[str, ...]  # every model layer fused into this op
    op: str
    tensor: str  # the converter's tensor name, for cross-checking with `edgeq inspect`
    rmse_scale: float  # RMSE in units of the quantization step
    mean_error: float
    max_abs_error: float
    scale: float
    zero_point: int
    flagged: bool
    hint: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "layer": self.layer, "layers": list(self.layers), "op": self.op, "tensor": self.tensor,
            "rmse_scale": self.rmse_scale, "mean_error": self.mean_error, "max_abs_error": self.max_abs_error,
            "scale": self.scale, "zero_point": self.zero_point, "flagged": self.flagged, "hint": self.hint,
        }


@dataclass(frozen=True)
class LayerReport:
    """Rows in graph order; ``worst`` names flagged layers, worst first."""

    rows: tuple[LayerRow, ...]
    samples: int
    source: str
    threshold: float = FLAG_THRESHOLD
    analysis: str = "int8 post-training quantization of the float model (QuantizationDebugger)"
    chart: str | None = None
    worst: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "analysis": self.analysis, "samples": self.samples, "source": self.source, "threshold": self.threshold,
            "worst": list(self.worst), "chart": self.chart, "layers": [r.to_dict() for r in self.rows],
        }

    def render_table(self) -> None:
        """Print the table on stdout (the result), flagged rows in red."""
        from rich.table import Table

        from edgeq.console import cell, out

        table = Table(title=f"per-layer int8 error ({self.samples} samples; flag > {self.threshold:g} steps)",
                      title_justify="left")
        for col in ("layer", "op", "RMSE/scale", "mean error", "max abs error", ""):
            table.add_column(col, justify="right" if col not in ("layer", "op", "") else "left")
        for r in self.rows:
            style = "red" if r.flagged else None
            table.add_row(cell(_layer_label(r)), cell(r.op), f"{r.rmse_scale:.3f}", f"{r.mean_error:.3g}",
                          f"{r.max_abs_error:.3g}", "⚠ worst" if r.flagged else "", style=style)
        out.print(table)
        for r in self.rows:
            if r.flagged:
                out.print(f"[yellow]{r.layer}[/] ({r.op}): {r.hint}")

    def to_markdown(self) -> str:
        """A section for report.md (includes the chart when one was written)."""
        lines = ["## Per-layer quantization error", "",
                 f"{self.analysis}, on {self.samples} samples ({self.source or 'validation data'}). "
                 f"RMSE/scale is the error in quantization steps: about {ROUNDING_FLOOR:.2f} is plain rounding, "
                 f"above {self.threshold:g} is flagged.", "",
                 "| layer | op | RMSE/scale | mean error | max abs error | flag |", "|---|---|---:|---:|---:|---|"]
        for r in self.rows:
            lines.append(f"| {_md(_layer_label(r))} | {r.op} | {r.rmse_scale:.3f} | {r.mean_error:.3g} | "
                         f"{r.max_abs_error:.3g} | {'**worst**' if r.flagged else ''} |")
        flagged = [r for r in self.rows if r.flagged]
        lines += ["", *(f"- **{_md(r.layer)}** ({r.op}, {r.rmse_scale:.2f} steps): {_md(r.hint or '')}" for r in flagged)]
        if not flagged:
            lines.append(f"No layer above {self.threshold:g} steps: int8 rounding error is close to its floor everywhere.")
        if self.chart:
            lines += ["", f"![RMSE/scale per layer]({Path(self.chart).name})"]
        return "\n".join(lines) + "\n"


def _layer_label(r: LayerRow) -> str:
    extra = [n for n in r.layers if n != r.layer]
    return r.layer + (f" (+{', '.join(extra)})" if extra else "")


def _md(text: str) -> str:
    return text.replace("|", "\\|")


# ----------------------------------------------------------------------------- running
def layer_report(
    model: LoadedModel, calib: Samples, eval: Samples, settings: QuantSettings, *, max_samples: int = MAX_SAMPLES
) -> LayerReport:
    """Run the QuantizationDebugger on ``eval`` (calibrated on ``calib``) and map rows to layers."""
    if model.format == "tflite" or not model.has_float_reference:
        raise UserError("--layer-report needs the float model (Keras or SavedModel), not a .tflite",
                        hint="per-layer error compares each quantized op with its float value")
    if settings.mode != "int8":
        raise UserError(f"--layer-report analyses int8 quantization, not --mode {settings.mode}",
                        hint="run it with --mode int8 (TF's QuantizationDebugger supports only int8)")
    tf = tf_module()
    data = eval.take(slice(0, max_samples))
    with temp_dir("layers") as tmp:
        exported = export_for_conversion(model, Path(tmp))
        with quiet():
            converter = tf.lite.TFLiteConverter.from_saved_model(str(exported))
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.representative_dataset = _calibration(calib, model)
        holder: dict[str, Any] = {}
        try:
            with err.status(f"per-layer error on {len(data)} samples…"), quiet():
                debugger = tf.lite.experimental.QuantizationDebugger(
                    converter=converter, debug_dataset=lambda: _debug_samples(data, model, holder["d"]))
                holder["d"] = debugger
                debugger.run()
        except Exception as exc:
            raise ModelError(f"the quantization debugger failed: {str(exc).splitlines()[0][:300]}",
                             hint="run with --debug for TensorFlow's log") from None
    rows = _rows(debugger, model)
    worst = tuple(r.layer for r in sorted(rows, key=lambda r: -r.rmse_scale) if r.flagged)
    return LayerReport(tuple(rows), len(data), data.source, worst=worst)


def _calibration(calib: Samples, model: LoadedModel) -> Any:
    names = [s.name for s in model.inputs]

    def gen() -> Iterator[dict[str, np.ndarray]]:
        for i in range(len(calib)):
            yield {n: calib.xs[j][i : i + 1].astype(np.float32) for j, n in enumerate(names)}

    return gen


def _debug_samples(data: Samples, model: LoadedModel, debugger: Any) -> Iterator[list[np.ndarray]]:
    """Samples in the debug interpreter's input order (matched by signature name)."""
    details = debugger._quant_interpreter.get_input_details()
    names = [s.name for s in model.inputs]
    order = []
    for k, d in enumerate(details):
        hit = [j for j, n in enumerate(names) if d["name"] in (f"serving_default_{n}:0", n)]
        order.append(hit[0] if hit else k)
    for i in range(len(data)):
        yield [data.xs[j][i : i + 1].astype(np.float32) for j in order]


def _rows(debugger: Any, model: LoadedModel) -> list[LayerRow]:
    import csv
    import io

    buf = io.StringIO()
    debugger.layer_statistics_dump(buf)
    buf.seek(0)
    known = _layer_names(model)
    out_layers = _output_layers(model)
    rows = []
    for rec in csv.DictReader(buf):
        scale = float(rec["scale"])
        mse = float(rec["mean_squared_error"])
        rmse_scale = float(np.sqrt(mse) / scale) if scale > 0 else float("nan")
        layers = map_tensor_to_layers(rec["tensor_name"], known)
        if not layers:  # fused into a model output, or a name we cannot place
            k = _output_index(rec["tensor_name"])
            layers = (out_layers[k],) if k is not None and k < len(out_layers) else (rec["tensor_name"].split(";")[0],)
        flagged = bool(rmse_scale > FLAG_THRESHOLD)
        op = rec["op_name"]
        rows.append(LayerRow(
            layers[0], layers, op, rec["tensor_name"], rmse_scale, float(rec["mean_error"]),
            float(rec["max_abs_error"]), scale, int(float(rec["zero_point"])), flagged,
            _hint(op) if flagged else None,
        ))
    rows.sort(key=lambda r: int(_index(r, known)))
    return rows


def _index(r: LayerRow, known: list[str]) -> int:
    return known.index(r.layer) if r.layer in known else len(known)


def _hint(op: str) -> str:
    if op in _HINTS:
        return _HINTS[op]
    if op in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "BATCH_MATMUL"):
        return _HINT_WEIGHTED
    return _HINT_DEFAULT


def _layer_names(model: LoadedModel) -> list[str]:
    km = model.keras_model
    return [layer.name for layer in getattr(km, "layers", [])] if km is not None else []


def _output_layers(model: LoadedModel) -> tuple[str, ...]:
    """Layers producing each signature output, in sorted output-name order (the converter's)."""
    outputs = getattr(model.keras_model, "outputs", None) or []
    hist = [getattr(t, "_keras_history", None) for t in outputs]
    names = [getattr(h[0], "name", "") if h else "" for h in hist]
    if len(names) != len(model.outputs) or not all(names):
        return ()
    by_signature = dict(zip((o.name for o in model.outputs), names))
    return tuple(by_signature[k] for k in sorted(by_signature))


_SUFFIX = re.compile(r"^(.*)_\d+$")


def map_tensor_to_layers(tensor_name: str, layer_names: list[str]) -> tuple[str, ...]:
    """Model layers named in a converter tensor name, in model order.

    A fused op's name joins the TF op names of every layer it absorbed with ';', each
    ``<model scope>/<layer scope>/<op>``. Only the layer scope counts (op names such as
    ``batchnorm/add_1`` would match a layer called ``add``). Tracing uniquifies scopes,
    so layer ``conv2d`` appears as ``conv2d_1`` and layer ``conv2d_1`` as ``conv2d_1_2``
    (measured on Keras 3 and tf_keras exports): strip one ``_N`` suffix first, and fall
    back to the scope itself.
    """
    known = set(layer_names)
    found: set[str] = set()
    for part in tensor_name.split(";"):
        segs = part.split("/")
        for seg in ([segs[1]] if len(segs) > 2 else []) + [segs[0]]:
            m = _SUFFIX.match(seg)
            hit = m.group(1) if m and m.group(1) in known else (seg if seg in known else None)
            if hit:
                found.add(hit)
                break
    return tuple(n for n in layer_names if n in found)


def _output_index(tensor_name: str) -> int | None:
    """``StatefulPartitionedCall_1:k`` is the k-th signature output in sorted-name order."""
    m = re.match(r"^StatefulPartitionedCall(?:_\d+)?:(\d+)$", tensor_name)
    return int(m.group(1)) if m else None


# ----------------------------------------------------------------------------- chart
def attach_chart(report: LayerReport, path: str | Path) -> LayerReport:
    """Write the PNG chart next to report.md when matplotlib is installed; the report names it."""
    import dataclasses

    written = save_chart(report, path)
    return dataclasses.replace(report, chart=str(written)) if written else report


def save_chart(report: LayerReport, path: str | Path) -> Path | None:
    """A PNG bar chart of RMSE/scale per op; None (silently) when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    labels = [f"{r.layer[:40]} ({r.op})" for r in report.rows]
    values = [r.rmse_scale for r in report.rows]
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(labels) + 1.2))
    ax.barh(range(len(values)), values, color=["#d62728" if r.flagged else "#1f77b4" for r in report.rows])
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.axvline(report.threshold, color="#d62728", linestyle="--", linewidth=1, label=f"flag > {report.threshold:g}")
    ax.axvline(ROUNDING_FLOOR, color="grey", linestyle=":", linewidth=1, label="rounding floor")
    ax.set_xlabel("RMSE / scale (quantization steps)")
    ax.legend(loc="lower right", fontsize="small")
    fig.subplots_adjust(left=min(0.6, 0.1 + 0.012 * max(map(len, labels), default=10)), right=0.97)
    p = Path(path)
    fig.savefig(p, dpi=100)
    plt.close(fig)
    return p
