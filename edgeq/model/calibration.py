"""Representative, evaluation and training data: load, check, split.

Bad calibration data is the quiet killer of int8 accuracy, so everything is checked
before the converter sees it: shape (named expected vs got), dtype, NaN/Inf and values
too large for the converter's float32 arithmetic (with the index of the first bad value),
labels against the model's outputs, and count. The files themselves come from strangers:
``edgeq.model.data_files`` reads headers and image dimensions first and bounds what is loaded.
"""

from __future__ import annotations

import dataclasses

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from edgeq.console import warn
from edgeq.model.data_files import (IMAGE_LIMIT_ENV, NPY_KEY, ArrayFile, ArrayHeader, check_values, data_limit, human,
                              image_pixel_limit, image_size, over_limit, show_value)
from edgeq.errors import CalibrationError
from edgeq.model.loaded import IOSpec, LoadedModel
from edgeq.text import shorten

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
SCALES = {"0..1": (0.0, 1.0), "-1..1": (-1.0, 1.0), "0..255": (0.0, 255.0)}
MIN_RECOMMENDED = 100
LABELS_ACCEPTED = ("labels are integer class ids 0..C-1 of shape (N,) or (N, 1), or one-hot rows (N, C); "
                   "for a regression output, float targets of the output's shape (N, ...)")


@dataclass(frozen=True)
class Samples:
    """Arrays in model input order, plus optional labels; all of the same length.

    ``y`` holds class indices of the first output (what validation scores top-1 against;
    one-hot labels are turned into indices, regression targets leave it None).
    ``targets`` keeps every label array as stored, one per output, for training: QAT
    converts them to whatever the loss needs.
    """

    xs: tuple[np.ndarray, ...]
    y: np.ndarray | None = None
    source: str = ""
    targets: tuple[np.ndarray, ...] = ()

    def __len__(self) -> int:
        return int(self.xs[0].shape[0])

    def take(self, idx: slice | np.ndarray) -> "Samples":
        return Samples(tuple(x[idx] for x in self.xs), None if self.y is None else self.y[idx], self.source,
                       tuple(t[idx] for t in self.targets))


def split_keys(path: str | Path) -> tuple[Path, tuple[str, ...]]:
    """``data.npz:specs,labels`` → (``data.npz``, ("specs", "labels")); a plain path → (path, ()).

    A path that exists as typed wins, so a file whose name contains ':' still loads.
    """
    text = str(path)
    if _exists(Path(text)) or ":" not in text:
        return Path(text), ()
    base, _, keys = text.rpartition(":")
    names = tuple(k.strip() for k in keys.split(","))
    if not base.lower().endswith(".npz"):
        if _exists(Path(base)):
            raise CalibrationError(f"array names ({text}) only apply to an .npz file",
                                   hint=f"use {Path(base).name} without ':{keys}'")
        return Path(text), ()
    if not all(names):
        raise CalibrationError(f"empty array name in {text!r}",
                               hint="name the arrays as data.npz:INPUT[,LABELS], e.g. data.npz:specs,labels")
    return Path(base), names


def _exists(p: Path) -> bool:
    try:
        return p.exists()
    except (OSError, ValueError) as exc:  # a name too long for the OS, an embedded NUL
        raise CalibrationError(f"cannot use data path {shorten(str(p), 120)}: {getattr(exc, 'strerror', None) or exc}",
                               hint="check the path") from None


