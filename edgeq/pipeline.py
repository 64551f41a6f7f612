"""``build`` and ``quantize``: load → quantize → validate → TFLM check → write, atomically.

Every check that can refuse the model (data shape, unsupported op, budget) runs before
anything is written, and outputs go to a temporary sibling folder that is moved into
place only when all of it succeeded: a failed build never leaves a half-written folder.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np

from edgeq import outdir
from edgeq.model.calibration import Samples, load_model_samples, random_samples, split_for_validation, warn_if_few
from edgeq.console import info, warn_and_keep
from edgeq.errors import CalibrationError, OutputExistsError, UserError
from edgeq.model.loading import LoadedModel, load_model
from edgeq.check.micro import MicroResult, check_micro, runtime_available
from edgeq.firmware.memory_step import check_mode, memory_step, save_memory_chart
from edgeq.quantization.dense_choice import check_choice
from edgeq.quantization.convert import MICRO_INCAPABLE, QuantSettings, convert, refuse_uninitialized_variables
from edgeq.report import BuildReport, gate, gate_possible, render_markdown, run_report
from edgeq.model.tflite_info import ModelInfo, parse
from edgeq.check.validation import ReferenceRunner, ValidationResult, compare, tflm_agreement

if TYPE_CHECKING:
    from edgeq.firmware.memory_step import MemoryOutcome
    from edgeq.firmware.strip import StripReport
    from edgeq.quantization.dense_choice import DenseChoice
    from edgeq.firmware.step import FirmwareOptions
    from edgeq.quantization.layer_report import LayerReport
    from edgeq.quantization.qat import QatConfig

DEFAULT_SAMPLES = 500


@dataclass(frozen=True)
class Options:
    """Options shared by ``build`` and ``quantize`` (keyword-only at the API surface)."""

    calibration: str | Path | None = None
    eval_data: str | Path | None = None
    samples: int | None = None
    settings: QuantSettings = QuantSettings()
    scale: str = "0..1"
    max_accuracy_drop: float | None = None
    qat: "QatConfig | None" = None
    layer_report: bool = False
    memory_plan: str = "auto"  # edgeq.firmware.memory_step.MEMORY_PLANS
    dense_auto: bool = False  # convert dense layers both ways and keep per-tensor where it costs nothing
    strip: bool = False  # ship the model without what TFLM never reads (names, signatures, description)
    layout: str = "nhwc"  # a PyTorch model's interface: channel-last (nhwc) or PyTorch's own (nchw)


@dataclass
class _Run:
    model: LoadedModel
    data: bytes
    info: ModelInfo
    validation: ValidationResult
    micro: MicroResult
    eval_q: list[np.ndarray] | None  # quantized eval inputs (subgraph order)
    ref_raw: list[np.ndarray] | None
    warnings: list[str]
    qat: dict[str, Any] | None = None
    layers: "LayerReport | None" = None
    fw_input: list[np.ndarray] | None = None  # the firmware's embedded input (batch 1, subgraph order)
    fw_input_source: str = ""  # "eval sample 0", "calibration sample 0" or "pseudo-random (seed 0)"
    fw_output: list[np.ndarray] | None = None  # host TFLM's output for fw_input (None: TFLM did not run)
    task: str | None = None  # "regression" when the eval labels are targets, not classes; else inferred by the report
    memory: "MemoryOutcome | None" = None  # the memory profile and plan (None: a mode TFLM cannot run)
    dense: "DenseChoice | None" = None  # what --dense auto chose (None: not asked, or no per-channel dense layer)
    strip: "StripReport | None" = None  # bytes saved by --strip


def prepare_data(model: LoadedModel, opts: Options, warnings: list[str]) -> tuple[Samples | None, Samples | None]:
    """Calibration and evaluation samples, checked against the model's inputs."""
    inputs = model.inputs
    eval_s = None
    if opts.eval_data is not None:
        eval_s = load_model_samples(opts.eval_data, model, scale=opts.scale, role="evaluation")
    if model.format == "tflite":
        return None, eval_s
    if not opts.settings.needs_calibration and eval_s is not None:
        return None, eval_s
    if opts.calibration is None and opts.qat is not None:
        calibration = opts.qat.train_data  # QAT learned the ranges; the converter still wants samples
        opts = dataclasses.replace(opts, calibration=calibration)
    if opts.calibration is None:
        if not opts.settings.needs_calibration:
            return None, None
        raise CalibrationError(
            "full-integer quantization needs representative data",
            hint="pass --calibration DATA (.npy, .npz or an image folder); --calibration random only for smoke tests",
        )
    if str(opts.calibration) == "random":
        warn_and_keep(warnings, "calibrating on RANDOM data: the int8 ranges and every accuracy figure below mean nothing")
        calib = random_samples(inputs, opts.samples or 200)
    else:
        # With separate evaluation data only the samples calibration uses are read.
        calib = load_model_samples(opts.calibration, model, scale=opts.scale, role="calibration",
                                   max_samples=(opts.samples or DEFAULT_SAMPLES) if eval_s is not None else None)
    if eval_s is None and calib.source != "random":
        calib, eval_s = split_for_validation(calib)
        info(f"validating on {len(eval_s)} held-out calibration samples (not used to calibrate)")
    if opts.samples is not None:
        calib = calib.take(slice(0, opts.samples))
    elif len(calib) > DEFAULT_SAMPLES:
        calib = calib.take(slice(0, DEFAULT_SAMPLES))
    warn_if_few(len(calib))
    return calib, eval_s


