"""``edgeq emit``: golden sources, byte-exact arrays, compiles (gcc, g++, arm-none-eabi),
hostile names, determinism, re-run rules, the typer adapters."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from edgeq.cli.emit import emit_command
from edgeq.cli.targets import targets_command
from edgeq.firmware.emit import emit
from edgeq.firmware.resolver import resolve_ops
from edgeq.errors import OutputExistsError, UnsupportedOpError, UserError
from edgeq.model.tflite_info import OpInfo, read_tflite
from tests.codegen_golden import compare, tree
from tests.codegen_models import mobilenet_025, tiny_cnn
from tests.conftest import require_module
from tests.test_codegen_c_array import CHECK_PROGRAM
from tests.tools import M4F_FLAGS, require_tool, run, tflm_dir

TINY_HOST_ARENA = 2208  # fixed, so goldens do not move with tflite-micro nightlies
HOSTILE_NAMES = ["my model", "3-in-1 net", 'we"ird*/name', "$(rm -rf /)", "int", "class", "ünïcödé", "__x__"]


@pytest.fixture(scope="module")
def tiny() -> Path:
    return tiny_cnn()


@pytest.fixture(scope="module")
def mobilenet() -> Path:
    return mobilenet_025()


def _emit(model: Path, out: Path, **kw):  # type: ignore[no-untyped-def]
    kw.setdefault("arena_bytes", TINY_HOST_ARENA)
    return emit(model, out=out, **kw)


def test_golden_tree(tiny: Path, tmp_path: Path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\n\ndog \"good\"\n??= bird\n", encoding="utf-8")
    result = _emit(tiny, tmp_path / "out", name="tiny", labels=labels)
    data, info = read_tflite(tiny)
    assert result.name == "tiny" and not result.warnings
    assert result.arena.host_bytes == TINY_HOST_ARENA and result.arena.target_bytes >= TINY_HOST_ARENA
    compare("emit-tiny", tmp_path / "out", sha256=info.sha256, size=info.size_bytes)


def test_two_runs_are_byte_identical(tiny: Path, tmp_path: Path) -> None:
    _emit(tiny, tmp_path / "a", name="tiny", lang="c", section=".rodata.model")
    _emit(tiny, tmp_path / "b", name="tiny", lang="c", section=".rodata.model")
    assert tree(tmp_path / "a") == tree(tmp_path / "b")
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "a").iterdir()}
    again = _emit(tiny, tmp_path / "a", name="tiny", lang="c", section=".rodata.model")
    assert {a.action for a in again.write.actions} == {"unchanged"}
    assert before == {p: p.stat().st_mtime_ns for p in (tmp_path / "a").iterdir()}


@pytest.mark.parametrize("lang", ["c", "cpp"])
@pytest.mark.parametrize("which", ["tiny", "mobilenet"])
def test_array_equals_tflite_byte_for_byte(which: str, lang: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """A C program (gcc) compares the emitted array with the .tflite on disk; C++ arrays
    are linked into that C program, which also proves the extern "C" guards."""
    gcc = require_tool("gcc")
    model: Path = request.getfixturevalue(which)
    result = _emit(model, tmp_path / "src", name=which, lang=lang)
    src = tmp_path / "src"
    (tmp_path / "main.c").write_text(CHECK_PROGRAM.replace("@SYM@", f"g_{result.name}_model_data"))
    obj = tmp_path / "model.o"
    compiler = gcc if lang == "c" else require_tool("g++")
    std = "-std=c11" if lang == "c" else "-std=c++17"
    run([compiler, std, "-Wall", "-Wextra", "-Werror", "-c", src / f"{which}_model_data.{'c' if lang == 'c' else 'cc'}", "-o", obj])
    run([gcc, "-std=c11", "-Wall", "-Werror", "-I", src, "-o", tmp_path / "check", tmp_path / "main.c", obj])
    assert run([tmp_path / "check", model]).stdout.strip() == f"ok {model.stat().st_size}"


def test_resolver_registers_exactly_the_models_ops(mobilenet: Path, tmp_path: Path) -> None:
    data, info = read_tflite(mobilenet)
    regs = resolve_ops(info)
    assert [r.name for r in regs] == sorted({op.name for op in info.ops})
    result = _emit(mobilenet, tmp_path, name="mnv")
    text = (tmp_path / "mnv_op_resolver.h").read_text()
    assert f"MicroMutableOpResolver<kMnvOpCount>" in text and f"kMnvOpCount = {len(regs)};" in text
    assert [line.split("resolver.")[1].split("(")[0] for line in text.splitlines() if "resolver.Add" in line] == [r.method for r in regs]
    assert result.ops == tuple(r.name for r in regs)


def test_unsupported_op_is_named(tiny: Path) -> None:
    _, info = read_tflite(tiny)
    bad = dataclasses.replace(info, ops=info.ops + (OpInfo("REDUCE_PROD", 1), OpInfo("MyCustomOp", 1, custom=True)))
    with pytest.raises(UnsupportedOpError) as exc:
        resolve_ops(bad)
    assert exc.value.ops == ("MyCustomOp (custom)", "REDUCE_PROD") and "REDUCE_PROD" in exc.value.message


@pytest.mark.parametrize("lang", ["c", "cpp"])
def test_sources_compile_for_cortex_m4f(mobilenet: Path, tmp_path: Path, lang: str) -> None:
    """Model data + settings header compile with the M4F hard-float flags, warnings as errors."""
    cc = require_tool("arm-none-eabi-gcc")
    cxx = require_tool("arm-none-eabi-g++")
    _emit(mobilenet, tmp_path, name="mnv", lang=lang)
    data_src = tmp_path / f"mnv_model_data.{'c' if lang == 'c' else 'cc'}"
    run([cc if lang == "c" else cxx, *M4F_FLAGS, "-O2", "-Wall", "-Wextra", "-Werror", "-c", data_src, "-o", tmp_path / "data.o"])
    (tmp_path / "use.c").write_text(SETTINGS_USER.replace("@C@", "Mnv").replace("@N@", "mnv"))
    run([cc, *M4F_FLAGS, "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-I", tmp_path, "-c", tmp_path / "use.c", "-o", tmp_path / "use.o"])
    run([cxx, *M4F_FLAGS, "-std=c++17", "-Wall", "-Wextra", "-Werror", "-x", "c++", "-I", tmp_path, "-c", tmp_path / "use.c", "-o", tmp_path / "use_cc.o"])


@pytest.mark.parametrize("raw", HOSTILE_NAMES)
def test_hostile_names_compile(tiny: Path, tmp_path: Path, raw: str) -> None:
    gcc, gxx = require_tool("gcc"), require_tool("g++")
    c = _emit(tiny, tmp_path / "c", name=raw, lang="c", section=".rodata.model")
    cc = _emit(tiny, tmp_path / "cc", name=raw, lang="cpp", namespace="my-co::ml")
    assert c.name == cc.name and c.name.isidentifier()
    assert (raw == c.name) == (not c.warnings)
    camel = "".join(p[:1].upper() + p[1:] for p in c.name.split("_"))
    (tmp_path / "use.c").write_text(SETTINGS_USER.replace("@C@", camel).replace("@N@", c.name))
    run([gcc, "-std=c11", "-Wall", "-Wextra", "-Werror", "-I", tmp_path / "c", "-o", tmp_path / "prog", tmp_path / "use.c", tmp_path / "c" / f"{c.name}_model_data.c"])
    run([tmp_path / "prog"])
    (tmp_path / "ns.cc").write_text(f'#include "{c.name}_model_data.h"\nint main() {{ return my_co::ml::g_{c.name}_model_data_len > 0 ? 0 : 1; }}\n')
    run([gxx, "-std=c++17", "-Wall", "-Wextra", "-Werror", "-I", tmp_path / "cc", "-o", tmp_path / "ns", tmp_path / "ns.cc", tmp_path / "cc" / f"{c.name}_model_data.cc"])
    run([tmp_path / "ns"])


def test_settings_values(tiny: Path, tmp_path: Path) -> None:
    gcc = require_tool("gcc")
    labels = tmp_path / "labels.txt"
    labels.write_text("zero\nun\nzwei\n")
    result = _emit(tiny, tmp_path, name="tiny", labels=labels)
    _, info = read_tflite(tiny)
    (tmp_path / "print.c").write_text(
        '#include <stdio.h>\n#include "tiny_model_settings.h"\n'
        "int main(void) { printf(\"%d %d %d %d %.9g %d %s\\n\", kTinyTensorArenaSize, kTinyInput0Dims, kTinyInput0Shape[1],"
        " kTinyInput0ZeroPoint, (double)kTinyInput0Scale, kTinyLabelCount, kTinyLabels[2]); return 0; }\n"
    )
    run([gcc, "-std=c11", "-Wall", "-Werror", "-I", tmp_path, "-o", tmp_path / "print", tmp_path / "print.c"])
    arena, dims, h, zp, scale, n, label = run([tmp_path / "print"]).stdout.split()
    t = info.inputs[0]
    assert int(arena) == result.arena.target_bytes and int(dims) == len(t.shape) and int(h) == t.shape[1]
    assert int(zp) == t.zero_point and float(scale) == pytest.approx(t.scale, rel=1e-7)
    assert (int(n), label) == (3, "zwei")


def test_resolver_compiles_against_tflm(tiny: Path, tmp_path: Path) -> None:
    root = tflm_dir()
    gxx = require_tool("g++")
    _emit(tiny, tmp_path, name="tiny", namespace="ns")
    (tmp_path / "r.cc").write_text('#include "tiny_op_resolver.h"\nint main() { ns::TinyOpResolver r; return ns::RegisterTinyOps(r) == kTfLiteOk ? 0 : 1; }\n')
    inc = [f"-I{root / p}" for p in ("", "third_party/flatbuffers/include", "third_party/gemmlowp", "third_party/ruy")]
    run([gxx, "-std=c++17", "-fsyntax-only", "-DTF_LITE_STATIC_MEMORY", *inc, "-I", tmp_path, tmp_path / "r.cc"])


def test_op_table_matches_tflm_header() -> None:
    """Every Add* method in the data table exists in the TFLM tree (and vice versa)."""
    import re

    from edgeq.firmware.resolver import load_op_table

    header = (tflm_dir() / "tensorflow/lite/micro/micro_mutable_op_resolver.h").read_text()
    methods = set(re.findall(r"TfLiteStatus (Add\w+)\(", header)) - {"AddBuiltin", "AddCustom"}
    table = load_op_table()
    assert set(table.builtin.values()) | set(table.custom.values()) == methods


def test_rerun_rules(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "tiny_model_data.h").write_text("/* mine */\n")
    with pytest.raises(OutputExistsError, match="tiny_model_data.h"):
        _emit(tiny, out, name="tiny")
    assert (out / "tiny_model_data.h").read_text() == "/* mine */\n"
    first = _emit(tiny, out, name="tiny", force=True)
    assert ("tiny_model_data.h", "overwrite") in {(a.path, a.action) for a in first.write.actions}
    (out / "tiny_model_settings.h").write_text("edited\n")
    again = _emit(tiny, out, name="tiny", arena_bytes=4096)
    assert ("tiny_model_settings.h", "update") in {(a.path, a.action) for a in again.write.actions}
    assert "edited" not in (out / "tiny_model_settings.h").read_text()
    dry = _emit(tiny, tmp_path / "dry", name="tiny", dry_run=True)
    assert not (tmp_path / "dry").exists() and {a.action for a in dry.write.actions} == {"create"}


def test_invalid_options(tiny: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="section"):
        _emit(tiny, tmp_path, section='x"); system("')
    with pytest.raises(UserError, match="namespace"):
        _emit(tiny, tmp_path, lang="c", namespace="ns")
    with pytest.raises(UserError, match="language"):
        _emit(tiny, tmp_path, lang="rust")
    assert not any(tmp_path.iterdir())


def test_emit_measures_the_host_arena(tiny: Path, tmp_path: Path) -> None:
    require_module("tflite_micro")
    result = emit(tiny, out=tmp_path)
    assert result.arena.host_bytes and result.arena.host_bytes > 0
    assert result.arena.target_bytes >= result.arena.host_bytes


def test_commands(tiny: Path, tmp_path: Path) -> None:
    app = typer.Typer()
    app.command("emit")(emit_command)
    app.command("targets")(targets_command)
    r = CliRunner().invoke(app, ["emit", str(tiny), "--out", str(tmp_path / "o"), "--name", "my net", "--lang", "c", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["schema_version"] == 1 and doc["kind"] == "emit" and doc["name"] == "my_net"
    assert (tmp_path / "o" / "my_net_model_data.c").is_file()
    r = CliRunner().invoke(app, ["targets", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["kind"] == "targets"
    r = CliRunner().invoke(app, ["targets"])
    assert r.exit_code == 0 and "cortex-m55" in r.stdout


# Uses the settings header from C: enumerators as array sizes, shapes, scales, typedefs.
SETTINGS_USER = r"""
#include <stdio.h>
#include "@N@_model_data.h"
#include "@N@_model_settings.h"
static unsigned char arena[k@C@TensorArenaSize];
int main(void) {
  @N@_input0_t first = 0;
  (void)first;
  printf("%u %d %d %g\n", g_@N@_model_data_len, (int)sizeof arena, k@C@Input0Shape[0], (double)k@C@Output0Scale);
  return (g_@N@_model_data_len == k@C@ModelSize && k@C@InputCount == 1) ? 0 : 1;
}
"""


def test_bundled_example(example_tflite: Path, tmp_path: Path) -> None:
    """Acceptance on the bundled digits example (quantized by the real CLI): byte-exact
    array, exact resolver, compiles for Cortex-M4F under a hostile name, deterministic."""
    gcc = require_tool("gcc")
    cc = require_tool("arm-none-eabi-g++")
    _, info = read_tflite(example_tflite)
    a = _emit(example_tflite, tmp_path / "a", name="digits (v2)!")
    b = _emit(example_tflite, tmp_path / "b", name="digits (v2)!")
    assert tree(tmp_path / "a") == tree(tmp_path / "b") and a.name == "digits_v2"
    assert a.ops == tuple(sorted({op.name for op in info.ops}))
    src = tmp_path / "a"
    run([cc, *M4F_FLAGS, "-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror", "-c", src / "digits_v2_model_data.cc", "-o", tmp_path / "m4.o"])
    (tmp_path / "main.c").write_text(CHECK_PROGRAM.replace("@SYM@", "g_digits_v2_model_data"))
    run([require_tool("g++"), "-std=c++17", "-c", src / "digits_v2_model_data.cc", "-o", tmp_path / "host.o"])
    run([gcc, "-std=c11", "-o", tmp_path / "check", tmp_path / "main.c", tmp_path / "host.o"])
    assert run([tmp_path / "check", example_tflite]).stdout.startswith("ok ")


def test_forked_measurement_equals_the_worker(tiny: Path, mobilenet: Path, example_tflite: Path) -> None:
    """``emit`` measures in a child forked from its own process; the figure is the one the
    script worker (``edgeq build``'s) reports, and a TFLM crash there is a readable error."""
    require_module("tflite_micro")
    from edgeq.firmware import arena
    from edgeq.errors import ModelError
    from edgeq.check.isolate import ForkedChild as _ForkedChild
    from edgeq.check.micro import MicroRun

    import threading

    for model in (tiny, mobilenet, example_tflite):
        data, info = read_tflite(model)
        run = MicroRun.forked_report(data)
        assert isinstance(run._proc, _ForkedChild)
        assert arena.finish_host_arena_measurement(run, info=info) == arena.measure_host_arena(data, info=info)
    data, info = read_tflite(tiny)
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert arena.fork_host_arena_measurement(data) is None  # never fork beside another thread
    finally:
        stop.set()
        other.join()
    crash = MicroRun.forked_report(data)
    crash._proc.kill()  # as TFLM's abort() would end it
    with pytest.raises(ModelError, match="crashed"):
        crash.result(60, info=info)
    assert crash._proc.returncode == -9  # reaped: no zombie left


def test_failed_emit_leaves_no_child(tiny: Path, tmp_path: Path) -> None:
    """An error after the TFLM child started (here: a bad --section) stops and reaps it."""
    require_module("tflite_micro")
    import threading

    from edgeq.check.isolate import ForkedChild as _ForkedChild

    for stray in [t for t in threading.enumerate() if t.name == "edgeq-c-array"]:
        stray.join()  # an earlier test's unclaimed prefetch: emit forks only without other threads
    started: list[_ForkedChild] = []
    real = _ForkedChild.__init__

    def spy(self, *a, **kw):  # type: ignore[no-untyped-def]
        real(self, *a, **kw)
        started.append(self)

    _ForkedChild.__init__ = spy  # type: ignore[method-assign]
    try:
        with pytest.raises(UserError, match="section"):
            emit(tiny, out=tmp_path / "o", section='x"); system("')
    finally:
        _ForkedChild.__init__ = real  # type: ignore[method-assign]
    assert started and all(p.returncode is not None for p in started)
    assert not (tmp_path / "o").exists()


def test_not_a_model_is_a_readable_error(tmp_path: Path) -> None:
    from edgeq.errors import ModelError

    bogus = tmp_path / "bogus.tflite"
    bogus.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelError, match="not a TensorFlow Lite model"):
        emit(bogus, out=tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_template_bytecode_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Compiled templates go to a private folder under the user's cache; an unusable
    cache folder (a file, group-writable, read-only) only means compiling again."""
    import os

    from edgeq.firmware import jinja

    def fresh(cache_home: Path) -> object:
        monkeypatch.setenv("XDG_CACHE_HOME", str(cache_home))
        jinja.bytecode_cache.cache_clear()
        jinja.environment.cache_clear()
        return jinja.bytecode_cache()

    try:
        cache = fresh(tmp_path / "cache")
        assert cache is not None
        folder = Path(cache.directory)  # type: ignore[attr-defined]
        assert folder.stat().st_mode & 0o777 == 0o700
        first = jinja.render("emit/_banner.j2", {"edgeq_version": "1", "source_name": "m", "model_sha256": "0", "model_size": 1})
        assert any(folder.iterdir())
        jinja.environment.cache_clear()
        assert jinja.render("emit/_banner.j2", {"edgeq_version": "1", "source_name": "m", "model_sha256": "0", "model_size": 1}) == first
        (tmp_path / "file").write_text("")
        assert fresh(tmp_path / "file") is None  # not a folder
        shared = tmp_path / "shared"
        (shared / "edgeq").mkdir(parents=True)
        cache = fresh(shared)
        os.chmod(cache.directory, 0o770)  # type: ignore[attr-defined]
        assert fresh(shared) is None  # others may write code into it
        readonly = tmp_path / "ro"
        cache = fresh(readonly)
        os.chmod(cache.directory, 0o500)  # type: ignore[attr-defined]
        try:
            jinja.environment.cache_clear()
            assert jinja.render("emit/_banner.j2", {"edgeq_version": "1", "source_name": "m", "model_sha256": "0", "model_size": 1}) == first
        finally:
            os.chmod(cache.directory, 0o700)  # type: ignore[attr-defined]
    finally:
        monkeypatch.undo()
        jinja.bytecode_cache.cache_clear()
        jinja.environment.cache_clear()


def test_emit_process_imports_stay_lazy() -> None:
    """``edgeq emit``'s own modules import nothing heavy: numpy loads when the array is
    formatted, rich when something is printed through it, the schema when parsing."""
    import subprocess
    import sys

    code = (
        "import sys\nimport edgeq.cli.app, edgeq.firmware.emit, edgeq.check.micro, edgeq.console\n"
        "heavy = [m for m in ('numpy', 'rich', 'jinja2', 'pydantic', 'ai_edge_litert') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("failure", ["refused", "crashed"])
def test_tflm_failures_in_the_forked_child_are_readable(failure: str, tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The forked child inherits this process: a patched worker stands in for TFLM
    refusing the model (a reply) or dying (a signal); emit raises a ModelError, writes nothing."""
    require_module("tflite_micro")
    import os
    import signal

    from edgeq.check import _micro_worker
    from edgeq.errors import ModelError

    def refuse(model: bytes, req: dict) -> dict:  # type: ignore[type-arg]
        if failure == "crashed":
            os.kill(os.getpid(), signal.SIGKILL)  # as TFLM's abort() would, without faulthandler noise
        return {"ok": False, "error": "TFLM failed to allocate tensors", "log": "Node DEQUANTIZE failed to prepare", "missing_ops": []}

    monkeypatch.setattr(_micro_worker, "measure_model", refuse)
    with pytest.raises(ModelError, match="cannot run the model: Node DEQUANTIZE" if failure == "refused" else "crashed"):
        emit(tiny, out=tmp_path / "o")
    assert not (tmp_path / "o").exists()
