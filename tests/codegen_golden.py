"""Golden-file comparison for generated trees (copier-style ``reference_files``).

The expected trees live in ``tests/golden/<case>/``. Parts that come from the converter's
bytes — the model array, its SHA-256, its size (and sums with it), the converter's
version string inside the array — are normalised on both sides, so a TensorFlow patch
release does not churn the goldens while every line edgeq itself writes is compared.
Regenerate after an intended change with ``EDGEQ_UPDATE_GOLDEN=1 pytest tests/...`` and
review the diff.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

GOLDEN = Path(__file__).resolve().parent / "golden"
_ARRAY_LINE = re.compile(r"^  0x[0-9a-f]{2},.*$")


def normalise(text: str, *, sha256: str, size: int, runtime_code_bytes: int) -> str:
    """Replace model-byte-derived values with placeholders (see module docstring)."""
    lines, out, in_model = text.splitlines(keepends=True), [], False
    for line in lines:
        if "_model_data[]" in line and line.rstrip().endswith("= {"):
            in_model = True
            out.append(line)
            continue
        if in_model:
            if _ARRAY_LINE.match(line):
                if not out[-1].startswith("  <model bytes>"):
                    out.append("  <model bytes>\n")
                continue
            in_model = False
        out.append(line)
    text = "".join(out).replace(sha256, "<model sha256>")
    if runtime_code_bytes:
        text = re.sub(rf"(?<!\d){size + runtime_code_bytes}(?!\d)", "<model size + runtime>", text)
    text = re.sub(rf"(?<!\d){size}(?!\d)", "<model size>", text)
    if '"kind": "edgeq-manifest"' in text:  # file hashes follow the model bytes
        text = re.sub(r'"[0-9a-f]{64}"', '"<sha256>"', text)
    return text


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def compare(case: str, root: Path, *, sha256: str, size: int, runtime_code_bytes: int = 0) -> None:
    """Assert the generated tree under ``root`` equals ``tests/golden/<case>``."""
    actual = {k: normalise(v.decode("utf-8"), sha256=sha256, size=size, runtime_code_bytes=runtime_code_bytes)
              for k, v in tree(root).items()}
    expected_dir = GOLDEN / case
    if os.environ.get("EDGEQ_UPDATE_GOLDEN") == "1":
        shutil.rmtree(expected_dir, ignore_errors=True)
        for rel, text in actual.items():
            dest = expected_dir / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(text, encoding="utf-8")
    expected = {k: v.decode("utf-8") for k, v in tree(expected_dir).items()} if expected_dir.is_dir() else {}
    hint = "regenerate with EDGEQ_UPDATE_GOLDEN=1 if the change is intended, then review the diff"
    assert sorted(actual) == sorted(expected), f"{case}: file list differs ({hint})"
    for rel in actual:
        if actual[rel] != expected[rel]:
            import difflib

            diff = "".join(difflib.unified_diff(expected[rel].splitlines(True), actual[rel].splitlines(True), f"golden/{rel}", rel, n=2))
            raise AssertionError(f"{case}/{rel} differs from the golden file ({hint}):\n{diff[:4000]}")