def load_samples(
    path: str | Path,
    inputs: Sequence[IOSpec],
    *,
    scale: str = "0..1",
    role: str = "calibration",
    input_names: Sequence[str] = (),
    outputs: Sequence[IOSpec] = (),
    max_samples: int | None = None,
) -> Samples:
    """Load .npy/.npz/image-folder data for ``inputs`` and check it thoroughly.

    ``input_names`` are the user-facing names (e.g. Keras input names) that an .npz may
    use as keys besides the signature names. ``data.npz:a,b,c`` names the arrays: one per
    model input, then optionally the labels (one array per output); only those are read.
    ``outputs`` (the model's) lets labels be checked against the class count and shapes;
    ``max_samples`` reads only the first that many samples (files and folders are read
    from the start), so a large set costs only what is used.
    """
    p, keys = split_keys(path)
    shown = p.name + (f":{','.join(keys)}" if keys else "")
    if not _exists(p):
        raise CalibrationError(f"{role} data not found: {p}", hint="pass a .npy, .npz or a folder of images")
    if max_samples is not None and max_samples < 1:
        raise CalibrationError(f"cannot read {max_samples} samples of {role} data", hint="ask for at least 1")
    suffix = p.suffix.lower()
    if keys and suffix != ".npz":
        raise CalibrationError(f"array names ({shown}) only apply to an .npz file", hint=f"use {p.name} without ':'")
    if suffix in (".npy", ".npz"):
        return _load_arrays(p, inputs, role, input_names, keys, outputs, max_samples, str(path))
    if not p.is_dir():
        raise CalibrationError(f"unsupported {role} data format: {p.name}", hint="use .npy, .npz or a folder of images")
    x = _check(_load_images(p, inputs, scale, max_samples), inputs[0], role, shown)
    return Samples((x,), None, str(path))


def load_model_samples(path: str | Path, model: LoadedModel, *, role: str, scale: str = "0..1",
                       max_samples: int | None = None) -> Samples:
    """``load_samples`` for ``model``: arrays in another layout than the .tflite interface (a
    PyTorch model's NCHW, ``data_inputs``) are checked so, then moved; images are HWC already."""
    arrays = model.data_inputs is not None and str(split_keys(path)[0]).lower().endswith((".npy", ".npz"))
    s = load_samples(path, model.data_inputs if arrays else model.inputs, scale=scale, role=role,  # type: ignore[arg-type]
                     input_names=model.user_input_names, outputs=model.outputs, max_samples=max_samples)
    return dataclasses.replace(s, xs=tuple(model.to_interface(list(s.xs)))) if arrays else s


def class_indices(labels: np.ndarray) -> np.ndarray | None:
    """Class indices from integer or one-hot labels; None for targets that are not classes."""
    a = np.asarray(labels)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim == 1:
        if a.dtype.kind in "iub" or (a.size and np.all(np.isfinite(a)) and np.all(a == np.round(a))):
            return a.astype(np.int64)
        return None
    if a.ndim == 2 and is_one_hot(a):
        return np.argmax(a, axis=1).astype(np.int64)
    return None


def is_one_hot(a: np.ndarray) -> bool:
    """Rows of 0/1 with exactly one 1 (float or integer storage)."""
    if a.ndim != 2 or a.shape[1] < 2 or not a.size:
        return False
    return bool(np.all((a == 0) | (a == 1)) and np.all(a.sum(axis=1) == 1))


def _label_keys(files: Sequence[str]) -> list[str]:
    """'y' (one output), else y0, y1, ... (or y_0, y_1, ...) as far as they go."""
    if "y" in files:
        return ["y"]
    for fmt in ("y{}", "y_{}"):
        found = []
        while fmt.format(len(found)) in files:
            found.append(fmt.format(len(found)))
        if found:
            return found
    return []


def _choose_keys(af: ArrayFile, p: Path, inputs: Sequence[IOSpec], input_names: Sequence[str],
                 keys: Sequence[str]) -> tuple[list[str], list[str]]:
    """Which arrays of an .npz are the inputs and which the labels; nothing is read here."""
    files = list(af.keys)
    present = shorten(", ".join(sorted(files)) or "none", 300)
    if keys:
        for k in keys:
            why = af.missing(k)
            if why:
                raise CalibrationError(f"{why} (keys: {present})",
                                       hint=f"name arrays that exist, e.g. {p.name}:{files[0] if files else 'x'}")
        if len(keys) < len(inputs):
            raise CalibrationError(
                f"{p.name}:{','.join(keys)} names {len(keys)} array(s) but the model has {len(inputs)} inputs",
                hint="list one array per model input first, then the labels")
        return list(keys[: len(inputs)]), list(keys[len(inputs):])
    labels = _label_keys(files)
    if len(inputs) == 1 and "x" in files:
        return ["x"], labels
    chosen = []
    for i, spec in enumerate(inputs):
        alt = input_names[i] if i < len(input_names) else spec.name
        key = next((k for k in (spec.name, alt, f"x{i}", f"x_{i}") if k in files), None)
        if key is None:
            raise CalibrationError(
                f"{p.name} has no array for model input '{alt}' (keys: {present})",
                hint="store 'x' (single input) or one array per input named " + ", ".join(
                    (input_names[j] if j < len(input_names) else s.name) for j, s in enumerate(inputs)
                ) + f"; or pick arrays by name: {p.name}:INPUT[,LABELS]",
            )
        chosen.append(key)
    return chosen, labels


