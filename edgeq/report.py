"""The build report: one typed object, rendered as JSON (a contract), a table or Markdown."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgeq.errors import GateError, UserError
from edgeq.version import __version__

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class BuildReport:
    """Everything a build or quantize run found; ``to_dict`` is the JSON contract (README)."""

    kind: str
    model: dict[str, Any]
    tflite: dict[str, Any]
    quantization: dict[str, Any]
    validation: dict[str, Any]
    micro: dict[str, Any]
    target: dict[str, Any] | None = None
    firmware: dict[str, Any] | None = None
    out_dir: str | None = None
    warnings: tuple[str, ...] = field(default=())
    qat: dict[str, Any] | None = None
    layer_report: Any = None  # edgeq.quantization.layer_report.LayerReport
    #: "classification", "regression" or None (unknown). Regression reports show error figures,
    #: never top-1 agreement (argmax of a reconstruction means nothing). Inferred when not given:
    #: the QAT losses, else the loss the Keras file was compiled with.
    task: str | None = None
    memory: dict[str, Any] | None = None  # edgeq.firmware.memory_step.MemoryOutcome.to_dict()

    def __post_init__(self) -> None:
        if self.task is None:
            object.__setattr__(self, "task", infer_task(self.model, self.qat))

    @property
    def regression(self) -> bool:
        return self.task == "regression"

    def to_dict(self) -> dict[str, Any]:
        validation, qat = self.validation, self.qat
        if self.regression:  # no top-1 figures for regression models
            validation = {**validation, "agreement": None, "float_accuracy": None, "quantized_accuracy": None}
            if qat is not None:
                qat = {**qat, **{k: None for k in ("ptq_agreement", "qat_agreement", "float_accuracy",
                                                   "ptq_accuracy", "qat_accuracy") if k in qat}}
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": self.kind,
            "edgeq_version": __version__,
            "model": self.model,
            "tflite": self.tflite,
            "quantization": self.quantization,
            "task": self.task,
            "validation": validation,
            "micro": self.micro,
            "target": self.target,
            "firmware": self.firmware,
            "out_dir": self.out_dir,
            "warnings": list(self.warnings),
            "qat": qat,
            "layer_report": None if self.layer_report is None else self.layer_report.to_dict(),
            "memory": self.memory,
        }


def _memory_markdown(report: BuildReport) -> str:
    """The memory profile section, with the kept plan's figure and why a plan was dropped."""
    from edgeq.check.memory_profile import MemoryProfile, render_markdown as memory_markdown

    memory = report.memory or {}
    plan = memory.get("plan") or {}
    planned = plan["plan"]["planned_bytes"] if plan.get("kept") else None
    text = memory_markdown(MemoryProfile.from_dict(memory["profile"]), arena=report.micro.get("arena_bytes"),
                           planned=planned, allocation=report.micro)
    order = memory.get("op_order") or {}
    if order.get("kept"):
        text += f"\nOperator order: {order['reason']}.\n"
    if plan:
        text += f"\nOffline memory plan ({memory['memory_plan']}): {plan['reason']}.\n"
    elif memory.get("preplanned"):
        text += "\nThe model came with an offline memory plan (OfflineMemoryAllocation): kept, and measured with it.\n"
    if memory.get("chart"):
        text += "\n![memory profile](memory_profile.png)\n"
    return text


def run_report(run: Any, kind: str, tflite_path: str | None, **extra: Any) -> BuildReport:
    """The report of one pipeline run (``edgeq.pipeline._Run``: model, .tflite, validation, TFLM, memory)."""
    i0, o0 = run.info.inputs[0], run.info.outputs[0]
    mode = run.model.format == "tflite" and ("int8" if run.info.fully_integer else "float/mixed")
    return BuildReport(
        kind=kind,
        model={"path": str(run.model.path), "format": run.model.format, "sha256": run.model.sha256},
        tflite={"path": tflite_path, "size_bytes": run.info.size_bytes, "sha256": run.info.sha256,
                "stripped": run.strip.to_dict() if run.strip is not None else None},
        quantization={
            "mode": mode or extra.pop("mode"),
            "input_dtype": i0.dtype.lower(),
            "output_dtype": o0.dtype.lower(),
            "input_scale": i0.scale,
            "input_zero_point": i0.zero_point,
            "output_scale": o0.scale,
            "output_zero_point": o0.zero_point,
            "inputs": [t.to_dict() for t in run.info.inputs],
            "outputs": [t.to_dict() for t in run.info.outputs],
            "fully_integer": run.info.fully_integer,
            "dense": run.dense.to_dict() if run.dense is not None else None,
        },
        validation=run.validation.to_dict(),
        micro=run.micro.to_dict(),
        warnings=tuple(run.warnings),
        qat=run.qat,
        layer_report=run.layers,
        task=run.task,
        memory=run.memory.to_dict() if run.memory is not None else None,
        **{k: v for k, v in extra.items() if k != "mode"},
    )