def _run(model_path: str | Path, opts: Options, *, micro_strict: bool,
         loaded: Callable[[LoadedModel], object] | None = None, target: Any = None) -> _Run:
    from edgeq.firmware import step as firmware_step

    settings = opts.settings.validate()
    if opts.samples is not None and opts.samples < 1:
        raise UserError("--samples must be at least 1")
    warnings: list[str] = []
    model = load_model(model_path, layout=opts.layout)
    if loaded is not None:  # a build's early budget check: before minutes of conversion
        loaded(model)
    if opts.qat is not None and settings.mode != "int8":
        raise UserError("--qat needs --mode int8", hint="QAT fine-tunes the model's layers, then converts it full-integer")
    if opts.qat is not None and model.format not in ("keras", "tf_keras", "pytorch"):
        what = "a SavedModel has no trainable Keras graph" if model.format == "saved_model" else f"a {model.format} model cannot be fine-tuned"
        raise UserError(f"--qat needs a Keras model (.keras/.h5): {what}",
                        hint="give the .keras/.h5 file the model was exported from, or drop --qat for post-training quantization")
    calib, eval_s = prepare_data(model, opts, warnings)
    if opts.max_accuracy_drop is not None and (eval_s is None or eval_s.y is None or not model.has_float_reference):
        why = "a .tflite has no float model to compare with" if not model.has_float_reference else \
            "the evaluation data has no class labels"
        raise UserError(f"--max-accuracy-drop needs a top-1 accuracy of the float and the quantized model: {why}",
                        hint="pass --eval-data with class labels ('y') for a Keras/SavedModel/PyTorch classifier, "
                        "or drop --max-accuracy-drop")
    if model.format == "tflite":
        assert model.tflite_bytes is not None
        data = model.tflite_bytes
        info_ = parse(data)
        refuse_uninitialized_variables(info_, model.path.name)
        if not info_.fully_integer:
            warn_and_keep(warnings, f"{model.path.name} is not fully integer; float tensors: {', '.join(info_.float_tensors[:8])}")
    else:
        info(f"converting {model.path.name} ({model.format}) to {settings.mode}, I/O {settings.io_type}…")
        data = convert(model, settings, calib)
        info_ = parse(data)
        io_names = {t.name for t in (*info_.inputs, *info_.outputs)} if settings.io_type == "float32" else set()
        float_inside = [t for t in info_.float_tensors if t not in io_names]
        if settings.mode == "int8" and float_inside:  # the converter kept float ops: say so, never silently
            warn_and_keep(warnings, f"the int8 conversion of {model.path.name} is not full-integer; float tensors: "
                  f"{', '.join(float_inside[:8])} (a layer without an int8 kernel stayed float)")
    float_out = model.predict(list(eval_s.xs)) if (eval_s is not None and model.has_float_reference) else None
    validation, eval_q, ref_raw = _validate(model, data, info_, eval_s, float_out)
    dense = None
    if opts.dense_auto and model.format != "tflite":
        from edgeq.quantization.dense_choice import Variant, choose_dense

        def per_tensor() -> Variant:
            d = convert(model, dataclasses.replace(settings, per_channel_dense=False), calib)
            i = parse(d)
            v, q, r = _validate(model, d, i, eval_s, float_out)
            return Variant(d, i, v, (q, r))

        chosen, dense = choose_dense(Variant(data, info_, validation, (eval_q, ref_raw)), per_tensor,
                                     max_drop=opts.max_accuracy_drop)
        data, info_, validation, (eval_q, ref_raw) = chosen.data, chosen.info, chosen.validation, chosen.extra
        if dense is not None and dense.chosen == "per-tensor":  # QAT converts the same way
            opts = dataclasses.replace(opts, settings=dataclasses.replace(settings, per_channel_dense=False))
    qat_summary = None
    if opts.qat is not None:
        data, info_, validation, eval_q, ref_raw, qat_summary = _qat(model, opts, calib, eval_s, float_out, validation)
    fw_input, fw_source = firmware_step.firmware_input(model, data, info_, opts, eval_q, calib)
    # TFLM runs the eval samples, or else the firmware's input: its output is the firmware's reference.
    micro = _micro(data, info_, settings, eval_q if eval_q is not None else fw_input, micro_strict, warnings)
    fw_output = [np.asarray(y)[0:1] for y in micro.outputs] if micro.outputs else None
    if micro.outputs and ref_raw is not None:
        agree = tflm_agreement(ref_raw, list(micro.outputs))
        validation = dataclasses.replace(
            validation, tflm_match_rate=agree.match_rate, tflm_mismatch_values=agree.mismatch_values,
            tflm_compared_values=agree.compared_values, tflm_max_step_diff=agree.max_step_diff,
        )
        message = agree.warning()
        if message:
            warn_and_keep(warnings, message)
    memory = None
    if settings.mode not in MICRO_INCAPABLE:  # before the arena rule and budget: they use the planned figure
        memory = memory_step(data, micro, eval_q if eval_q is not None else fw_input, mode=opts.memory_plan,
                             target=target)
        if memory.changed:
            data, info_ = memory.data, parse(memory.data)
            micro = memory.measured(micro)
    stripped = None
    if opts.strip:
        from edgeq.firmware.strip import verified_strip

        data, info_, stripped = verified_strip(data, info_, micro, eval_q if eval_q is not None else fw_input)
    layers = None
    if opts.layer_report:
        if eval_s is None or calib is None or model.format == "pytorch":
            raise UserError("--layer-report needs calibration and evaluation data, and a Keras or SavedModel model",
                            hint="it runs TensorFlow's QuantizationDebugger, which PyTorch programs do not go through")
        from edgeq.quantization.layer_report import layer_report

        layers = layer_report(model, calib, eval_s, settings)
    task = "regression" if eval_s is not None and eval_s.y is None and eval_s.targets else None
    return _Run(model, data, info_, validation, micro, eval_q, ref_raw, warnings, qat_summary, layers,
                fw_input, fw_source, fw_output, task, memory, dense, stripped)


