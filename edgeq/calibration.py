"""Representative and evaluation data: load, check, split.

Bad calibration data is the quiet killer of int8 accuracy, so everything is checked
before the converter sees it: shape (named expected vs got), dtype, NaN/Inf (with the
index of the first bad sample), and count.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgeq.console import warn
from edgeq.errors import CalibrationError
from edgeq.loading import IOSpec

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
SCALES = {"0..1": (0.0, 1.0), "-1..1": (-1.0, 1.0), "0..255": (0.0, 255.0)}
MIN_RECOMMENDED = 100


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
    if Path(text).exists() or ":" not in text:
        return Path(text), ()
    base, _, keys = text.rpartition(":")
    names = tuple(k.strip() for k in keys.split(","))
    if not base.lower().endswith(".npz"):
        if Path(base).exists():
            raise CalibrationError(f"array names ({text}) only apply to an .npz file",
                                   hint=f"use {Path(base).name} without ':{keys}'")
        return Path(text), ()
    if not all(names):
        raise CalibrationError(f"empty array name in {text!r}",
                               hint="name the arrays as data.npz:INPUT[,LABELS], e.g. data.npz:specs,labels")
    return Path(base), names


def load_samples(
    path: str | Path,
    inputs: Sequence[IOSpec],
    *,
    scale: str = "0..1",
    role: str = "calibration",
    input_names: Sequence[str] = (),
) -> Samples:
    """Load .npy/.npz/image-folder data for ``inputs`` and check it thoroughly.

    ``input_names`` are the user-facing names (e.g. Keras input names) that an .npz may
    use as keys besides the signature names. ``data.npz:a,b,c`` names the arrays: one per
    model input, then optionally the labels (one array per output); only those are read.
    """
    p, keys = split_keys(path)
    shown = p.name + (f":{','.join(keys)}" if keys else "")
    if not p.exists():
        raise CalibrationError(f"{role} data not found: {p}", hint="pass a .npy, .npz or a folder of images")
    if keys and p.suffix.lower() != ".npz":
        raise CalibrationError(f"array names ({shown}) only apply to an .npz file", hint=f"use {p.name} without ':'")
    labels: list[np.ndarray] = []
    if p.is_dir():
        xs = [_load_images(p, inputs, scale)]
    elif p.suffix == ".npy":
        xs = [_np_load(p, role)]
        if len(inputs) > 1:
            raise CalibrationError(
                f"the model has {len(inputs)} inputs but {p.name} holds one array",
                hint="use an .npz with one array per input name: " + ", ".join(i.name for i in inputs),
            )
    elif p.suffix.lower() == ".npz":
        xs, labels = _load_npz(p, inputs, role, input_names, keys)
    else:
        raise CalibrationError(f"unsupported {role} data format: {p.name}", hint="use .npy, .npz or a folder of images")
    checked = tuple(_check(x, spec, role, shown) for x, spec in zip(xs, inputs))
    n = checked[0].shape[0]
    if any(x.shape[0] != n for x in checked):
        raise CalibrationError(f"{role} arrays in {shown} have different sample counts: {[x.shape[0] for x in checked]}")
    for t in labels:
        if len(t) != n:
            raise CalibrationError(f"{shown}: {len(t)} labels for {n} samples", hint="labels need one entry per sample")
        if t.dtype.kind not in "fiub":
            raise CalibrationError(f"labels in {shown} have dtype {t.dtype}; numeric labels are needed")
    y = class_indices(labels[0]) if labels else None
    return Samples(checked, y, str(path), tuple(np.asarray(t) for t in labels))


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


def _np_load(p: Path, role: str) -> np.ndarray:
    try:
        return np.load(p, allow_pickle=False)
    except Exception as exc:
        raise CalibrationError(f"cannot read {role} data {p}: {exc}") from None


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


def _load_npz(
    p: Path, inputs: Sequence[IOSpec], role: str, input_names: Sequence[str], keys: Sequence[str] = ()
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Input arrays and label arrays; reads only the arrays it uses (an .npz loads lazily)."""
    try:
        z = np.load(p, allow_pickle=False)
    except Exception as exc:
        raise CalibrationError(f"cannot read {role} data {p}: {exc}") from None
    with z:
        files = list(z.files)
        present = ", ".join(sorted(files)) or "none"
        if keys:
            missing = [k for k in keys if k not in files]
            if missing:
                raise CalibrationError(f"{p.name} has no array {', '.join(repr(k) for k in missing)} (keys: {present})",
                                       hint=f"name arrays that exist, e.g. {p.name}:{files[0] if files else 'x'}")
            if len(keys) < len(inputs):
                raise CalibrationError(
                    f"{p.name}:{','.join(keys)} names {len(keys)} array(s) but the model has {len(inputs)} inputs",
                    hint="list one array per model input first, then the labels")
            return _read(z, keys[: len(inputs)], p, role), _read(z, keys[len(inputs):], p, role)
        labels = _read(z, _label_keys(files), p, role)
        if len(inputs) == 1 and "x" in files:
            return _read(z, ["x"], p, role), labels
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
        return _read(z, chosen, p, role), labels


