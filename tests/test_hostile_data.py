"""Hostile and broken data files (issue 12): every refusal is one clean error, nothing is a bomb.

Calibration, evaluation and training data come from strangers. Each case here was a
traceback, a silent 0 % accuracy, a crash of the converter or gigabytes of memory before:
a 2 GiB array hidden in a small .npz, a 20000×20000 PNG of 48 KB, ``--samples 10^9``,
values of 1e20 (a LayerNorm model segfaulted), labels that are strings, negative or out
of range, a FIFO named x.npy (blocked forever). Cases that never reach TensorFlow call
the library (fast); one or two per defect go through the real CLI in a subprocess, with
the peak RSS of that subprocess measured where the input was a memory bomb.
"""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from edgeq.model.calibration import load_samples, random_samples
from edgeq.model.data_files import DATA_LIMIT_ENV, IMAGE_LIMIT_ENV
from edgeq.errors import CalibrationError, UserError
from edgeq.model.loading import IOSpec
from tests.conftest import Result, assert_clean_error

IN4 = (IOSpec("x", (1, 4)),)
OUT3 = (IOSpec("probs", (1, 3)),)
IMG = (IOSpec("image", (1, 8, 8, 1)),)
PEAK_MB = 1500  # a CLI run converting a tiny model peaks near 700 MB; a bomb would be 2+ GB
RNG = np.random.default_rng(12)


# --- fixtures ---------------------------------------------------------------------------------