def _load_arrays(p: Path, inputs: Sequence[IOSpec], role: str, input_names: Sequence[str], keys: Sequence[str],
                 outputs: Sequence[IOSpec], rows: int | None, source: str) -> Samples:
    """Inputs and labels of an .npy/.npz: every header checked (size, dtype, shape, count)
    before any data is read, then the values."""
    with ArrayFile(p, role) as af:
        if af.keys == (NPY_KEY,):
            if len(inputs) > 1:
                raise CalibrationError(
                    f"the model has {len(inputs)} inputs but {p.name} holds one array",
                    hint="use an .npz with one array per input name: " + ", ".join(i.name for i in inputs))
            x_keys, y_keys = [NPY_KEY], []
        else:
            x_keys, y_keys = _choose_keys(af, p, inputs, input_names, keys)
        if outputs and len(y_keys) > len(outputs):
            raise CalibrationError(f"{p.name} has {len(y_keys)} label arrays ({', '.join(y_keys)}) but the model has "
                                   f"{len(outputs)} output(s)", hint="store one label array per output: y, or y0, y1, …")
        x_heads = [af.header(k) for k in x_keys]
        counts = {_header_count(h, spec, role) for h, spec in zip(x_heads, inputs)}
        if len(counts) > 1:
            raise CalibrationError(f"{role} arrays in {p.name} have different sample counts: "
                                   f"{[h.shape[0] if h.shape else 1 for h in x_heads]}")
        n_all = counts.pop()
        y_heads = [af.header(k) for k in y_keys]
        for i, h in enumerate(y_heads):
            _label_header(h, n_all, outputs[i] if i < len(outputs) else None)
        total = sum(h.loaded_bytes(rows) for h in x_heads + y_heads)
        if total > data_limit() and len(x_heads) + len(y_heads) > 1:
            raise over_limit(f"{role} data {p.name} ({len(x_heads) + len(y_heads)} arrays together)", total,
                             hint="use fewer samples, e.g. --samples (files are read from the start)")
        xs = tuple(_check(af.read(k, None if h.shape == tuple(spec.shape[1:]) else rows), spec, role, h.where)
                   for k, h, spec in zip(x_keys, x_heads, inputs))  # an unbatched single sample is read whole
        labels = [af.read(k, rows) for k in y_keys]
    for i, (t, h) in enumerate(zip(labels, y_heads)):
        if t.shape[0] != len(xs[0]):  # a single unbatched sample with one label row
            raise CalibrationError(f"{h.where}: {t.shape[0]} labels for {len(xs[0])} samples",
                                   hint="labels need one entry per sample")
        _label_values(t, h.where, outputs[i] if i < len(outputs) else None)
        check_values(t, f"labels {h.where}")
    y = class_indices(labels[0]) if labels else None
    return Samples(xs, y, source, tuple(labels))


def _header_count(h: ArrayHeader, spec: IOSpec, role: str) -> int:
    """Samples an input array holds, from its header; dtype and shape refused before reading."""
    if h.dtype.kind not in "fiub":
        raise CalibrationError(f"{role} data in {h.where} has dtype {h.dtype}; a numeric array is needed")
    want = tuple(spec.shape[1:])
    if h.shape == want:
        return 1
    _check_shape(h.shape, spec, role, h.where)
    return h.shape[0]