def _read(z: Any, keys: Sequence[str], p: Path, role: str) -> list[np.ndarray]:
    out = []
    for k in keys:
        try:
            out.append(z[k])
        except Exception as exc:
            raise CalibrationError(f"cannot read array '{k}' of {role} data {p}: {exc}") from None
    return out


def _check(x: np.ndarray, spec: IOSpec, role: str, fname: str) -> np.ndarray:
    want = tuple(spec.shape[1:])
    if x.dtype.kind not in "fiub":
        raise CalibrationError(f"{role} data in {fname} has dtype {x.dtype}; a numeric array is needed")
    if x.ndim == len(want) and tuple(x.shape) == want:
        x = x[None]  # a single sample
    if tuple(x.shape[1:]) != want:
        raise CalibrationError(
            f"{role} data in {fname} has shape {tuple(x.shape)}, but input '{spec.name}' expects (N, {', '.join(map(str, want))})",
            hint="reshape the data to (samples, *input_shape); for images check height, width and channels",
        )
    if x.shape[0] == 0:
        raise CalibrationError(f"{role} data in {fname} is empty")
    x = x.astype(np.float32, copy=False)
    finite = np.isfinite(x.reshape(len(x), -1)).all(axis=1)
    if not finite.all():
        bad = int(np.argmin(finite))
        raise CalibrationError(
            f"{role} data in {fname} contains NaN or Inf (first in sample {bad}, {int((~finite).sum())} bad samples)",
            hint="clean or drop those samples",
        )
    return x


def _load_images(folder: Path, inputs: Sequence[IOSpec], scale: str) -> np.ndarray:
    """Decode, resize (to the input H×W) and scale a folder of images, in sorted order."""
    if len(inputs) != 1 or len(inputs[0].shape) != 4:
        raise CalibrationError("an image folder needs a model with one (1, H, W, C) input")
    if scale not in SCALES:
        raise CalibrationError(f"unknown --scale {scale!r}", hint="use one of " + ", ".join(SCALES))
    files = sorted(f for f in folder.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
    if not files:
        raise CalibrationError(f"no PNG/JPEG/BMP images in {folder}")
    from edgeq.loading import tf_module

    tf = tf_module()
    _, h, w, c = inputs[0].shape
    lo, hi = SCALES[scale]
    out = np.empty((len(files), h, w, c), np.float32)
    for i, f in enumerate(files):
        try:
            img = tf.io.decode_image(f.read_bytes(), channels=c, expand_animations=False)
        except Exception as exc:
            raise CalibrationError(f"cannot decode image {f}: {str(exc).splitlines()[0][:200]}") from None
        img = tf.image.resize(tf.cast(img, tf.float32), (h, w), antialias=True)
        out[i] = lo + (hi - lo) * (np.clip(img.numpy(), 0, 255) / 255.0)
    return out


def random_samples(inputs: Sequence[IOSpec], n: int, seed: int = 0) -> Samples:
    """Uniform random data in [0, 1): only when the user explicitly asks for it."""
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