def _npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def _zero_member(zf: zipfile.ZipFile, name: str, shape: tuple[int, ...]) -> None:
    """A deflated .npy member of zeros, streamed: 2 GiB cost ~9 MB of file and a few seconds."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": shape})
    left = int(np.prod(shape)) * 4
    zeros = bytes(1 << 24)
    with zf.open(name + ".npy", "w", force_zip64=True) as f:
        f.write(header.getvalue())
        while left:
            f.write(zeros[: min(left, len(zeros))])
            left -= min(left, len(zeros))


def _png(width: int, height: int, depth: int = 8) -> bytes:
    """A valid grayscale PNG of zeros; 1-bit depth keeps a 20000×20000 one at 48 KB."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    comp, row = zlib.compressobj(9), b"\0" * (1 + (width * depth + 7) // 8)
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, depth, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two tiny models (Dense+LayerNorm on 4 values; a conv net on 8×8×1) and their data."""
    import keras

    root = tmp_path_factory.mktemp("hostile")
    keras.utils.set_random_seed(0)
    i = keras.Input((4,))
    h = keras.layers.LayerNormalization()(keras.layers.Dense(8)(i))
    keras.Model(i, keras.layers.Dense(3, activation="softmax")(h)).save(root / "ln.keras")
    i = keras.Input((8, 8, 1))
    h = keras.layers.Flatten()(keras.layers.Conv2D(2, 3)(i))
    keras.Model(i, keras.layers.Dense(3, activation="softmax")(h)).save(root / "conv.keras")
    x = RNG.random((60, 4), dtype=np.float32)
    y = RNG.integers(0, 3, 60)
    np.save(root / "x.npy", x)
    np.savez(root / "eval.npz", x=x[:30], y=y[:30])
    with zipfile.ZipFile(root / "bomb.npz", "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("x.npy", _npy_bytes(x))
        zf.writestr("y.npy", _npy_bytes(y))
        _zero_member(zf, "junk", (1 << 27, 4))  # 2 GiB, never used unless named
    (root / "huge_png").mkdir()
    (root / "huge_png" / "a.png").write_bytes(_png(8, 8))
    (root / "huge_png" / "b.png").write_bytes(_png(20000, 20000, depth=1))
    big = x.copy()
    big[7, 2] = 1e20
    np.save(root / "big.npy", big)
    return {p.stem if p.suffix != ".npz" else p.name: p for p in root.iterdir()}


def _cli(*args: object, timeout: float = 300) -> tuple[Result, int]:
    """The real CLI in a child of a small wrapper, so RUSAGE_CHILDREN is that CLI's peak alone."""
    wrap = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
            "sys.stdout.write(p.stdout); sys.stderr.write(p.stderr + '\\nPEAK_KB=%d' % "
            "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(p.returncode)")
    env = {k: v for k, v in os.environ.items() if k not in (DATA_LIMIT_ENV, IMAGE_LIMIT_ENV)}
    proc = subprocess.run([sys.executable, "-c", wrap, sys.executable, "-m", "edgeq", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=env)
    err, _, peak = proc.stderr.rpartition("\nPEAK_KB=")
    return Result(proc.returncode, proc.stdout, err), int(peak) // 1024


def _build(data: dict[str, Path], tmp_path: Path, *args: object, model: str = "ln") -> tuple[Result, int]:
    return _cli("build", data[model], "--target", "cortex-m", "-o", tmp_path / "out", *args)


# --- 1. npz: only the keys used are read, each header checked before its data --------------------

def test_unused_2gib_key_is_never_decompressed(data: dict[str, Path], tmp_path: Path) -> None:
    r, peak = _build(data, tmp_path, "-c", data["bomb.npz"], "-e", data["bomb.npz"])
    assert r.code == 0, r.stderr
    assert peak < PEAK_MB, f"peak RSS {peak} MB"


def test_array_over_the_limit_is_refused_from_its_header(data: dict[str, Path], tmp_path: Path) -> None:
    r, peak = _build(data, tmp_path, "-c", f"{data['bomb.npz']}:junk")
    assert_clean_error(r, "bomb.npz:junk", "(134217728, 4)", "2.0 GiB", "1.0 GiB data limit", DATA_LIMIT_ENV)
    assert peak < PEAK_MB, f"peak RSS {peak} MB"


def test_data_limit_is_overridable_and_rows_are_read_from_the_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    x = RNG.random((100, 4), dtype=np.float32)
    np.savez_compressed(tmp_path / "d.npz", x=x, y=np.arange(100) % 3)
    monkeypatch.setenv(DATA_LIMIT_ENV, "1K")
    # x: 1600 bytes, int64 y: 800 bytes
    with pytest.raises(CalibrationError, match=r"d.npz \(2 arrays together\) needs 2.3 KiB .*1.0 KiB data limit"):
        load_samples(tmp_path / "d.npz", IN4)
    s = load_samples(tmp_path / "d.npz", IN4, outputs=OUT3, max_samples=10)  # only the first 10 rows are read
    assert np.array_equal(s.xs[0], x[:10]) and list(s.y) == [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]
    monkeypatch.setenv(DATA_LIMIT_ENV, "4KiB")
    assert np.array_equal(load_samples(tmp_path / "d.npz", IN4).xs[0], x)
    monkeypatch.setenv(DATA_LIMIT_ENV, "lots")
    with pytest.raises(UserError, match=f"{DATA_LIMIT_ENV}='lots' is not a positive size"):
        load_samples(tmp_path / "d.npz", IN4)


def _raw_npz(path: Path, member: bytes, name: str = "x.npy") -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(name, member)
    return path


def _header(shape: object, descr: str = "<f4", fortran: bool = False) -> bytes:
    text = repr({"descr": descr, "fortran_order": fortran, "shape": shape})
    pad = 64 - (10 + len(text) + 1) % 64
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text) + pad + 1) + text.encode() + b" " * pad + b"\n"


@pytest.mark.parametrize("member, needle", [
    (_header((1000, 4)) + bytes(100), "declares shape (1000, 4), dtype float32 (15.6 KiB) but holds only 100 bytes"),
    (_header((-5, 4)), "negative dimension"),
    (_header((3,), "|O") + bytes(24), "Python objects (dtype object): edgeq never loads pickled data"),
    (_header((3,), [("a", "<f4")]) + bytes(12), "structured dtype"),  # type: ignore[arg-type]
    (b"\x93NUMPY\x01\x00\xff\xff" + b"{" * 70000, "not a readable .npy array"),
    (b"just some bytes", "not a readable .npy array"),
])
def test_bad_npy_headers_in_an_npz(tmp_path: Path, member: bytes, needle: str) -> None:
    with pytest.raises(CalibrationError) as exc:
        load_samples(_raw_npz(tmp_path / "h.npz", member), IN4)
    assert needle in str(exc.value) and "h.npz:x" in str(exc.value)


