"""Name what edgeq was doing when an unexpected exception escaped, for exit 3's one-line message.

Why a module of its own: the CLI boundary is the only place that catches non-EdgeqError
exceptions, and it must say *where* in the pipeline the bug happened without a traceback;
the table of pipeline rooms lives here, beside nothing else, so adding a room is one line.
"""

from __future__ import annotations

#: Innermost edgeq module in the traceback → the step the user sees in the one-line message.
_STEPS = (
    ("edgeq.loading", "loading the model"),
    ("edgeq.export", "loading the model"),  # the SavedModel the converter reads; was part of loading
    ("edgeq.calibration", "reading the data"),
    ("edgeq.keras_bridge", "rebuilding the model for quantization-aware training"),
    ("edgeq.qat", "quantization-aware training"),
    ("edgeq.quantize", "converting the model"),
    ("edgeq.validation", "validating against the float model"),
    ("edgeq.micro", "checking on TensorFlow Lite Micro"),
    ("edgeq._micro_worker", "checking on TensorFlow Lite Micro"),
    ("edgeq.layer_report", "computing the per-layer report"),
    ("edgeq.compare", "comparing quantization modes"),
    ("edgeq.tflite_info", "reading the .tflite"),
    ("edgeq.inspection", "reading the .tflite"),
    ("edgeq.inspect_view", "showing the .tflite"),
    ("edgeq.firmware_step", "writing the firmware project"),
    ("edgeq.codegen.targets_command", "listing targets"),
    ("edgeq.codegen.emit", "emitting firmware sources"),
    ("edgeq.codegen", "writing firmware sources"),
    ("edgeq.build_systems", "loading build systems"),
    ("edgeq.targets", "loading targets"),
    ("edgeq.toml_fields", "loading targets"),
    ("edgeq.bench", "benchmarking"),
    ("edgeq.report", "writing the report"),
    ("edgeq.pipeline", "running the pipeline"),
)


def step_of(exc: BaseException, command: str) -> str:
    """What edgeq was doing when ``exc`` escaped: named after the innermost edgeq module on the stack."""
    tb = exc.__traceback__
    module = ""
    while tb is not None:
        name = str(tb.tb_frame.f_globals.get("__name__", ""))
        if name.startswith("edgeq.") and not name.startswith(("edgeq.cli", "edgeq.console")):
            module = name
        tb = tb.tb_next
    for prefix, step in _STEPS:
        if module == prefix or module.startswith(prefix + ".") or module.startswith(prefix + "_"):
            return step
    return f"running `edgeq {command}`" if command else "starting"


__all__ = ["step_of"]
