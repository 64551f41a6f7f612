"""Data files from strangers: read the header first, the data only within a limit.

Why: a calibration set is often someone else's file. An .npz is a zip whose members each
declare a shape in a few bytes of .npy header; numpy trusts that header (and the member's
deflate stream) and allocates whatever it says, so a 2 MB file can decompress to 2 GB of
zeros. A PNG states 20000×20000 in its first 24 bytes and decodes to gigabytes. So here
every array's header and every image's dimensions are read and checked against a limit
before a byte of data is decompressed or decoded, only the arrays used are read, and
pickles are never loaded (object dtypes are refused from the header; numpy's loader is
never called with ``allow_pickle=True``).

The limits (README "Limits and safety"): ``EDGEQ_MAX_DATA_BYTES`` (default 1 GiB) bounds
the data one ``--calibration``/``--eval-data``/``--train-data`` loads, counted as the
float32 arrays edgeq holds; ``EDGEQ_MAX_IMAGE_PIXELS`` (default 8192×8192) bounds one
image of an image folder. Both accept a plain number or a K/M/G/T suffix (powers of 1024).
"""

from __future__ import annotations

import math
import os
import stat
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
from numpy.lib import format as npy_format

from edgeq.errors import CalibrationError, UserError

DATA_LIMIT_ENV = "EDGEQ_MAX_DATA_BYTES"
IMAGE_LIMIT_ENV = "EDGEQ_MAX_IMAGE_PIXELS"
DEFAULT_DATA_LIMIT = 1 << 30
DEFAULT_IMAGE_PIXELS = 1 << 26  # 8192 x 8192: beyond any phone camera, a few hundred MB decoded
NPY_KEY = ""  # the one array of a plain .npy file
_SUFFIXES = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_CHUNK = 1 << 20
#: Largest |value| accepted in data. Measured on tiny Keras models (TF 2.21): a LayerNorm
#: model calibrated with values of 1e18 aborts LiteRT (SIGABRT), at 1e20 the build
#: segfaults, Dense/Conv models give infinite scales at 1e38; 1e15 still converted. x**2
#: overflows float32 from 1.8e19, so 1e9 leaves a wide margin and no real signal is near it.
MAX_ABS_VALUE = 1e9


