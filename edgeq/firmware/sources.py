"""Render the model's C/C++ sources: data array, settings, op resolver, sample input.

Shared by ``edgeq emit`` (sources for an existing firmware repo) and ``edgeq build``
(the same sources inside a generated project) so the two can never disagree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgeq.version import __version__
from edgeq.firmware import names
from edgeq.firmware.arena import ArenaFigure
from edgeq.firmware.c_array import format_c_buffer
from edgeq.firmware.jinja import render
from edgeq.firmware.resolver import resolve_ops
from edgeq.firmware.scaffold import GeneratedFile
from edgeq.errors import ModelError, UserError
from edgeq.model.tflite_info import ModelInfo, TensorInfo

# TFLite tensor type → (C type, bytes per element) for tensors firmware reads or writes.
_CTYPES: dict[str, tuple[str, int]] = {
    "UINT8": ("uint8_t", 1), "INT8": ("int8_t", 1), "BOOL": ("uint8_t", 1),
    "INT16": ("int16_t", 2), "UINT16": ("uint16_t", 2), "FLOAT16": ("uint16_t", 2),
    "INT32": ("int32_t", 4), "UINT32": ("uint32_t", 4), "FLOAT32": ("float", 4),
    "INT64": ("int64_t", 8), "UINT64": ("uint64_t", 8), "FLOAT64": ("double", 8),
}
_ARRAY_SENTINEL = "\x00EDGEQ_MODEL_ARRAY\x00"
LANGS = ("c", "cpp")


@dataclass(frozen=True)
class SourceOptions:
    """Everything user-controlled that shapes the model sources, already sanitized."""

    name: str
    lang: str = "cpp"
    section: str | None = None
    namespace: str | None = None
    labels: tuple[str, ...] = ()
    labels_source: str = ""
    cpp_ext: str = "cc"

    @staticmethod
    def create(*, name: str, lang: str = "cpp", section: str | None = None, namespace: str | None = None, labels: Sequence[str] | None = None, labels_source: str = "", cpp_ext: str = "cc") -> "SourceOptions":
        """Validate and sanitize user input once, here (see ``edgeq.firmware.names``)."""
        if lang not in LANGS:
            raise UserError(f"unknown language {lang!r}", hint="use --lang c or --lang cpp")
        if namespace and lang != "cpp":
            raise UserError("--namespace needs --lang cpp (C has no namespaces)", hint="drop --namespace or use --lang cpp")
        return SourceOptions(
            name=names.c_identifier(name),
            lang=lang,
            section=names.section_name(section) if section else None,
            namespace=names.cpp_namespace(namespace) if namespace else None,
            labels=tuple(labels or ()),
            labels_source=labels_source,
            cpp_ext=cpp_ext,
        )

    @property
    def data_ext(self) -> str:
        """``cc`` by default; ``cpp`` where the builder ignores ``.cc`` (Arduino sketches)."""
        return self.cpp_ext if self.lang == "cpp" else "c"


def tensor_view(t: TensorInfo) -> dict[str, Any]:
    """A template-friendly view of an I/O tensor (C type, sizes, quantization)."""
    if t.dtype not in _CTYPES:
        raise ModelError(f"model input/output {t.name!r} has type {t.dtype}, which firmware I/O does not support",
                         hint="quantize with integer or float32 inputs and outputs")
    ctype, size = _CTYPES[t.dtype]
    elements = math.prod(t.shape) if t.shape else 1
    quantized = t.scale is not None and t.scale != 0.0
    return {
        "name": t.name, "shape": tuple(t.shape), "dtype": t.dtype, "ctype": ctype, "itemsize": size,
        "elements": elements, "bytes": elements * size, "is_float": t.dtype.startswith("FLOAT") and t.dtype != "FLOAT16",
        "quantized": quantized, "scale": t.scale if quantized else 0.0, "zero_point": int(t.zero_point or 0) if quantized else 0,
    }


def base_context(*, info: ModelInfo, options: SourceOptions, source_name: str) -> dict[str, Any]:
    """Variables every template sees (banner, names, tensors)."""
    return {
        "edgeq_version": __version__,
        "source_name": Path(source_name).name,
        "model_sha256": info.sha256,
        "model_size": info.size_bytes,
        "name": options.name,
        "camel": names.c_camel(options.name),
        "macro": names.c_macro(options.name),
        "lang": options.lang,
        "data_ext": options.data_ext,
        "namespace": options.namespace,
        "section": options.section,
        "inputs": [tensor_view(t) for t in info.inputs],
        "outputs": [tensor_view(t) for t in info.outputs],
    }


def model_data_source(*, tflite: bytes, info: ModelInfo, options: SourceOptions, source_name: str, dest: str = "") -> GeneratedFile:
    """``<name>_model_data.c``/``.cc``: the array. Independent of the arena, so ``emit``
    renders it while the arena is still being measured."""
    ctx = base_context(info=info, options=options, source_name=source_name)
    ctx["model_array"] = _ARRAY_SENTINEL
    head, sep, tail = render("emit/model_data.c.j2", ctx).partition(_ARRAY_SENTINEL)
    assert sep, "model_data template lost its array placeholder"
    data = format_c_buffer(tflite, head=head.encode("ascii"), tail=tail.encode("ascii"))
    prefix = f"{dest}/" if dest else ""
    return GeneratedFile(f"{prefix}{options.name}_model_data.{options.data_ext}", data, "model")


def model_sources(
    *, tflite: bytes, info: ModelInfo, options: SourceOptions, source_name: str, arena: ArenaFigure,
    target_name: str, dest: str = "", data_file: GeneratedFile | None = None,
) -> list[GeneratedFile]:
    """The four model files: ``_model_data.h`` + ``.c``/``.cc``, ``_model_settings.h``, ``_op_resolver.h``.

    ``data_file`` is ``model_data_source(...)`` when the caller rendered it already.
    """
    ops = resolve_ops(info)
    ctx = base_context(info=info, options=options, source_name=source_name)
    ctx.update(
        arena_bytes=arena.target_bytes,
        host_arena_bytes=arena.host_bytes,
        arena_note=arena.rule,
        target_name=target_name,
        labels=list(options.labels),
        labels_source=options.labels_source,
        ops=[{"name": r.name, "method": r.method} for r in ops],
    )
    n = options.name
    prefix = f"{dest}/" if dest else ""
    if data_file is None:
        data_file = model_data_source(tflite=tflite, info=info, options=options, source_name=source_name, dest=dest)
    return [
        GeneratedFile(f"{prefix}{n}_model_data.h", render("emit/model_data.h.j2", ctx).encode("utf-8"), "model"),
        data_file,
        GeneratedFile(f"{prefix}{n}_model_settings.h", render("emit/model_settings.h.j2", ctx).encode("utf-8"), "model"),
        GeneratedFile(f"{prefix}{n}_op_resolver.h", render("emit/op_resolver.h.j2", ctx).encode("utf-8"), "model"),
    ]


def _raw(arrays: Sequence[np.ndarray], tensors: Sequence[TensorInfo], what: str) -> list[dict[str, Any]]:
    """Check arrays against the model's tensors and return little-endian raw bytes."""
    if len(arrays) != len(tensors):
        raise UserError(f"{what}: got {len(arrays)} array(s) but the model has {len(tensors)}")
    out = []
    for i, (a, t) in enumerate(zip(arrays, tensors)):
        view = tensor_view(t)
        arr = np.asarray(a)
        if arr.size != view["elements"]:
            raise UserError(f"{what} {i}: {arr.size} values, tensor {t.name!r} has shape {list(t.shape)}")
        dtype = np.dtype(t.dtype.lower() if t.dtype != "BOOL" else "uint8").newbyteorder("<")
        if arr.dtype.kind != np.dtype(dtype).kind or arr.dtype.itemsize != dtype.itemsize:
            raise UserError(f"{what} {i}: dtype {arr.dtype} does not match the tensor's {t.dtype.lower()}",
                            hint="pass quantized arrays in the model's input/output dtype")
        out.append({"dtype": t.dtype.lower(), "shape": tuple(t.shape), "data": arr.astype(dtype, copy=False).tobytes()})
    return out


