"""From a float model to a quantized .tflite: converter settings per mode (``convert``),
quantization-aware training (``qat``, ``qat_annotate``, ``qat_loss``) and the per-layer
error report (``layer_report``). Comparing modes side by side is an orchestration of these
and the checks, so it lives beside the pipeline (``edgeq.compare``).

Not called ``quantize``: ``edgeq.quantize`` is the public API function, and importing a
submodule binds the package to its parent's attribute of the same name.
"""