def test_plain_npy_header_is_checked_too(tmp_path: Path) -> None:
    (tmp_path / "t.npy").write_bytes(_npy_bytes(RNG.random((50, 4), dtype=np.float32))[:200])
    with pytest.raises(CalibrationError, match=r"t.npy declares shape \(50, 4\).*truncated"):
        load_samples(tmp_path / "t.npy", IN4)
    (tmp_path / "o.npy").write_bytes(_header((2,), "|O") + b"\x80\x04N." * 4)
    with pytest.raises(CalibrationError, match="never loads pickled data"):
        load_samples(tmp_path / "o.npy", IN4)


def test_odd_but_valid_arrays_load_exactly(tmp_path: Path) -> None:
    x = RNG.random((9, 4))
    np.save(tmp_path / "f.npy", np.asfortranarray(x))
    np.save(tmp_path / "be.npy", x.astype(">f8"))
    np.save(tmp_path / "u8.npy", (x * 255).astype(np.uint8))
    assert np.allclose(load_samples(tmp_path / "f.npy", IN4, max_samples=4).xs[0], x[:4])
    assert np.allclose(load_samples(tmp_path / "be.npy", IN4).xs[0], x)
    assert load_samples(tmp_path / "u8.npy", IN4).xs[0].dtype == np.float32
    np.save(tmp_path / "one.npy", x[0])  # one unbatched sample
    assert load_samples(tmp_path / "one.npy", IN4, max_samples=3).xs[0].shape == (1, 4)


# --- 2. a .npz that is not a zip ------------------------------------------------------------------

def test_non_zip_npz_says_so(tmp_path: Path) -> None:
    (tmp_path / "text.npz").write_text("hello, not a zip\n" * 10)
    with pytest.raises(CalibrationError, match=r"text.npz is not a valid .npz file \(an .npz is a zip") as exc:
        load_samples(tmp_path / "text.npz", IN4)
    assert "pickle" not in str(exc.value)
    (tmp_path / "renamed.npz").write_bytes(_npy_bytes(np.zeros((3, 4), np.float32)))
    with pytest.raises(CalibrationError, match="rename it to renamed.npy"):
        load_samples(tmp_path / "renamed.npz", IN4)


# --- 3. image folders: dimensions before decoding -------------------------------------------------

def test_huge_png_is_refused_before_decoding(data: dict[str, Path], tmp_path: Path) -> None:
    r, peak = _build(data, tmp_path, "-c", data["huge_png"], model="conv")
    assert_clean_error(r, "b.png", "20000×20000 PNG", "67,108,864-pixel limit", IMAGE_LIMIT_ENV)
    assert peak < PEAK_MB, f"peak RSS {peak} MB (decoding it took 2.5 GB for one channel)"


