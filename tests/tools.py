"""Helpers for the codegen tests that need real tools (compilers, QEMU, a TFLM tree).

``require_tool`` is the project's one helper (tests/conftest.py): it skips when a tool is
missing on a developer machine but *fails* under ``CI=true``, because CI installs every
tool (.ci/run) and a silent skip would let the compile/QEMU tests stop running unnoticed.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Sequence

import pytest

from tests.conftest import IN_CI, require_tool

__all__ = ["IN_CI", "M4F_FLAGS", "require_tool", "tflm_dir", "run"]

M4F_FLAGS = ("-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard")


def tflm_dir() -> Path:
    """The TFLM flat tree from ``EDGEQ_TFLM_DIR``; skip when unset (CI has none)."""
    value = os.environ.get("EDGEQ_TFLM_DIR")
    if not value:
        pytest.skip("EDGEQ_TFLM_DIR is not set (a create_tflm_tree.py tree)")
    path = Path(value)
    if not (path / "tensorflow" / "lite" / "micro" / "micro_interpreter.h").is_file():
        pytest.fail(f"EDGEQ_TFLM_DIR={value} is not a TFLM tree")
    return path


def run(cmd: Sequence[str | os.PathLike[str]], *, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure, fail the test showing the command and its output."""
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f"command failed ({proc.returncode}): {' '.join(map(str, cmd))}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc
