"""``--strip`` (issue 15, part 4): the shipped model loses what TFLM never reads, computes
the same bytes on TFLM, keeps its offline memory plan, and its firmware still names the
tensors and runs on the device (QEMU Cortex-M4, real TFLM + CMSIS-NN)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_edgeq


def _tflm_outputs(data: bytes, n: int = 4) -> list[bytes]:
    from tflite_micro.python.tflite_micro import runtime

    it = runtime.Interpreter.from_bytes(data)
    shape = it.get_input_details(0)["shape"]
    rng = np.random.default_rng(0)
    outs = []
    for _ in range(n):
        it.set_input(rng.integers(0, 256, size=shape, dtype=np.uint8), 0)
        it.invoke()
        outs.append(it.get_output(0).tobytes())
    return outs


def test_strip_removes_names_signatures_and_description_only(example_tflite: Path) -> None:
    from ai_edge_litert import schema_py_generated as schema

    from edgeq.firmware.memory_plan import METADATA_NAME, plan, read_plan, write_plan
    from edgeq.firmware.strip import strip, stripped_info
    from edgeq.model.tflite_info import parse

    data = write_plan(example_tflite.read_bytes(), plan(example_tflite.read_bytes()))  # with a plan to keep
    out = strip(data)
    assert len(out) < len(data) and strip(data) == out  # smaller, deterministic
    m = schema.ModelT.InitFromPackedBuf(out, 0)
    assert all(t.name in (None, b"") for sg in m.subgraphs for t in sg.tensors)
    assert not m.signatureDefs and not m.description
    assert [x.name for x in m.metadata] == [METADATA_NAME.encode()] and read_plan(out) == read_plan(data)
    assert _tflm_outputs(out) == _tflm_outputs(data)
    info = stripped_info(out, parse(data))
    assert [t.name for t in info.inputs] == [t.name for t in parse(data).inputs] and info.size_bytes == len(out)


@pytest.mark.slow
def test_build_strip_reports_the_saving_and_the_firmware_runs_on_qemu(tmp_path_factory: pytest.TempPathFactory) -> None:
    from tests.conftest import require_tool
    from tests.tools import tflm_cache, tflm_dir

    for tool in ("cmake", "arm-none-eabi-gcc", "qemu-system-arm"):
        require_tool(tool)
    tflm_cache(tmp_path_factory)  # the session's TFLM library cache, shared with test_verify.py
    out = tmp_path_factory.mktemp("strip") / "fw"
    r = run_edgeq("build", "--example", "--target", "cortex-m4", "--board", "qemu-mps2-an386", "--out", out,
                  "--strip", "--verify", "--tflm-dir", tflm_dir("cmsis-nn"), "--json", timeout=1800)
    assert r.code == 0, r.stderr[-3000:]
    doc = json.loads(r.stdout)
    stripped = doc["tflite"]["stripped"]
    assert stripped["bytes_saved"] > 1000 and stripped["bytes_after"] == (out / "digits.tflite").stat().st_size
    assert doc["verify"]["ok"] and doc["verify"]["output_match"]
    header = (out / "src" / "digits_model_settings.h").read_text()
    assert "serving_default" in header  # the settings header still names the tensors
    assert b"serving_default" not in (out / "digits.tflite").read_bytes()


def test_emit_strip_ships_the_stripped_array_and_keeps_the_names(example_tflite: Path, tmp_path: Path) -> None:
    """``edgeq emit --strip``: the C array is the stripped model (same bytes on TFLM, smaller
    by what the report says), the settings header still names the tensors, and the output
    is deterministic; without ``--strip`` the array is the file as given."""
    from edgeq.firmware.strip import strip

    data = example_tflite.read_bytes()
    runs = {}
    for label, extra in (("plain", ()), ("strip", ("--strip",)), ("again", ("--strip",))):
        r = run_edgeq("emit", example_tflite, "--out", tmp_path / label, "--name", "digits", "--json", *extra)
        assert r.code == 0 and "Traceback" not in r.stderr, r.stderr[-2000:]
        runs[label] = json.loads(r.stdout)
    saved = runs["strip"]["stripped"]
    assert runs["plain"]["stripped"] is None
    assert saved == {"bytes_before": len(data), "bytes_after": len(strip(data)), "bytes_saved": len(data) - len(strip(data))}
    assert saved["bytes_saved"] > 1000 and runs["strip"]["model"]["size_bytes"] == saved["bytes_after"]
    import hashlib
    import re

    source = (tmp_path / "strip" / "digits_model_data.cc").read_text()
    array = bytes(int(h, 16) for h in re.findall(r"0x([0-9a-f]{2})", source.split("[] = {", 1)[1]))
    assert array == strip(data) and b"serving_default" in data and b"serving_default" not in array
    assert f"from {example_tflite.name}, stripped by --strip" in source  # the hash below is the array's, not the file's
    assert hashlib.sha256(array).hexdigest() in source
    assert "serving_default" in (tmp_path / "strip" / "digits_model_settings.h").read_text()
    for name in ("digits_model_data.cc", "digits_model_settings.h", "digits_op_resolver.h"):
        assert (tmp_path / "strip" / name).read_bytes() == (tmp_path / "again" / name).read_bytes(), name
    # the stripped model's arena is measured on what ships, and TFLM needs no more for it
    assert runs["strip"]["arena"]["host_bytes"] <= runs["plain"]["arena"]["host_bytes"]
