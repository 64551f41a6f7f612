"""Helpers for the codegen tests that need real tools (compilers, QEMU, a TFLM tree).

``require_tool`` is the project's one helper (tests/conftest.py): it skips when a tool is
missing on a developer machine but *fails* under ``CI=true``, because CI installs every
tool (.ci/run) and a silent skip would let the compile/QEMU tests stop running unnoticed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Sequence

import pytest

from tests.conftest import IN_CI, ROOT, require_tool

__all__ = ["IN_CI", "M4F_FLAGS", "arena_constant", "build_report", "require_tool", "tflm_cache", "tflm_dir", "run"]

M4F_FLAGS = ("-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard")


TREE_MARKER = Path("tensorflow") / "lite" / "micro" / "micro_interpreter.h"
_session_cache: Path | None = None


def _missing_tree(message: str) -> None:
    if IN_CI:
        pytest.fail(message + " (CI must provide it: see .ci/run)", pytrace=False)
    pytest.skip(message)


def tflm_dir(kind: str = "cmsis-nn") -> Path:
    """A TFLM flat tree: ``EDGEQ_TFLM_DIR``, else ``../shared/tflm`` next to the checkout.

    Either may be one tree, or a folder holding ``cmsis-nn/`` (every Cortex-M target) and
    ``reference/`` (host) trees, from which ``kind`` is picked. A missing tree fails under
    ``CI=true`` and skips elsewhere; a path that is set but holds no tree always fails.
    """
    value = os.environ.get("EDGEQ_TFLM_DIR")
    root = Path(value) if value else ROOT.parent / "shared" / "tflm"
    for path in (root, root / kind):
        if (path / TREE_MARKER).is_file():
            return path
    if value:
        pytest.fail(f"EDGEQ_TFLM_DIR={value} is not a TFLM tree (nor a folder holding a {kind}/ tree)")
    _missing_tree(f"no TFLM tree: set EDGEQ_TFLM_DIR or put one at {root} (/work/shared/tflm/README.md)")
    raise AssertionError("unreachable")


def tflm_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The TFLM library cache for this test run: ``EDGEQ_CACHE_DIR`` when the environment
    sets it (CI may keep one between runs), else one session temp folder, exported so
    every verify in this process and its CLI children build each library once."""
    global _session_cache
    if _session_cache is None:
        preset = os.environ.get("EDGEQ_CACHE_DIR")
        _session_cache = Path(preset) if preset else tmp_path_factory.getbasetemp() / "edgeq-cache"
        _session_cache.mkdir(parents=True, exist_ok=True)
        os.environ["EDGEQ_CACHE_DIR"] = str(_session_cache)
    return _session_cache


def run(cmd: Sequence[str | os.PathLike[str]], *, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure, fail the test showing the command and its output."""
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f"command failed ({proc.returncode}): {' '.join(map(str, cmd))}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def build_report(out: Path) -> dict:
    """The ``report.json`` an ``edgeq build --out OUT`` wrote."""
    return json.loads((out / "report.json").read_text())


def arena_constant(out: Path) -> int:
    """The ``k<Name>TensorArenaSize`` the build wrote into ``OUT/src/<name>_model_settings.h``."""
    header = next((out / "src").glob("*_model_settings.h")).read_text()
    found = re.search(r"TensorArenaSize\s*=\s*(\d+)", header)
    assert found, f"no TensorArenaSize in {out}/src"
    return int(found.group(1))