def gate_possible(report: BuildReport, max_drop: float | None) -> None:
    """``UserError`` when the run has no float and quantized accuracy to gate on: called
    before anything is written, so a gate that cannot be applied leaves no output."""
    if max_drop is None:
        return
    v = report.validation
    if v["float_accuracy"] is None or v["quantized_accuracy"] is None:
        raise UserError("--max-accuracy-drop needs a top-1 accuracy of the float and the quantized model, and this "
                        "run has none (no labels, a model without a float reference, or a non-classifier output)",
                        hint="pass --eval-data with class labels ('y') for a classifier, or drop --max-accuracy-drop")


def gate(report: BuildReport, max_drop: float | None) -> None:
    """``GateError`` (exit 1) when quantized accuracy fell more than ``max_drop`` points below
    float. After the output is written, on purpose: CI keeps the artefacts of a failed gate."""
    gate_possible(report, max_drop)
    if max_drop is None:
        return
    v = report.validation
    drop = 100.0 * (v["float_accuracy"] - v["quantized_accuracy"])
    if drop > max_drop:
        raise GateError(
            f"quantized accuracy is {drop:.2f} points below float (allowed: {max_drop:g})",
            hint="add representative calibration data, try --mode int16x8, or quantization-aware training",
        )


def infer_task(model: dict[str, Any], qat: dict[str, Any] | None) -> str | None:
    """The task from what the run knows: QAT's losses, else the model file's compiled loss."""
    if qat and qat.get("task"):
        return str(qat["task"])
    if model.get("task"):
        return str(model["task"])
    path = model.get("path")
    if not path or model.get("format") not in ("keras", "tf_keras"):
        return None
    from pathlib import Path

    from edgeq.quantization.qat_loss import compiled_task

    return compiled_task(Path(path))


def _pct(v: Any) -> str:
    return "–" if v is None else f"{100 * v:.2f} %"


def _num(v: Any, fmt: str = "{:.6g}") -> str:
    return "–" if v is None else fmt.format(v)


def _micro_verdict(m: dict[str, Any]) -> str:
    if m["supported"] is None:
        return "not checked (tflite-micro runtime not installed)"
    if m["supported"]:
        return "yes"
    why = ", ".join(m["unsupported_ops"]) or m.get("error") or "this quantization mode (see warnings)"
    return f"NO: {why}"


def rows(report: BuildReport) -> list[tuple[str, str]]:
    """(label, value) rows shared by the terminal table and the Markdown report."""
    q, v, m = report.quantization, report.validation, report.micro
    out: list[tuple[str, str]] = [
        ("model", f"{report.model['path']} ({report.model['format']})"),
        ("tflite", f"{report.tflite['path'] or '(not written)'} — {report.tflite['size_bytes']:,} bytes"),
        ("mode / I/O", f"{q['mode']} / {q['input_dtype']} in, {q['output_dtype']} out"),
        ("input scale, zero point", f"{_num(q['input_scale'])}, {_num(q['input_zero_point'], '{}')}"),
        ("output scale, zero point", f"{_num(q['output_scale'])}, {_num(q['output_zero_point'], '{}')}"),
        ("validation samples", f"{v['samples']} ({v.get('source') or 'n/a'})"),
    ]
    out += _quality_rows(report)
    out += [
        ("RMSE / max abs error vs float", f"{_num(v['rmse'])} / {_num(v['max_abs_error'])}"),
        ("cosine similarity", _num(v["cosine"], "{:.6f}")),
        ("TFLM output = LiteRT ref", _pct(v["tflm_match_rate"])),
        ("TFLM ops", ", ".join(m["ops"])),
        ("TFLM supported", _micro_verdict(m)),
        ("TFLM arena (this host)", "–" if m["arena_bytes"] is None else f"{m['arena_bytes']:,} bytes"),
    ]
    dense = q.get("dense")
    if dense:
        out.append(("dense layers", f"{dense['chosen']} (--dense auto: {dense['reason']})"))
    stripped = report.tflite.get("stripped")
    if stripped:
        out.append(("--strip", f"{stripped['bytes_saved']:,} bytes of names, signatures and metadata removed"))
    plan = (report.memory or {}).get("plan")
    if plan and plan.get("kept"):
        out.append(("offline memory plan", f"kept: host arena {plan['arena_without_bytes']:,} → {plan['arena_with_bytes']:,} bytes"))
    fw = report.firmware or {}
    budget = fw.get("budget") or {}
    if fw.get("build_system"):
        where = fw["build_system"] + (f", board {fw['board']}" if fw.get("board") else "")
        out.append(("project", f"{fw.get('target')} ({where})"))
    if fw.get("arena_bytes") is not None:
        rule = (budget.get("arena") or {}).get("rule", "")
        place = " in PSRAM" if fw.get("arena_in_psram") else ""
        out.append((f"arena for {fw.get('target')}", f"{fw['arena_bytes']:,} bytes{place}" + (f" ({rule})" if rule else "")))
    for key, label in (("flash", "flash used / budget"), ("ram", "RAM used / budget")):
        part = budget.get(key)
        if part and part.get("limit") is not None:
            flag = "  OVER BUDGET" if part.get("over") else ""
            out.append((label, f"{part['used']:,} / {part['limit']:,} bytes{flag}"))
    psram = budget.get("psram") or {}
    if psram.get("arena_in_psram"):
        out.append(("PSRAM used / budget", f"{fw['arena_bytes']:,} / {psram['limit']:,} bytes (tensor arena)"))
    files = (fw.get("write") or {}).get("files") or []
    if files:
        dry = (fw.get("write") or {}).get("dry_run")
        listing = ", ".join(f"{f['path']} ({f['action']})" for f in files) if dry else f"{len(files)} files"
        out.append(("would write" if dry else "firmware sources", listing))
    if report.out_dir:
        out.append(("output", report.out_dir))
    return out