def _check_shape(shape: tuple[int, ...], spec: IOSpec, role: str, fname: str) -> None:
    want = tuple(spec.shape[1:])
    if len(shape) < 1 or tuple(shape[1:]) != want:
        raise CalibrationError(
            f"{role} data in {fname} has shape {tuple(shape)}, but input '{spec.name}' expects (N, {', '.join(map(str, want))})",
            hint="reshape the data to (samples, *input_shape); for images check height, width and channels",
        )


def _classes(out: IOSpec | None) -> int | None:
    """Class count (values per sample) of an output; None when unknown."""
    if out is None or len(out.shape) < 1 or any(d is None or d < 1 for d in out.shape[1:]):
        return None
    return math.prod(out.shape[1:])


def _label_header(h: ArrayHeader, n: int, out: IOSpec | None) -> None:
    """Label dtype, rank and count from the header: strings, complex or a scalar are refused unread."""
    if not h.shape or h.dtype.kind not in "fiub":
        what = "a single value" if not h.shape else f"dtype {h.dtype}"
        raise CalibrationError(f"labels {h.where} are {what}; {LABELS_ACCEPTED}", hint="store one label per sample")
    if h.shape[0] != n:
        raise CalibrationError(f"{h.where}: {h.shape[0]} labels for {n} samples", hint="labels need one entry per sample")
    c = _classes(out)
    if out is None or c is None or len(h.shape) == 1 or h.shape[1:] in ((1,), (c,), tuple(out.shape[1:])):
        return  # class ids, one-hot rows, or targets of the output's shape
    raise CalibrationError(f"labels {h.where} have shape {h.shape} for output '{out.name}' of shape "
                           f"(N, {', '.join(map(str, out.shape[1:]))}); {LABELS_ACCEPTED}", hint=f"here C = {c}")


def _label_values(t: np.ndarray, where: str, out: IOSpec | None) -> None:
    """Class ids of a classifier output must be integers in 0..C-1 (else accuracy is silently 0 %)."""
    c = _classes(out)
    if out is None or c is None or c < 2 or not (t.ndim == 1 or t.shape[1:] == (1,)):
        return
    flat = t.reshape(-1)
    fraction = (flat != np.round(flat)) if flat.dtype.kind == "f" else np.zeros(flat.shape, bool)
    bad = np.flatnonzero(fraction | (flat < 0) | (flat >= c))  # NaN is != itself: bad too
    if bad.size:
        i = int(bad[0])
        raise CalibrationError(f"labels {where} hold {show_value(flat[i])} at sample {i} ({bad.size} bad labels); output "
                               f"'{out.name}' has {c} classes, so class ids must be integers 0..{c - 1}",
                               hint=LABELS_ACCEPTED)


def _check(x: np.ndarray, spec: IOSpec, role: str, fname: str) -> np.ndarray:
    want = tuple(spec.shape[1:])
    if x.dtype.kind not in "fiub":
        raise CalibrationError(f"{role} data in {fname} has dtype {x.dtype}; a numeric array is needed")
    if x.ndim == len(want) and tuple(x.shape) == want:
        x = x[None]  # a single sample
    _check_shape(x.shape, spec, role, fname)
    if x.shape[0] == 0:
        raise CalibrationError(f"{role} data in {fname} is empty")
    check_values(x, f"{role} data {fname}")
    return x.astype(np.float32, copy=False)