#: What the firmware's expected output is, in the sample header and the report.
TFLM_REFERENCE = "TFLM (the tflite-micro Python runtime)"
LITERT_FALLBACK = "LiteRT's reference kernels (tflite-micro is not installed here)"
PSEUDO_RANDOM_SEED = 0


def pseudo_random_input(tensors: Sequence[TensorInfo], *, seed: int = PSEUDO_RANDOM_SEED) -> list[np.ndarray]:
    """A fixed input (batch of 1) for a firmware without eval or calibration data.

    Why not zeros: a zero input leaves most multiplies at zero and proves little. The
    values are valid for each tensor by construction: integer tensors draw uniformly
    from their dtype's whole range (every raw value is a legal quantized value), float
    tensors from [0, 1) like ``--calibration random``, booleans 0/1. Seeded, so the
    same model always gets the same header.
    """
    rng = np.random.default_rng(seed)
    out = []
    for t in tensors:
        view = tensor_view(t)
        shape = tuple(t.shape) or (1,)
        dtype = np.dtype("uint8" if t.dtype == "BOOL" else t.dtype.lower())
        if t.dtype == "BOOL":
            x = rng.integers(0, 2, size=shape).astype(dtype)
        elif dtype.kind == "f":
            x = rng.random(shape).astype(dtype)
        else:
            lim = np.iinfo(dtype)
            x = rng.integers(lim.min, lim.max, size=shape, dtype=dtype, endpoint=True)
        assert x.size == view["elements"]
        out.append(x)
    return out