def _quality_rows(report: BuildReport) -> list[tuple[str, str]]:
    """Accuracy and agreement for classifiers; error figures only for regression; QAT next to PTQ."""
    v, qa = report.validation, report.qat
    out: list[tuple[str, str]] = []
    if not report.regression:
        out.append(("accuracy float → quantized", f"{_pct(v['float_accuracy'])} → {_pct(v['quantized_accuracy'])}"))
        out.append(("top-1 agreement", _pct(v["agreement"])))
    if qa:
        if report.regression:
            out.append(("RMSE vs float: PTQ / QAT", f"{_num(qa.get('ptq_rmse'))} / {_num(qa.get('qat_rmse'))}"))
        else:
            out.append(("accuracy float / PTQ / QAT",
                        f"{_pct(qa['float_accuracy'])} / {_pct(qa['ptq_accuracy'])} / {_pct(qa['qat_accuracy'])}"))
            out.append(("top-1 agreement PTQ / QAT", f"{_pct(qa.get('ptq_agreement'))} / {_pct(qa.get('qat_agreement'))}"))
            out.append(("RMSE vs float: PTQ / QAT", f"{_num(qa.get('ptq_rmse'))} / {_num(qa.get('qat_rmse'))}"))
        out.append(("QAT training", f"{qa['epochs']} epochs on {qa['train_samples']} samples, loss {qa['loss']} "
                    f"({qa['loss_source']}), final {_num(qa['epoch_losses'][-1] if qa['epoch_losses'] else None)}"))
        if qa.get("labels"):
            out.append(("QAT labels", "; ".join(qa["labels"])))
        left = (qa.get("layers") or {}).get("left_to_calibration") or []
        if left:
            out.append(("QAT: float layers, quantized from calibration", ", ".join(left)))
    return out


def render_table(report: BuildReport) -> None:
    from rich.table import Table

    from rich.markup import escape

    from edgeq.console import cell, out
    from edgeq.text import printable

    table = Table(title=f"edgeq {report.kind}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for label, value in rows(report):
        table.add_row(cell(label), cell(value))
    out.print(table)
    for w in report.warnings:
        out.print(f"[yellow]warning:[/] {escape(printable(w))}")
    if report.layer_report is not None:
        report.layer_report.render_table()


def render_markdown(report: BuildReport) -> str:
    lines = [f"# edgeq {report.kind} report", "", f"edgeq {__version__}, model SHA-256 `{report.model['sha256']}`", ""]
    escaped = [(k, v.replace("|", "\\|")) for k, v in rows(report)]
    lines += ["| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in escaped]
    if report.warnings:
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in report.warnings]
    if report.memory is not None:
        lines += ["", _memory_markdown(report).rstrip("\n")]
    if report.layer_report is not None:
        lines += ["", report.layer_report.to_markdown().rstrip("\n")]
    return "\n".join(lines) + "\n"