def _env_limit(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    text = raw.upper().removesuffix("IB").removesuffix("B")
    unit = text[-1] if text and text[-1] in "KMGT" else ""
    try:
        value = int(float(text[: len(text) - len(unit)]) * _SUFFIXES[unit])
    except (ValueError, OverflowError):
        value = 0
    if value <= 0:
        raise UserError(f"{name}={raw!r} is not a positive size", hint=f"e.g. {name}=4G or {name}=4294967296")
    return value


def data_limit() -> int:
    """Bytes of data (as float32) one data option may load: ``EDGEQ_MAX_DATA_BYTES``."""
    return _env_limit(DATA_LIMIT_ENV, DEFAULT_DATA_LIMIT)


def image_pixel_limit() -> int:
    """Pixels one image may have: ``EDGEQ_MAX_IMAGE_PIXELS``."""
    return _env_limit(IMAGE_LIMIT_ENV, DEFAULT_IMAGE_PIXELS)


def human(n: int) -> str:
    """1536 -> '1.5 KiB': sizes in messages, in the units the limits are set in."""
    if n < 1024:
        return f"{n} bytes"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024:
            break
    return f"{value:.1f} {unit}"


def over_limit(what: str, need: int, *, hint: str = "") -> CalibrationError:
    """The one wording of "this needs more than the data limit"."""
    limit = data_limit()
    fix = f"raise the limit with {DATA_LIMIT_ENV}=<bytes> (now {human(limit)}) if this machine has the memory"
    return CalibrationError(f"{what} needs {human(need)} in memory, more than the {human(limit)} data limit",
                            hint=f"{hint}; or {fix}" if hint else fix)


@dataclass(frozen=True)
class ArrayHeader:
    """What an .npy header declares, checked for sanity but not yet for size."""

    where: str  # "data.npz:x" or "x.npy", for messages
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool
    offset: int  # bytes before the data, in the file or zip member
    available: int  # data bytes the file or member actually holds after the header

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def rows_read(self, rows: int | None) -> int:
        n = self.shape[0] if self.shape else 1
        return n if rows is None or not self.shape or self.fortran_order else min(n, rows)

    def loaded_bytes(self, rows: int | None = None) -> int:
        """What edgeq holds once these rows are read (inputs become float32; labels stay as stored)."""
        per_row = math.prod(self.shape[1:]) if self.shape else 1
        return self.rows_read(rows) * per_row * max(self.dtype.itemsize, 4)

    def describe(self) -> str:
        return f"shape {self.shape}, dtype {self.dtype}"


class ArrayFile:
    """An .npy file or an .npz archive opened for its headers; data only on request."""

    def __init__(self, path: Path, role: str) -> None:
        self.path, self.role = path, role
        self._zip: zipfile.ZipFile | None = None
        self._members: dict[str, zipfile.ZipInfo] = {}
        self._folders: set[str] = set()
        self._headers: dict[str, ArrayHeader] = {}
        _regular(path, role)
        if path.suffix.lower() == ".npz":
            self._open_zip()
        self.keys: tuple[str, ...] = tuple(self._members) if self._zip is not None else (NPY_KEY,)

    def _open_zip(self) -> None:
        try:
            self._zip = zipfile.ZipFile(self.path)
            infos = self._zip.infolist()
        except OSError as exc:
            raise CalibrationError(f"cannot read {self.role} data {self.path}: {exc.strerror or exc}") from None
        except Exception:  # BadZipFile, or what a damaged central directory makes zipfile raise
            npy = _magic(self.path) == npy_format.MAGIC_PREFIX
            raise CalibrationError(
                f"{self.path} is not a valid .npz file (an .npz is a zip archive of .npy arrays)",
                hint=f"it is a single .npy array: rename it to {self.path.stem}.npy" if npy
                else "write it with numpy.savez or numpy.savez_compressed") from None
        for info in infos:
            name = info.filename
            if info.is_dir():
                self._folders.add(name.rstrip("/").removesuffix(".npy"))
            else:
                self._members[name[:-4] if name.endswith(".npy") else name] = info

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()

    def __enter__(self) -> "ArrayFile":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def where(self, key: str) -> str:
        return self.path.name + (f":{key}" if self._zip is not None else "")

    def missing(self, key: str) -> str | None:
        """Why ``key`` cannot be read (None when it can): absent, or a folder in the zip."""
        if key in self._members:
            return None
        if key in self._folders:
            return f"'{key}' in {self.path.name} is a folder inside the zip, not an array"
        return f"{self.path.name} has no array '{key}'"

    def _open(self, key: str) -> IO[bytes]:
        if self._zip is None:
            return open(self.path, "rb")
        return self._zip.open(self._members[key])

    def _size(self, key: str) -> int:
        return self._members[key].file_size if self._zip is not None else self.path.stat().st_size

    def header(self, key: str) -> ArrayHeader:
        """The array's declared shape and dtype, refusing pickles and impossible headers."""
        if key in self._headers:
            return self._headers[key]
        where = self.where(key)
        try:
            with self._open(key) as f:
                version = npy_format.read_magic(f)
                if version == (1, 0):
                    shape, fortran, dtype = npy_format.read_array_header_1_0(f)
                elif version == (2, 0):
                    shape, fortran, dtype = npy_format.read_array_header_2_0(f)
                else:
                    raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]}")
                offset = f.tell()
        except CalibrationError:
            raise
        except Exception as exc:  # a hostile file can make numpy's parser raise nearly anything
            raise CalibrationError(f"{where} is not a readable .npy array: {_reason(exc)}",
                                   hint="write it with numpy.save / numpy.savez") from None
        head = ArrayHeader(where, tuple(int(d) for d in shape), dtype, bool(fortran), offset,
                           self._size(key) - offset)
        if dtype.hasobject:
            raise CalibrationError(f"{where} holds Python objects (dtype {dtype}): edgeq never loads pickled data",
                                   hint="store numbers: e.g. numpy.asarray(values, dtype=numpy.float32)")
        if dtype.names is not None or dtype.subdtype is not None:
            raise CalibrationError(f"{where} has a structured dtype {dtype}; a plain numeric array is needed")
        if any(d < 0 for d in head.shape):
            raise CalibrationError(f"{where} declares a negative dimension ({head.describe()}): the file is corrupt")
        if head.available < head.nbytes:
            raise CalibrationError(
                f"{where} declares {head.describe()} ({human(head.nbytes)}) but holds only {human(max(head.available, 0))} "
                "of data: the file is truncated or corrupt", hint="write it again with numpy.save / numpy.savez")
        self._headers[key] = head
        return head

    def read(self, key: str, rows: int | None = None) -> np.ndarray:
        """The array (its first ``rows`` rows when given), refused before reading if over the limit."""
        head = self.header(key)
        need = head.loaded_bytes(rows)
        if need > data_limit():
            raise over_limit(f"{self.role} data {head.where} ({head.describe()})", need,
                             hint="use fewer samples, e.g. --samples (files are read from the start)")
        n = head.rows_read(rows)
        count = head.size if not head.shape or n == head.shape[0] else n * math.prod(head.shape[1:])
        out = np.empty(count, head.dtype)
        try:
            with self._open(key) as f:
                f.seek(head.offset) if self._zip is None else f.read(head.offset)
                _read_into(f, out.view(np.uint8).reshape(-1))
        except Exception as exc:
            raise CalibrationError(f"cannot read {self.role} data {head.where}: {_reason(exc)}",
                                   hint="the file is corrupt: write it again with numpy.save / numpy.savez") from None
        if not head.shape:
            return out.reshape(())
        if head.fortran_order:  # stored column-major: read whole (counted so above), then cut
            return np.ascontiguousarray(out.reshape(head.shape[::-1]).transpose()[:rows])
        return out.reshape((n, *head.shape[1:]))