def sample_source(*, info: ModelInfo, options: SourceOptions, source_name: str, sample_input: Sequence[np.ndarray], reference_output: Sequence[np.ndarray], dest: str = "",
                  reference_input: str = "", reference_by: str = TFLM_REFERENCE) -> GeneratedFile:
    """``<name>_sample_input.h``: one input and the output host TFLM computed for it.

    ``reference_input`` says where the input came from (e.g. "eval sample 0");
    ``reference_by`` who computed the output (TFLM, or LiteRT's reference kernels
    where tflite-micro cannot run).
    """
    ctx = base_context(info=info, options=options, source_name=source_name)
    ctx.update(samples=_raw(sample_input, info.inputs, "sample input"), references=_raw(reference_output, info.outputs, "reference output"),
               reference_input=reference_input or "given by the caller", reference_output=reference_by)
    prefix = f"{dest}/" if dest else ""
    return GeneratedFile(f"{prefix}{options.name}_sample_input.h", render("emit/sample_input.h.j2", ctx).encode("utf-8"), "model")


#: The largest labels file read (1 MiB: some 50,000 long class names).
MAX_LABELS_BYTES = 1 << 20


def read_labels(path: Path) -> tuple[str, ...]:
    """One label per line (UTF-8); blank lines are skipped, surrounding spaces stripped.

    At most ``MAX_LABELS_BYTES``: a labels file is a few KB; anything larger is the wrong
    file (and a FIFO or device named as one would block or never end)."""
    from edgeq.files import regular_file

    regular_file(path, "labels file", max_bytes=MAX_LABELS_BYTES, error=UserError)
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read labels file {path}: {exc}", hint="pass a UTF-8 text file with one label per line") from None
    labels = tuple(line.strip() for line in text.splitlines() if line.strip())
    if not labels:
        raise UserError(f"labels file {path} has no labels", hint="one label per line")
    return labels


def label_warnings(labels: Sequence[str], info: ModelInfo) -> list[str]:
    if not labels or not info.outputs or not info.outputs[0].shape:
        return []
    classes = info.outputs[0].shape[-1]
    if classes != len(labels):
        return [f"{len(labels)} labels but output 0 has {classes} classes (last dimension)"]
    return []


__all__ = ["SourceOptions", "LANGS", "tensor_view", "base_context", "model_data_source", "model_sources", "sample_source", "pseudo_random_input",
           "read_labels", "label_warnings", "TFLM_REFERENCE", "LITERT_FALLBACK", "PSEUDO_RANDOM_SEED"]
