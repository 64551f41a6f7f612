"""Proof that a .tflite does what the float model did and runs where it must go:
validation against the float model on LiteRT (``validation``), the TensorFlow Lite Micro
run and arena measurement (``micro`` and its worker process ``_micro_worker``), the child
process every untrusted model is first loaded in (``isolate``), and ``inspect``
(``inspection``). Used by quantization, firmware and the pipeline; uses only the model layer.
"""