def _validate(
    model: LoadedModel, data: bytes, info_: ModelInfo, eval_s: Samples | None, float_out: list[np.ndarray] | None
) -> tuple[ValidationResult, list[np.ndarray] | None, list[np.ndarray] | None]:
    """Quantized vs float on the evaluation data (LiteRT reference kernels)."""
    if eval_s is None:
        return ValidationResult(0, None, None, None, None, None, None, None, ""), None, None
    runner = ReferenceRunner(data, info_, [s.name for s in model.inputs], [s.name for s in model.outputs])
    eval_q = runner.to_subgraph(list(eval_s.xs))
    ref_raw = runner.run_raw(eval_q)
    return compare(float_out, runner.from_subgraph(ref_raw), eval_s.y, source=eval_s.source), eval_q, ref_raw


def _qat(
    model: LoadedModel, opts: Options, calib: Samples | None, eval_s: Samples | None,
    float_out: list[np.ndarray] | None, ptq: ValidationResult,
) -> tuple[bytes, ModelInfo, ValidationResult, Any, Any, dict[str, Any]]:
    """Fine-tune with QAT and convert again; the PTQ figures stay in the report for comparison."""
    from edgeq.quantization.qat import qat_train

    assert opts.qat is not None
    train = load_model_samples(opts.qat.train_data, model, scale=opts.scale, role="training")
    q = opts.qat
    if model.format == "pytorch":  # prepare → train → convert happen together in the converter's child
        from edgeq.quantization.pytorch_convert import qat_pytorch

        data, trained = qat_pytorch(model, train, opts.settings, calib, q)
    else:
        result = qat_train(model, train, epochs=q.epochs, batch_size=q.batch_size, learning_rate=q.learning_rate,
                           loss=q.loss)
        info("converting the QAT model to int8…")
        data, trained = convert(result.model, opts.settings, calib), result.to_dict()
    info_ = parse(data)
    validation, eval_q, ref_raw = _validate(model, data, info_, eval_s, float_out)
    summary = {
        "train_data": str(q.train_data), "epochs": q.epochs, "batch_size": q.batch_size,
        "learning_rate": q.learning_rate, **trained,
        "float_accuracy": validation.float_accuracy, "ptq_accuracy": ptq.quantized_accuracy,
        "qat_accuracy": validation.quantized_accuracy, "ptq_agreement": ptq.agreement,
        "qat_agreement": validation.agreement, "ptq_rmse": ptq.rmse, "qat_rmse": validation.rmse,
    }
    return data, info_, validation, eval_q, ref_raw, summary