def _load_images(folder: Path, inputs: Sequence[IOSpec], scale: str, max_samples: int | None) -> np.ndarray:
    """Decode, resize (to the input H×W) and scale a folder of images, in sorted order.

    Every image's dimensions are read from its header first, so a small file that claims a
    huge bitmap is refused before it is decoded; only ``max_samples`` images are read."""
    if len(inputs) != 1 or len(inputs[0].shape) != 4:
        raise CalibrationError("an image folder needs a model with one (1, H, W, C) input")
    if scale not in SCALES:
        raise CalibrationError(f"unknown --scale {scale!r}", hint="use one of " + ", ".join(SCALES))
    _, h, w, c = inputs[0].shape
    if min(h, w, c) < 1 or c not in (1, 3, 4):
        raise CalibrationError(f"input '{inputs[0].name}' has shape {inputs[0].shape}: an image folder needs "
                               "a known height and width and 1, 3 or 4 channels")
    files = sorted(f for f in folder.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
    if not files:
        raise CalibrationError(f"no PNG/JPEG/BMP images in {folder}")
    files = files[:max_samples] if max_samples else files
    need = len(files) * h * w * c * 4
    if need > data_limit():
        raise over_limit(f"{len(files):,} images of {folder} at {h}×{w}×{c}", need,
                         hint="use fewer images (or --samples N)")
    for f in files:  # every header before the first decode: refuse in seconds, not after minutes
        _check_image(f)
    from edgeq.model.loading import tf_module

    tf = tf_module()
    lo, hi = SCALES[scale]
    out = np.empty((len(files), h, w, c), np.float32)
    for i, f in enumerate(files):
        try:
            img = tf.io.decode_image(f.read_bytes(), channels=c, expand_animations=False)
            img = tf.image.resize(img, (h, w), antialias=True)  # uint8 in: no full-size float copy
        except Exception as exc:  # TensorFlow's message, without its "{{function_node …}}" and "[Op:…]" wrapping
            why = re.sub(r"\{\{.*?\}\}|\[Op:\w+\]", "", str(exc)).strip().split("\n")[0][:200] or type(exc).__name__
            raise CalibrationError(f"cannot decode image {f}: {why}", hint="remove or re-save it") from None
        out[i] = lo + (hi - lo) * (np.clip(img.numpy(), 0, 255) / 255.0)
    return out


def _check_image(f: Path) -> None:
    """Dimensions (from the header) within the pixel limit, file size within the data limit."""
    kind, iw, ih = image_size(f)
    pixels = image_pixel_limit()
    if not iw * ih:
        raise CalibrationError(f"image {f} is a {iw}×{ih} {kind}: it has no pixels", hint="remove it")
    if iw * ih > pixels:
        raise CalibrationError(f"image {f} is a {iw}×{ih} {kind}: more than the {pixels:,}-pixel limit for one image",
                               hint=f"resize it, or raise {IMAGE_LIMIT_ENV} (now {pixels:,})")
    size = f.stat().st_size
    if size > data_limit():
        raise over_limit(f"image {f} ({human(size)} on disk)", size)


def random_samples(inputs: Sequence[IOSpec], n: int, seed: int = 0) -> Samples:
    """Uniform random data in [0, 1): only when the user explicitly asks for it.

    The size is checked before anything is allocated: ``--samples`` times the input shape."""
    if n < 1:
        raise CalibrationError(f"--samples must be at least 1 (got {n})")
    if any(d is None or d < 0 for s in inputs for d in s.shape[1:]):
        raise CalibrationError("random calibration data needs inputs of known shape: "
                               + ", ".join(f"'{s.name}' {s.shape}" for s in inputs))
    per_sample = sum(math.prod(s.shape[1:]) * 4 for s in inputs)
    if n * per_sample > data_limit():
        fits = data_limit() // max(per_sample, 1)
        raise over_limit(f"--samples {n:,} of random data ({human(per_sample)} per sample)", n * per_sample,
                         hint=f"use --samples {fits:,} or fewer" if fits else "")
    rng = np.random.default_rng(seed)
    return Samples(tuple(rng.random((n, *s.shape[1:]), dtype=np.float32) for s in inputs), None, "random")


def split_for_validation(calib: Samples, *, holdout: float = 0.2) -> tuple[Samples, Samples]:
    """Hold out the last part of the calibration data, which calibration never sees."""
    n = len(calib)
    if n < 2:
        raise CalibrationError("need at least 2 calibration samples to hold some out for validation",
                               hint="pass --eval-data, or more calibration data")
    k = max(1, int(round(n * holdout)))
    return calib.take(slice(0, n - k)), calib.take(slice(n - k, n))


def warn_if_few(n: int) -> None:
    if n < MIN_RECOMMENDED:
        warn(f"only {n} calibration samples; {MIN_RECOMMENDED}+ representative samples give better int8 ranges")