def test_corrupt_and_foreign_images_are_named(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(_png(8, 8))
    (tmp_path / "b.png").write_bytes(b"GIF89a" + bytes(40))
    with pytest.raises(CalibrationError, match=r"b.png is not a PNG, JPEG or BMP image"):
        load_samples(tmp_path, IMG)
    (tmp_path / "b.png").write_bytes(_png(16, 16)[:60])  # a valid header, then nothing
    with pytest.raises(CalibrationError, match=r"cannot decode image .*b.png: Invalid PNG data") as exc:
        load_samples(tmp_path, IMG)
    assert "function_node" not in str(exc.value)
    (tmp_path / "c.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF" + bytes(20))
    with pytest.raises(CalibrationError, match=r"c.jpg is not a valid image: no frame header"):
        load_samples(tmp_path, IMG)  # every header is checked before the first decode
    # only the images asked for are opened: the broken ones sort after the first
    assert load_samples(tmp_path, IMG, max_samples=1).xs[0].shape == (1, 8, 8, 1)


def test_image_limits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(3):
        (tmp_path / f"{i}.png").write_bytes(_png(40, 40))
    monkeypatch.setenv(IMAGE_LIMIT_ENV, "1000")
    with pytest.raises(CalibrationError, match=r"0.png is a 40×40 PNG: more than the 1,000-pixel limit"):
        load_samples(tmp_path, IMG)
    monkeypatch.setenv(IMAGE_LIMIT_ENV, "1600")
    monkeypatch.setenv(DATA_LIMIT_ENV, "1500")  # 3 images of 8×8×1 as float32: 768 bytes
    assert load_samples(tmp_path, IMG).xs[0].shape == (3, 8, 8, 1)
    monkeypatch.setenv(DATA_LIMIT_ENV, "700")
    with pytest.raises(CalibrationError, match="3 images of .* at 8×8×1 needs 768 bytes"):
        load_samples(tmp_path, IMG)


# --- 4. sample counts -------------------------------------------------------------------------------

def test_random_samples_are_bounded_before_allocating(data: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(CalibrationError, match=r"--samples 1,000,000,000 .* needs 14.9 GiB .* 1.0 GiB data limit") as exc:
        random_samples(IN4, 10**9)
    assert "--samples 67,108,864 or fewer" in str(exc.value)
    for n in (0, -5):
        with pytest.raises(CalibrationError, match="at least 1"):
            random_samples(IN4, n)
    with pytest.raises(CalibrationError, match="at least 1"):
        load_samples(data["x"], IN4, max_samples=0)
    r, peak = _build(data, tmp_path, "-c", "random", "-n", "1000000000")
    assert_clean_error(r, "--samples", "1.0 GiB data limit")
    assert peak < PEAK_MB


# --- 5. values the converter cannot take --------------------------------------------------------------

def test_huge_values_are_refused_not_a_crash(data: dict[str, Path], tmp_path: Path) -> None:
    r, _ = _build(data, tmp_path, "-c", data["big"])  # this LayerNorm model: SIGABRT at 1e18, SIGSEGV at 1e20
    assert_clean_error(r, "big.npy", "1e+20", "index [7, 2]", "sample 7")


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf, 1e38, -2e9])
@pytest.mark.parametrize("role", ["calibration", "evaluation", "training"])
def test_non_finite_or_huge_values_name_file_key_value_and_index(tmp_path: Path, value: float, role: str) -> None:
    x = RNG.random((20, 4), dtype=np.float32)
    x[11, 3] = value
    np.savez(tmp_path / "v.npz", feats=x)
    with pytest.raises(CalibrationError) as exc:
        load_samples(f"{tmp_path / 'v.npz'}:feats", IN4, role=role)
    text = str(exc.value)
    assert f"{role} data v.npz:feats holds {float(np.float32(value)):.7g}" in text and "index [11, 3]" in text, text
    x[11, 3] = 1e9  # the bound itself is accepted
    np.save(tmp_path / "ok.npy", x)
    assert load_samples(tmp_path / "ok.npy", IN4, role=role).xs[0][11, 3] == np.float32(1e9)


# --- 6. labels ----------------------------------------------------------------------------------------

X20 = RNG.random((20, 4), dtype=np.float32)


@pytest.mark.parametrize("y, needle", [
    (np.array(["cat"] * 20), "are dtype <U3"),
    (np.zeros((20, 2, 2)), "have shape (20, 2, 2) for output 'probs' of shape (N, 3)"),
    (np.array(1), "are a single value"),
    (np.full(20, -1), "hold -1 at sample 0 (20 bad labels)"),
    (np.full(20, 10**12), "hold 1000000000000 at sample 0"),
    (np.arange(20) % 4, "hold 3 at sample 3 (5 bad labels); output 'probs' has 3 classes"),
    (np.where(np.arange(20) == 5, np.nan, 1.0), "hold nan at sample 5"),
    (np.full(20, 0.5), "hold 0.5 at sample 0"),
    (np.ones(20, np.complex64), "are dtype complex64"),
    (np.zeros(19, np.int64), "y.npz:y: 19 labels for 20 samples"),
    (np.eye(4)[np.arange(20) % 4], "have shape (20, 4) for output 'probs'"),
])
def test_bad_labels_are_refused_with_what_is_accepted(tmp_path: Path, y: np.ndarray, needle: str) -> None:
    np.savez(tmp_path / "y.npz", x=X20, y=y)
    with pytest.raises(CalibrationError) as exc:
        load_samples(tmp_path / "y.npz", IN4, role="evaluation", outputs=OUT3)
    text = str(exc.value)
    assert needle in text, text
    assert "labels" in text and ("integer class ids 0..C-1" in text or "labels for" in text), text


