"""Name what edgeq was doing when an unexpected exception escaped, for exit 3's one-line message.

Why a module of its own: the CLI boundary is the only place that catches non-EdgeqError
exceptions, and it must say *where* in the pipeline the bug happened without a traceback;
the table of pipeline rooms lives here, beside nothing else, so adding a room is one line.
"""

from __future__ import annotations

#: Innermost edgeq module in the traceback → the step the user sees in the one-line message.
_STEPS = (
    ("edgeq.model.loading", "loading the model"),
    ("edgeq.model.export", "loading the model"),
    ("edgeq.model.pytorch", "loading the model"),
    ("edgeq.model.torch_source", "loading the model"),  # the SavedModel the converter reads; was part of loading
    ("edgeq.model.calibration", "reading the data"),
    ("edgeq.model.keras_bridge", "rebuilding the model for quantization-aware training"),
    ("edgeq.quantization.qat", "quantization-aware training"),  # and qat_annotate, qat_loss
    ("edgeq.quantization.convert", "converting the model"),
    ("edgeq.quantization.pytorch_convert", "converting the model"),
    ("edgeq.quantization.torch", "converting the PyTorch model"),  # torch_quantize, torch_worker
    ("edgeq.quantization.uint8_io", "converting the model"),
    ("edgeq.check.validation", "validating against the float model"),
    ("edgeq.check.micro", "checking on TensorFlow Lite Micro"),
    ("edgeq.check._micro_worker", "checking on TensorFlow Lite Micro"),
    ("edgeq.quantization.layer_report", "computing the per-layer report"),
    ("edgeq.compare", "comparing quantization modes"),
    ("edgeq.cli.compare", "comparing quantization modes"),
    ("edgeq.model.tflite_info", "reading the .tflite"),
    ("edgeq.check.inspection", "reading the .tflite"),
    ("edgeq.cli.inspect_view", "showing the .tflite"),
    ("edgeq.firmware.step", "writing the firmware project"),
    ("edgeq.cli.targets", "listing targets"),
    ("edgeq.firmware.build_systems", "loading build systems"),
    ("edgeq.firmware.targets", "loading targets"),
    ("edgeq.toml_fields", "loading targets"),
    ("edgeq.firmware.emit", "emitting firmware sources"),
    ("edgeq.cli.emit", "writing firmware sources"),
    ("edgeq.firmware", "writing firmware sources"),  # after its more specific modules: first match wins
    ("edgeq.remote", "benchmarking"),
    ("edgeq.cli.bench", "benchmarking"),
    ("edgeq.report", "writing the report"),
    ("edgeq.pipeline", "running the pipeline"),
)

#: The CLI's own frames (the app, the build/quantize/inspect adapters, option helpers, the
#: fast path) and the console sit on every stack of their commands: they never name the step.
_FRAMES_OF_THE_BOUNDARY = frozenset({
    "edgeq.cli.app", "edgeq.cli.build", "edgeq.cli.quantize", "edgeq.cli.inspect", "edgeq.cli.fastpath",
    "edgeq.cli.options", "edgeq.console",
})


def step_of(exc: BaseException, command: str) -> str:
    """What edgeq was doing when ``exc`` escaped: named after the innermost edgeq module on the stack."""
    tb = exc.__traceback__
    module = ""
    while tb is not None:
        name = str(tb.tb_frame.f_globals.get("__name__", ""))
        if name.startswith("edgeq.") and name not in _FRAMES_OF_THE_BOUNDARY:
            module = name
        tb = tb.tb_next
    for prefix, step in _STEPS:
        if module == prefix or module.startswith(prefix + ".") or module.startswith(prefix + "_"):
            return step
    return f"running `edgeq {command}`" if command else "starting"


__all__ = ["step_of"]