def _micro(
    data: bytes, info_: ModelInfo, settings: QuantSettings, eval_q: Any, strict: bool, warnings: list[str]
) -> MicroResult:
    """TFLM check; float16/dynamic models are not run (TFLM rejects hybrid models), only reported."""
    if settings.mode in MICRO_INCAPABLE:
        if strict:  # a build: its firmware would be TFLM
            raise UserError(f"--mode {settings.mode} models do not run on TensorFlow Lite Micro",
                            hint="use --mode int8 or int16x8 for firmware; float16/dynamic suit `quantize` and `bench`")
        warn_and_keep(warnings, f"--mode {settings.mode} models do not run on TensorFlow Lite Micro (edge Linux only)")
        return MicroResult(runtime_available(), False, (), info_.op_names)
    return check_micro(data, info_, samples=eval_q, strict=strict)


@contextmanager
def staged_dir(out: Path) -> Iterator[Path]:
    """A staging sibling of ``out`` that replaces it in one atomic swap only if the block
    succeeds, and is removed whatever happens (``edgeq.outdir.replacing``)."""
    with outdir.replacing(out) as tmp:
        yield tmp


def quantize(
    model: str | Path,
    *,
    output: str | Path,
    force: bool = False,
    mode: str = "int8",
    io: str | None = None,
    allow_float_fallback: bool = False,
    calibration: str | Path | None = None,
    eval_data: str | Path | None = None,
    samples: int | None = None,
    scale: str = "0..1",
    max_accuracy_drop: float | None = None,
    qat: "QatConfig | None" = None,
    layer_report: bool = False,
    memory_plan: str = "auto",
    dense: str | None = None,
    strip: bool = False,
    layout: str = "nhwc",
) -> BuildReport:
    """Quantize, validate and TFLM-check ``model``; write only the .tflite (no firmware files)."""
    out = Path(output)
    outdir.check_dest(out, kind="file", flag="--output")  # a folder, a file in the path, read-only: refused now
    if out.exists() and not force:
        raise OutputExistsError(f"{out} exists", hint="pass --force to overwrite it")
    choice = check_choice(dense, target_per_channel=True)
    opts = Options(calibration, eval_data, samples,
                   QuantSettings(mode, io, allow_float_fallback, per_channel_dense=choice != "per-tensor"), scale,
                   max_accuracy_drop, qat, layer_report, check_mode(memory_plan), choice == "auto", strip, layout)
    run = _run(model, opts, micro_strict=mode not in MICRO_INCAPABLE)
    report = run_report(run, "quantize", str(out), mode=mode)
    gate_possible(report, max_accuracy_drop)  # before writing: a gate that cannot apply leaves no file
    outdir.write_file(out, run.data, flag="--output")  # temp file beside it + os.replace, 0644
    gate(report, max_accuracy_drop)
    return report


