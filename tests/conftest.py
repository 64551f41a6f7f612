"""Shared fixtures: real tiny models, a CLI runner, and the missing-tool policy.

Under ``CI=true`` a missing tool fails the test (CI must install everything); on a
developer machine it skips with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_tool(name: str, hint: str = "") -> str:
    """Path of an executable; fail under CI=true, skip elsewhere, when it is missing."""
    path = shutil.which(name) or (name if os.path.isabs(name) and os.access(name, os.X_OK) else None)
    if path:
        return path
    message = f"required tool not installed: {name}" + (f" ({hint})" if hint else "")
    if IN_CI:
        pytest.fail(message + " (CI must install it: see .ci/run)", pytrace=False)
    pytest.skip(message)


def require_module(name: str) -> None:
    import importlib.util

    if importlib.util.find_spec(name) is None:
        if IN_CI:
            pytest.fail(f"required Python package not installed: {name}")
        pytest.skip(f"{name} not installed")


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def json(self) -> dict:  # type: ignore[type-arg]
        import json

        return json.loads(self.stdout)


def run_edgeq(*args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 600) -> Result:
    """Run the real CLI in a subprocess, as a user would."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "edgeq", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=full_env,
        timeout=timeout,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every test model and data file, built once per session."""
    from tests.models import build_all

    return build_all(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def example_tflite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled digits example quantized to int8 (uint8 I/O), via the real CLI."""
    from edgeq.cli.example import example_files

    model, calib, ev = example_files()
    out = tmp_path_factory.mktemp("example") / "digits.tflite"
    r = run_edgeq("quantize", model, "-o", out, "-c", calib, "-e", ev)
    assert r.code == 0, r.stderr
    return out


def assert_clean_error(r: Result, *needles: str, code: int = 2) -> None:
    """One readable error, the documented exit code, no traceback."""
    assert r.code == code, (r.code, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout, r.stderr
    assert "error:" in r.stderr, r.stderr
    low = r.stderr.lower()
    for n in needles:
        assert n.lower() in low, (n, r.stderr)