@pytest.mark.parametrize("y, classes", [
    (np.arange(20) % 3, [0, 1, 2]),
    ((np.arange(20) % 3).reshape(20, 1).astype(np.float32), [0, 1, 2]),
    (np.eye(3)[np.arange(20) % 3], [0, 1, 2]),
    (np.full((20, 3), 1 / 3), None),  # soft targets: regression-style, no class ids
])
def test_accepted_label_forms(tmp_path: Path, y: np.ndarray, classes: list[int] | None) -> None:
    np.savez(tmp_path / "y.npz", x=X20, y=y)
    s = load_samples(tmp_path / "y.npz", IN4, role="evaluation", outputs=OUT3)
    assert (s.y is None) if classes is None else list(s.y[:3]) == classes  # type: ignore[index]
    reg = (IOSpec("value", (1, 1)),)  # a regression output takes any finite float targets
    np.savez(tmp_path / "r.npz", x=X20, y=RNG.normal(size=(20, 1)) * 100)
    assert load_samples(tmp_path / "r.npz", IN4, role="evaluation", outputs=reg).targets[0].shape == (20, 1)


def test_bad_labels_through_the_cli(data: dict[str, Path], tmp_path: Path) -> None:
    np.savez(tmp_path / "ev.npz", x=X20, y=np.array(["a"] * 20))
    r, _ = _build(data, tmp_path, "-c", data["x"], "-e", tmp_path / "ev.npz")
    assert_clean_error(r, "ev.npz:y", "dtype <U1", "integer class ids")


def test_out_of_range_labels_through_the_cli(data: dict[str, Path], tmp_path: Path) -> None:
    np.savez(tmp_path / "ev.npz", x=X20, y=np.full(20, -1))
    r, _ = _build(data, tmp_path, "-c", data["x"], "-e", tmp_path / "ev.npz")
    assert_clean_error(r, "ev.npz:y", "hold -1", "0..2")


# --- 7. everything else a data path can be ---------------------------------------------------------

def test_odd_paths_and_keys(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.zeros((0, 4), np.float32), r=np.zeros(7, np.float32), note=np.zeros(3))
    with zipfile.ZipFile(tmp_path / "d.npz", "a") as zf:
        zf.writestr("sub.npy/", b"")
        zf.writestr("raw", b"not an array")
    cases = {
        "d.npz": "calibration data in d.npz:x is empty",
        "d.npz:r": "d.npz:r has shape (7,), but input 'x' expects (N, 4)",
        "d.npz:missingkey": "d.npz has no array 'missingkey' (keys: note, r, raw, x)",
        "d.npz:sub": "'sub' in d.npz is a folder inside the zip, not an array",
        "d.npz:raw": "d.npz:raw is not a readable .npy array",
        "d.npz:x,note": "d.npz:note: 3 labels for 0 samples",
    }
    for arg, needle in cases.items():
        with pytest.raises(CalibrationError) as exc:
            load_samples(f"{tmp_path}/{arg}", IN4)
        assert needle in str(exc.value), (arg, str(exc.value))
    (tmp_path / "x.npy").mkdir()
    os.mkfifo(tmp_path / "f.npy")
    with pytest.raises(CalibrationError, match=r"x.npy is a folder, not a .npy file"):
        load_samples(tmp_path / "x.npy", IN4)
    with pytest.raises(CalibrationError, match=r"f.npy is not a regular file \(a FIFO"):
        load_samples(tmp_path / "f.npy", IN4)
    with pytest.raises(CalibrationError, match="File name too long"):
        load_samples(tmp_path / ("a" * 5000 + ".npy"), IN4)


def test_fifo_and_binary_labels_through_the_cli(data: dict[str, Path], tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "x.npy")  # reading it blocked forever
    r, _ = _cli("quantize", data["ln"], "-o", tmp_path / "m.tflite", "-c", tmp_path / "x.npy", timeout=120)
    assert_clean_error(r, "x.npy", "not a regular file")
    (tmp_path / "labels.txt").write_bytes(bytes(range(256)) * 8)
    r, _ = _build(data, tmp_path, "-c", data["x"], "--labels", tmp_path / "labels.txt")
    assert_clean_error(r, "labels.txt")