def build(
    model: str | Path,
    *,
    target: str = "cortex-m",
    out: str | Path | None = None,
    name: str | None = None,
    force: bool = False,
    mode: str = "int8",
    io: str | None = None,
    allow_float_fallback: bool = False,
    calibration: str | Path | None = None,
    eval_data: str | Path | None = None,
    samples: int | None = None,
    scale: str = "0..1",
    max_accuracy_drop: float | None = None,
    firmware: "FirmwareOptions | None" = None,
    qat: "QatConfig | None" = None,
    layer_report: bool = False,
    memory_plan: str = "auto",
    dense: str | None = None,
    strip: bool = False,
    layout: str = "nhwc",
) -> BuildReport:
    """The whole pipeline; writes ``<name>.tflite``, ``report.json``, ``report.md`` (+ firmware) to ``out``.

    ``firmware`` carries the firmware-output options (``edgeq.firmware.step.FirmwareOptions``:
    targets dir, board, lang, budgets…; a dict of the same names is still accepted).
    """
    from edgeq.firmware import step as firmware_step
    from edgeq.firmware.names import c_identifier

    model_path = Path(model)
    cname = c_identifier(name or model_path.stem or "model")
    out_dir = Path(out) if out is not None else Path("build") / cname
    fw_opts = firmware_step.FirmwareOptions.of(firmware)
    dry_run = fw_opts.dry_run
    tgt = firmware_step.resolve_target(target, fw_opts, name=cname)
    if mode in MICRO_INCAPABLE and tgt.is_cross:
        raise UserError(
            f"--mode {mode} models do not run on TensorFlow Lite Micro (\"Hybrid models are not supported\")",
            hint="use --mode int8 or int16x8 for microcontrollers; float16/dynamic suit `quantize` and `bench`",
        )
    if not dry_run:
        firmware_step.check_out(out_dir, force=force)
    choice = check_choice(dense, target_per_channel=tgt.per_channel_dense, target=tgt.name)
    opts = Options(calibration, eval_data, samples,
                   QuantSettings(mode, io, allow_float_fallback, per_channel_dense=choice != "per-tensor"), scale,
                   max_accuracy_drop, qat, layer_report, check_mode(memory_plan), choice == "auto", strip, layout)
    early = functools.partial(firmware_step.refuse_early, target=tgt, settings=opts.settings, opts=fw_opts)
    run = _run(model_path, opts, micro_strict=True, loaded=early, target=tgt)
    firmware_step.check_budget(run, tgt, fw_opts)  # refuses before anything is written
    common = dict(name=cname, target=tgt, force=force, final=out_dir, opts=fw_opts)
    if dry_run:
        fw = firmware_step.write(out_dir, None, run, dry_run=True, **common)
        return run_report(run, "build", None, mode=mode, target=tgt.to_dict(), firmware=fw, out_dir=str(out_dir))
    with staged_dir(out_dir) as tmp:
        fw = firmware_step.write(tmp, out_dir if out_dir.is_dir() else None, run, **common)
        if run.layers is not None:  # after the mirror of the previous output, which may hold an older chart
            from edgeq.quantization.layer_report import save_chart

            (tmp / "layer_report.png").unlink(missing_ok=True)  # maybe a hard link to the old tree's
            if save_chart(run.layers, tmp / "layer_report.png"):  # only with matplotlib (edgeq[plots])
                run.layers = dataclasses.replace(run.layers, chart=str(out_dir / "layer_report.png"))
        if run.memory is not None:
            run.memory = save_memory_chart(run.memory, tmp / "memory_profile.png", final=out_dir / "memory_profile.png")
        for f in fw.get("write", {}).get("files", []):
            if f["action"] == "kept":
                warn_and_keep(run.warnings, f"kept your edited {f['path']} (pass --force to regenerate it)")
        report = run_report(
            run, "build", str(out_dir / f"{cname}.tflite"), mode=mode,
            target=tgt.to_dict(), firmware=fw, out_dir=str(out_dir),
        )
        gate_possible(report, max_accuracy_drop)  # the staged folder is dropped: nothing half-written
        with outdir.mapped_errors(out_dir):  # new files: the mirrored ones are hard links to the old tree's
            outdir.write_new(tmp / f"{cname}.tflite", run.data)
            outdir.write_new(tmp / "report.json", (json.dumps(report.to_dict(), indent=2, sort_keys=True) + "\n").encode())
            outdir.write_new(tmp / "report.md", render_markdown(report).encode())
    gate(report, max_accuracy_drop)
    return report
