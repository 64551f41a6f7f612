"""A real wheel, installed non-editable into a fresh venv, works from another folder.

The fresh venv borrows the heavy dependencies (TensorFlow & co.) from the test venv via
a .pth line, which adds that folder to sys.path without activating its editable edgeq.
"""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("pkg")
    wheels = tmp / "wheels"
    # --no-build-isolation: the build backend (hatchling, in the test extras) is already
    # installed, so the test needs no download.
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(ROOT)],
        capture_output=True, text=True,
    )
    assert built.returncode == 0, built.stderr
    wheel = next(wheels.glob("edgeq-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.startswith("edgeq/_data/templates/") for n in names), "templates/ missing from the wheel"
    assert any(n.startswith("edgeq/_data/targets/") and n.endswith(".toml") for n in names), "targets/ missing"
    assert "edgeq/data/example/digits.keras" in names and "edgeq/data/tflm_ops.toml" in names
    venv = tmp / "venv"
    subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(subprocess.check_output(
        [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
    ).strip())
    with zipfile.ZipFile(wheel) as z:  # a wheel install is an unzip plus metadata; pip is not needed for it
        z.extractall(site)
    (site / "zz_borrowed_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    entry = venv / "bin" / "edgeq"
    entry.write_text(f"#!{venv / 'bin' / 'python'}\nimport sys\nfrom edgeq.cli.app import main\nsys.exit(main())\n")
    entry.chmod(0o755)
    return venv


def test_installed_wheel_runs_from_elsewhere(fresh_venv: Path, tmp_path: Path) -> None:
    py = str(fresh_venv / "bin" / "python")
    where = subprocess.check_output([py, "-c", "import edgeq; print(edgeq.__file__)"], cwd=tmp_path, text=True).strip()
    assert where.startswith(str(fresh_venv)), where
    r = subprocess.run([str(fresh_venv / "bin" / "edgeq"), "targets", "--json"], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "cortex-m" in json.dumps(json.loads(r.stdout))
    r = subprocess.run([str(fresh_venv / "bin" / "edgeq"), "build", "--example", "--out", "ex", "--json"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["micro"]["supported"] is True
    assert (tmp_path / "ex" / "digits.tflite").is_file() and (tmp_path / "ex" / "report.json").is_file()
