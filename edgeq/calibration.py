"""Representative and evaluation data: load, check, split.

Bad calibration data is the quiet killer of int8 accuracy, so everything is checked
before the converter sees it: shape (named expected vs got), dtype, NaN/Inf (with the
index of the first bad sample), and count.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from edgeq.console import warn
from edgeq.errors import CalibrationError
from edgeq.loading import IOSpec

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
SCALES = {"0..1": (0.0, 1.0), "-1..1": (-1.0, 1.0), "0..255": (0.0, 255.0)}
MIN_RECOMMENDED = 100


@dataclass(frozen=True)
class Samples:
    """Arrays in model input order, plus optional labels; all of the same length."""

    xs: tuple[np.ndarray, ...]
    y: np.ndarray | None = None
    source: str = ""

    def __len__(self) -> int:
        return int(self.xs[0].shape[0])

    def take(self, idx: slice | np.ndarray) -> "Samples":
        return Samples(tuple(x[idx] for x in self.xs), None if self.y is None else self.y[idx], self.source)


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
    use as keys besides the signature names.
    """
    p = Path(path)
    if not p.exists():
        raise CalibrationError(f"{role} data not found: {p}", hint="pass a .npy, .npz or a folder of images")
    y = None
    if p.is_dir():
        xs = [_load_images(p, inputs, scale)]
    elif p.suffix == ".npy":
        xs = [_np_load(p, role)]
        if len(inputs) > 1:
            raise CalibrationError(
                f"the model has {len(inputs)} inputs but {p.name} holds one array",
                hint="use an .npz with one array per input name: " + ", ".join(i.name for i in inputs),
            )
    elif p.suffix == ".npz":
        xs, y = _load_npz(p, inputs, role, input_names)
    else:
        raise CalibrationError(f"unsupported {role} data format: {p.name}", hint="use .npy, .npz or a folder of images")
    checked = tuple(_check(x, spec, role, p.name) for x, spec in zip(xs, inputs))
    n = checked[0].shape[0]
    if any(x.shape[0] != n for x in checked):
        raise CalibrationError(f"{role} arrays in {p.name} have different sample counts: {[x.shape[0] for x in checked]}")
    if y is not None and len(y) != n:
        raise CalibrationError(f"{p.name}: {len(y)} labels for {n} samples", hint="'y' needs one label per sample")
    if y is not None and y.ndim == 2:
        y = np.argmax(y, axis=1)  # one-hot labels
    return Samples(checked, None if y is None else np.asarray(y).astype(np.int64), str(p))


def _np_load(p: Path, role: str) -> np.ndarray:
    try:
        return np.load(p, allow_pickle=False)
    except Exception as exc:
        raise CalibrationError(f"cannot read {role} data {p}: {exc}") from None


def _load_npz(
    p: Path, inputs: Sequence[IOSpec], role: str, input_names: Sequence[str]
) -> tuple[list[np.ndarray], np.ndarray | None]:
    try:
        with np.load(p, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as exc:
        raise CalibrationError(f"cannot read {role} data {p}: {exc}") from None
    y = arrays.get("y")
    if len(inputs) == 1 and "x" in arrays:
        return [arrays["x"]], y
    xs = []
    for i, spec in enumerate(inputs):
        alt = input_names[i] if i < len(input_names) else spec.name
        key = next((k for k in (spec.name, alt, f"x{i}", f"x_{i}") if k in arrays), None)
        if key is None:
            raise CalibrationError(
                f"{p.name} has no array for model input '{alt}' (keys: {', '.join(sorted(arrays)) or 'none'})",
                hint="store 'x' (single input) or one array per input named " + ", ".join(
                    (input_names[j] if j < len(input_names) else s.name) for j, s in enumerate(inputs)
                ),
            )
        xs.append(arrays[key])
    return xs, y


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