def _read_into(f: IO[bytes], buf: memoryview | np.ndarray) -> None:
    """Fill ``buf`` from ``f`` in bounded chunks (a zip member has no readinto of its own)."""
    view = memoryview(buf)  # type: ignore[arg-type]
    pos = 0
    while pos < len(view):
        chunk = f.read(min(_CHUNK, len(view) - pos))
        if not chunk:
            raise EOFError(f"the data ends after {pos:,} of {len(view):,} bytes")
        view[pos:pos + len(chunk)] = chunk
        pos += len(chunk)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0][:200] if text else type(exc).__name__)


def _magic(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(len(npy_format.MAGIC_PREFIX))
    except OSError:
        return b""


def _regular(path: Path, role: str) -> None:
    """A readable regular file: a folder, FIFO or device named x.npy is refused, not opened
    (a FIFO would block forever, /dev/zero never ends)."""
    try:
        st = path.stat()
    except OSError as exc:
        raise CalibrationError(f"cannot read {role} data {path}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise CalibrationError(f"{role} data {path} is a folder, not a {path.suffix} file",
                               hint="pass the file itself (a folder of images must not be named .npy/.npz)")
    if not stat.S_ISREG(st.st_mode):
        raise CalibrationError(f"{role} data {path} is not a regular file (a FIFO, socket or device)",
                               hint="pass a file on disk")
    if not os.access(path, os.R_OK):
        raise CalibrationError(f"cannot read {role} data {path}: permission denied")


def show_value(v: object) -> str:
    """A number as a message shows it: 1e+38, not 9.999999680285692e+37 (a float32's float64 repr)."""
    v = v.item() if isinstance(v, np.generic) else v
    return f"{v:.7g}" if isinstance(v, float) else repr(v)


def check_values(a: np.ndarray, what: str) -> None:
    """Refuse NaN, Inf and |values| > MAX_ABS_VALUE in ``what`` (e.g. "calibration data x.npz:x"),
    naming the first one and its index.

    min/max first (no temporary array); only bad data is scanned again, in chunks."""
    if not a.size or a.dtype.kind == "b":
        return
    lo, hi = float(a.min()), float(a.max())
    if math.isfinite(lo) and math.isfinite(hi) and max(-lo, hi) <= MAX_ABS_VALUE:
        return
    flat, first, count, step = a.reshape(-1), -1, 0, 1 << 20
    for start in range(0, flat.size, step):
        chunk = flat[start:start + step].astype(np.float64)
        bad = ~(np.abs(chunk) <= MAX_ABS_VALUE)  # NaN compares False, so it is bad too
        if bad.any():
            first = start + int(np.argmax(bad)) if first < 0 else first
            count += int(bad.sum())
    value = show_value(flat[first])
    index = tuple(int(i) for i in np.unravel_index(first, a.shape))
    at = f"index {list(index)}" + (f" (sample {index[0]})" if a.ndim > 1 else "")
    raise CalibrationError(
        f"{what} holds {value} at {at}; {count:,} value(s) are NaN, Inf or beyond ±{MAX_ABS_VALUE:g} "
        "(larger values overflow the converter's float32 arithmetic)",
        hint="clean or drop those samples, or scale the data (and the model) to a sane range")


# --- images: dimensions from the first bytes, before anything is decoded -----------------------

_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def image_size(path: Path) -> tuple[str, int, int]:
    """(format, width, height) of a PNG, JPEG or BMP file, read from its header only.

    Why not ask the decoder: TensorFlow's decode_image allocates the full bitmap first, and
    Pillow (which opens lazily) is not a dependency. These three headers are small and fixed.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(32)
            if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR":
                w, h = struct.unpack(">II", head[16:24])
                return "PNG", w, h
            if head.startswith(b"BM") and len(head) >= 26:
                if struct.unpack("<I", head[14:18])[0] == 12:
                    w, h = struct.unpack("<HH", head[18:22])
                else:
                    w, h = struct.unpack("<ii", head[18:26])
                return "BMP", abs(w), abs(h)
            if head.startswith(b"\xff\xd8"):
                return ("JPEG", *_jpeg_size(f))
    except OSError as exc:
        raise CalibrationError(f"cannot read image {path}: {exc.strerror or exc}") from None
    except struct.error as exc:  # a header cut short, or a JPEG without a frame header
        raise CalibrationError(f"{path} is not a valid image: {_reason(exc)}", hint="remove or re-save it") from None
    raise CalibrationError(f"{path} is not a PNG, JPEG or BMP image (its first bytes say otherwise)",
                           hint="convert it, or move non-images out of the calibration folder")


def _jpeg_size(f: Any) -> tuple[int, int]:
    """Walk the JPEG marker segments to the frame header (SOFn) and return (width, height).

    Segments before the frame header follow one another, so a bounded number of seeks finds
    it; scan data (after SOS) is never walked."""
    f.seek(2)
    for _ in range(10_000):
        if f.read(1) != b"\xff":
            raise struct.error("no frame header (SOF) where a marker was expected")
        byte = f.read(1)
        while byte == b"\xff":  # fill bytes before a marker
            byte = f.read(1)
        if not byte:
            break
        marker = byte[0]
        if marker in (0x01, *range(0xD0, 0xD8)):
            continue  # standalone markers carry no length
        if marker in (0xD9, 0xDA):
            break  # end of image, or scan data before any frame header
        length = struct.unpack(">H", f.read(2))[0]
        if marker in _SOF:
            h, w = struct.unpack(">xHH", f.read(5))
            return w, h
        if length < 2:
            break
        f.seek(length - 2, os.SEEK_CUR)
    raise struct.error("no frame header (SOF) found")


__all__ = ["ArrayFile", "ArrayHeader", "DATA_LIMIT_ENV", "IMAGE_LIMIT_ENV", "DEFAULT_DATA_LIMIT",
           "DEFAULT_IMAGE_PIXELS", "MAX_ABS_VALUE", "NPY_KEY", "check_values", "data_limit", "show_value",
           "image_pixel_limit", "human", "image_size", "over_limit"]
