"""The portable runner compiles, with warnings as errors, against small headers-only
stubs of the TFLM API (``tests/stubs/tflm``, written for these tests; not TFLM) with
``g++`` and ``arm-none-eabi-g++`` (Cortex-M4F and Cortex-M0+), for every branch of its
template: integer and float I/O, a given or a pseudo-random embedded sample, C or C++
model data, the static arena or ``<MACRO>_EXTERNAL_ARENA`` (PSRAM), a sanitized hostile
name, with and without ``EDGEQ_FIND_MIN_ARENA`` (the on-device minimal-arena search).

The stubs also link on the host. They run no model (``Invoke()`` computes nothing, the
outputs stay zero), so a linked runner must *not* claim a match: it reaches its output
check and reports a mismatch, and the stub's failure switches take its error paths.
The stub resolver has exactly the ``Add*()`` methods of ``edgeq/data/tflm_ops.toml``.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgeq.firmware.build_systems import load_build_system
from edgeq.firmware import names
from edgeq.firmware.project import EXIT_CODES, write_firmware
from edgeq.firmware.resolver import load_op_table
from edgeq.firmware.targets import load_target
from edgeq.model.tflite_info import OpInfo, read_tflite
from tests.codegen_models import sample_and_reference, tiny_cnn
from tests.tools import M4F_FLAGS, require_tool, run

STUBS = Path(__file__).resolve().parent / "stubs" / "tflm"
HOST_ARENA = 2208
# Warnings as errors plus a few that are free for this code: other compilers
# (ESP-IDF's xtensa gcc, Arduino's and Zephyr's toolchains) must not trip over GNU extensions.
WARNINGS = ("-Wall", "-Wextra", "-Werror", "-Wpedantic", "-Wshadow", "-Wundef", "-Wdouble-promotion")
NO_EXCEPTIONS = ("-fno-exceptions", "-fno-rtti")
# name -> (C++ compiler, C compiler, nm, flags); ARM at -Os like firmware (more warnings fire with optimisation).
COMPILERS = {
    "host": ("g++", "gcc", "nm", ("-O2",)),
    "cortex-m4f": ("arm-none-eabi-g++", "arm-none-eabi-gcc", "arm-none-eabi-nm", (*M4F_FLAGS, "-Os")),
    "cortex-m0plus": ("arm-none-eabi-g++", "arm-none-eabi-gcc", "arm-none-eabi-nm", ("-mcpu=cortex-m0plus", "-mthumb", "-Os")),
}


@dataclasses.dataclass(frozen=True)
class Sources:
    """One generated source folder (model sources + runner) and what it was made from."""

    src: Path
    name: str
    lang: str
    pseudo_random: bool

    @property
    def macro(self) -> str:
        return names.c_macro(self.name)

    @property
    def camel(self) -> str:
        return names.c_camel(self.name)

    @property
    def data(self) -> Path:
        return next(self.src.glob(f"{self.name}_model_data.c*"))

    @property
    def runner(self) -> Path:
        return self.src / f"{self.name}_runner.cpp"


@pytest.fixture(scope="module")
def tiny() -> tuple[bytes, object, list, list]:
    data, info = read_tflite(tiny_cnn())
    sample, reference = sample_and_reference(data)
    return data, info, sample, reference


def _float_io(info):  # type: ignore[no-untyped-def]
    """The tiny model's facts with float32 inputs/outputs (same shapes). The runner is
    rendered from tensor facts only, so this covers its float branches (fixed-point
    printing, tolerance compare) without converting another model. Compile only: the
    flatbuffer itself still has uint8 I/O."""
    retype = lambda t: dataclasses.replace(t, dtype="FLOAT32", scale=None, zero_point=None)  # noqa: E731
    return dataclasses.replace(info, inputs=tuple(map(retype, info.inputs)), outputs=tuple(map(retype, info.outputs)))


def _generate(out: Path, tiny, *, name: str = "tiny", lang: str = "cpp", sample: bool = True, float_io: bool = False,  # type: ignore[no-untyped-def]
              reference: list | None = None) -> Sources:
    data, info, sample_in, litert_reference = tiny
    reference = litert_reference if reference is None else reference
    if float_io:
        info = _float_io(info)
        rng = np.random.default_rng(1)
        sample_in = [rng.normal(size=t.shape).astype(np.float32) for t in info.inputs]
        reference = [rng.normal(size=t.shape).astype(np.float32) for t in info.outputs]
    target = load_target("cortex-m4")
    result = write_firmware(out, tflite=data, info=info, name=name, target=target, host_arena_bytes=HOST_ARENA,
                            sample_input=sample_in if sample else None, reference_output=reference if sample else None,
                            source_name="tiny.tflite", board=None, lang=lang)
    src = out / load_build_system(target.build_system).sources_dir(result.name)
    return Sources(src=src, name=result.name, lang=lang, pseudo_random=not sample)


VARIANTS = {
    "int-io": {},
    "int-io-pseudo-random": {"sample": False},  # write_firmware makes the input, host TFLM the output
    "float-io": {"float_io": True},
    "c-model-data": {"lang": "c"},
    "hostile-name": {"name": "3-in-1 net"},
}


@pytest.fixture(scope="module")
def sources(tiny, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Sources]:  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("runner-sources")
    return {key: _generate(root / key, tiny, **kw) for key, kw in VARIANTS.items()}


def _cxx(compiler: str) -> tuple[str, tuple[str, ...]]:
    cxx, _, _, flags = COMPILERS[compiler]
    extra = NO_EXCEPTIONS if compiler != "host" else ()
    return require_tool(cxx, "apt: g++ / gcc-arm-none-eabi libstdc++-arm-none-eabi-newlib"), (*flags, *extra)


def _compile(compiler: str, source: Path, out: Path, *defines: str) -> Path:
    """Compile one generated file (C++ or C by extension) to an object file."""
    cxx, cc, _, flags = COMPILERS[compiler]
    if source.suffix == ".c":
        tool, std, extra = require_tool(cc, "apt: gcc / gcc-arm-none-eabi"), "-std=c11", ()
    else:
        tool, std, extra = require_tool(cxx, "apt: g++ / gcc-arm-none-eabi libstdc++-arm-none-eabi-newlib"), "-std=c++17", NO_EXCEPTIONS if compiler != "host" else ()
    obj = out / f"{source.stem}{''.join('-' + d.lstrip('-D') for d in defines)}.o"
    run([tool, std, *WARNINGS, *flags, *extra, *defines, "-I", STUBS, "-I", source.parent, "-c", source, "-o", obj])
    return obj


def _symbols(compiler: str, obj: Path) -> dict[str, int]:
    """Defined symbols of an object file and their sizes (``nm -S``)."""
    nm = require_tool(COMPILERS[compiler][2], "binutils")
    out = run([nm, "-S", "--defined-only", obj]).stdout
    sizes = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4:
            sizes[parts[3]] = int(parts[1], 16)
        elif len(parts) == 3:
            sizes[parts[2]] = 0
    return sizes


def _arena_size(s: Sources) -> int:
    text = (s.src / f"{s.name}_model_settings.h").read_text()
    return int(re.search(rf"k{s.camel}TensorArenaSize = (\d+)", text).group(1))


@pytest.mark.parametrize("compiler", sorted(COMPILERS))
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_runner_and_model_data_compile(sources: dict[str, Sources], variant: str, compiler: str, tmp_path: Path) -> None:
    """``<name>_runner.cpp`` (with its static arena and with ``<MACRO>_EXTERNAL_ARENA``) and
    ``<name>_model_data.cc``/``.c`` compile warning-free; the symbols are the C API of
    ``<name>_runner.h``, and the external-arena build really drops the arena."""
    s = sources[variant]
    assert (s.src / f"{s.name}_sample_input.h").is_file()  # every firmware checks something
    _compile(compiler, s.data, tmp_path)
    static = _symbols(compiler, _compile(compiler, s.runner, tmp_path))
    external = _symbols(compiler, _compile(compiler, s.runner, tmp_path, f"-D{s.macro}_EXTERNAL_ARENA"))
    search = _symbols(compiler, _compile(compiler, s.runner, tmp_path, "-DEDGEQ_FIND_MIN_ARENA"))
    search_external = _symbols(compiler, _compile(compiler, s.runner, tmp_path, "-DEDGEQ_FIND_MIN_ARENA", f"-D{s.macro}_EXTERNAL_ARENA"))
    # C linkage: unmangled names, as the platform shells (C or C++) call them.
    assert f"{s.name}_run" in static and f"{s.name}_run_with_arena" in static, sorted(static)
    assert f"{s.name}_run_with_arena" in external and f"{s.name}_run" not in external, sorted(external)
    # The search exists only with EDGEQ_FIND_MIN_ARENA: production firmware never carries it.
    assert not [sym for sym in (*static, *external) if "find_min_arena" in sym]
    assert {f"{s.name}_find_min_arena", f"{s.name}_find_min_arena_with_arena"} <= set(search), sorted(search)
    assert f"{s.name}_find_min_arena_with_arena" in search_external and f"{s.name}_find_min_arena" not in search_external
    arena = [size for sym, size in static.items() if "g_tensor_arena" in sym]
    assert arena == [_arena_size(s)], (arena, _arena_size(s))
    assert not [sym for sym in external if "g_tensor_arena" in sym]


@pytest.mark.parametrize("compiler", sorted(COMPILERS))
def test_cmake_shell_compiles(sources: dict[str, Sources], compiler: str, tmp_path: Path) -> None:
    """The CMake build system's shell (``src/main.cc``, which registers TFLM's debug-log
    callback on Cortex-M) compiles against the same stubs."""
    s = sources["int-io"]
    _compile(compiler, s.src / "main.cc", tmp_path)


def test_runner_never_touches_debug_log(sources: dict[str, Sources]) -> None:
    """Contract: DebugLog and its callback are the platform shell's business."""
    for s in sources.values():
        text = s.runner.read_text() + (s.src / f"{s.name}_runner.h").read_text()
        assert "DebugLog" not in text and "RegisterDebugLogCallback" not in text


# --- the stub resolver follows edgeq's op table -------------------------------------------


def _stub_methods() -> list[str]:
    text = (STUBS / "tensorflow" / "lite" / "micro" / "micro_mutable_op_resolver.h").read_text()
    return re.findall(r"TfLiteStatus (Add\w+)\(\)", text)


def test_stub_resolver_has_every_add_method_of_the_op_table() -> None:
    """Every ``Add*()`` edgeq can emit exists in the stub (and nothing else: no
    ``AddBuiltin``/``AddCustom``), so the stub cannot silently fall behind the table."""
    table = load_op_table()
    wanted = set(table.builtin.values()) | set(table.custom.values())
    methods = _stub_methods()
    assert len(methods) == len(set(methods)), "a method is declared twice"
    assert sorted(wanted - set(methods)) == [], "add these to tests/stubs/tflm/.../micro_mutable_op_resolver.h"
    assert sorted(set(methods) - wanted) == [], "the stub has methods edgeq's op table does not emit"


@pytest.fixture(scope="module")
def every_op(tiny, tmp_path_factory: pytest.TempPathFactory) -> Sources:  # type: ignore[no-untyped-def]
    """Sources for a model claiming every op in the table: the generated op resolver
    header then calls every ``Add*()``."""
    data, info, sample, reference = tiny
    table = load_op_table()
    ops = [OpInfo(op, 1) for op in table.builtin] + [OpInfo(op, 1, custom=True) for op in table.custom]
    info = dataclasses.replace(info, ops=tuple(ops))
    return _generate(tmp_path_factory.mktemp("every-op"), (data, info, sample, reference))


RESOLVER_CHECK = r"""
#include <cstdio>
#include "{name}_op_resolver.h"

int main() {{
  static {camel}OpResolver resolver;
  if (Register{camel}Ops(resolver) != kTfLiteOk) return 10;
  if (resolver.GetRegistrationLength() != static_cast<unsigned>(k{camel}OpCount)) return 11;
  if (Register{camel}Ops(resolver) != kTfLiteError) return 12;  // full, and each op only once
  std::printf("registered %u ops\n", resolver.GetRegistrationLength());
  return 0;
}}
"""


@pytest.mark.parametrize("compiler", sorted(COMPILERS))
def test_resolver_with_every_op_compiles(every_op: Sources, compiler: str, tmp_path: Path) -> None:
    table = load_op_table()
    resolver = (every_op.src / f"{every_op.name}_op_resolver.h").read_text()
    calls = set(re.findall(r"resolver\.(Add\w+)\(\)", resolver))
    assert calls == set(table.builtin.values()) | set(table.custom.values())
    check = tmp_path / "resolver_check.cpp"
    check.write_text(RESOLVER_CHECK.format(name=every_op.name, camel=every_op.camel))
    cxx, flags = _cxx(compiler)
    run([cxx, "-std=c++17", *WARNINGS, *flags, "-I", STUBS, "-I", every_op.src, "-c", check, "-o", tmp_path / "check.o"])
    _compile(compiler, every_op.runner, tmp_path)


def test_resolver_with_every_op_registers_exactly_its_count(every_op: Sources, tmp_path: Path) -> None:
    """On the host: ``k<Name>OpCount`` equals the number of distinct ``Add*()`` calls."""
    gxx = require_tool("g++")
    check = tmp_path / "resolver_check.cpp"
    check.write_text(RESOLVER_CHECK.format(name=every_op.name, camel=every_op.camel))
    exe = tmp_path / "resolver_check"
    run([gxx, "-std=c++17", *WARNINGS, "-I", STUBS, "-I", every_op.src, check, "-o", exe])
    proc = run([exe])
    assert proc.stdout.strip() == f"registered {len(_stub_methods())} ops"


# --- the stubs stay strict -------------------------------------------------------------------

STRICT_PRELUDE = r"""
#include <cstddef>
#include <cstdint>
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/micro/system_setup.h"
#include "tensorflow/lite/schema/schema_generated.h"
alignas(16) static uint8_t arena[1024];
static const unsigned char model_data[64] = {0};
"""
ACCEPTED = """
int f() {
  const tflite::Model* model = tflite::GetModel(model_data);
  tflite::MicroMutableOpResolver<1> resolver;
  if (resolver.AddFullyConnected() != kTfLiteOk) return 1;
  tflite::MicroInterpreter interpreter(model, resolver, arena, sizeof(arena));
  if (interpreter.AllocateTensors() != kTfLiteOk) return 2;
  TfLiteTensor* input = interpreter.input(0);
  return input != nullptr && input->data.int8 != nullptr && model->version() == TFLITE_SCHEMA_VERSION
      ? static_cast<int>(interpreter.arena_used_bytes()) : 3;
}
"""
REJECTED = {
    "unchecked Add*": "void f() { tflite::MicroMutableOpResolver<1> r; r.AddConv2D(); }",
    "unchecked AllocateTensors": "void f(tflite::MicroInterpreter& i) { i.AllocateTensors(); }",
    "unchecked Invoke": "void f(tflite::MicroInterpreter& i) { i.Invoke(); }",
    "AddBuiltin": "int f() { tflite::MicroMutableOpResolver<1> r; return r.AddBuiltin(); }",
    "Add* with a registration": "int f() { tflite::MicroMutableOpResolver<1> r; return r.AddConv2D(0); }",
    "int arena size": ("void f(const tflite::Model* m) { tflite::MicroMutableOpResolver<1> r;"
                       " tflite::MicroInterpreter i(m, r, arena, 1024); }"),
    "char arena": ("static char carena[64]; void f(const tflite::Model* m) { tflite::MicroMutableOpResolver<1> r;"
                   " tflite::MicroInterpreter i(m, r, carena, sizeof(carena)); }"),
    "copied interpreter": "void f(tflite::MicroInterpreter& i) { tflite::MicroInterpreter copy(i); (void)copy; }",
    "copied resolver": "void f(tflite::MicroMutableOpResolver<1>& r) { auto copy = r; (void)copy; }",
    "old AllOpsResolver": "tflite::AllOpsResolver resolver;",
    "old MicroErrorReporter": "tflite::MicroErrorReporter reporter;",
    "redefined InitializeTarget": "namespace tflite { void InitializeTarget() {} }",
    "empty resolver": "tflite::MicroMutableOpResolver<0> resolver;",
}


def test_stubs_accept_tflm_usage_and_reject_mistakes(tmp_path: Path) -> None:
    """The stubs compile ordinary TFLM calls, and refuse what TFLM would refuse (or what
    is a bug in generated code even where TFLM lets it pass)."""
    gxx = require_tool("g++")

    def compiles(body: str) -> subprocess.CompletedProcess[str]:
        src = tmp_path / "snippet.cpp"
        src.write_text(STRICT_PRELUDE + body)
        return subprocess.run([gxx, "-std=c++17", *WARNINGS, "-I", str(STUBS), "-fsyntax-only", str(src)],
                              capture_output=True, text=True, timeout=60)

    ok = compiles(ACCEPTED)
    assert ok.returncode == 0, ok.stderr
    accepted = [why for why, body in REJECTED.items() if compiles(body).returncode == 0]
    assert accepted == [], f"the stubs accept: {accepted}"


# --- host link: symbols resolve, and the runner's control flow is honest ----------------------

MAIN = r"""
#include <cstdio>
#include "{name}_runner.h"

static void Print(const char* line) {{ std::fputs(line, stdout); }}

int main() {{ return {name}_run(Print); }}
"""

EXTERNAL_MAIN = r"""
#include <cstdio>
#include "{name}_runner.h"
#include "{name}_model_settings.h"

static void Print(const char* line) {{ std::fputs(line, stdout); }}
alignas(16) static uint8_t arena[k{camel}TensorArenaSize + 16];

int main(int argc, char** argv) {{
  (void)argv;
  if (argc == 2) return {name}_run_with_arena(arena + 1, k{camel}TensorArenaSize, Print);      // misaligned
  if (argc == 3) return {name}_run_with_arena(arena, k{camel}TensorArenaSize - 16, Print);     // too small
  if (argc == 4) return {name}_run_with_arena(nullptr, k{camel}TensorArenaSize, Print);        // none
  return {name}_run_with_arena(arena, k{camel}TensorArenaSize, Print);
}}
"""


def _link(s: Sources, tmp_path: Path, main: str, *defines: str) -> Path:
    gxx = require_tool("g++")
    (tmp_path / "main.cpp").write_text(main.format(name=s.name, camel=s.camel))
    objs = [_compile("host", s.data, tmp_path)]
    exe = tmp_path / f"app{''.join(defines).replace('-D', '-')}"
    run([gxx, "-std=c++17", *WARNINGS, "-O2", *defines, "-I", STUBS, "-I", s.src, tmp_path / "main.cpp", s.runner, *objs, "-o", exe])
    return exe


def _run(exe: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("variant", ["int-io", "c-model-data", "hostile-name"])
def test_linked_runner_reports_the_stubs_zero_output_as_a_mismatch(sources: dict[str, Sources], variant: str, tmp_path: Path) -> None:
    """Linked on the host against the stubs (C++ or C model data): the runner reads the
    real model's schema version and tensor sizes, runs, and, as the stub computed nothing,
    reports a mismatch against the TFLM reference instead of a match."""
    s = sources[variant]
    proc = _run(_link(s, tmp_path, MAIN))
    assert proc.returncode == EXIT_CODES["mismatch"], proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert re.fullmatch(rf"edgeq: arena_used_bytes=\d+ k{s.camel}TensorArenaSize={_arena_size(s)}", lines[0]), lines
    assert re.fullmatch(r"edgeq: output0\[0\] = 0 \(reference \d+\)( MISMATCH)?", lines[1]), lines
    assert re.fullmatch(r"edgeq: MISMATCH: \d+ value\(s\) differ from the TFLM reference", lines[-1]), lines
    assert all(line.startswith("edgeq: ") for line in lines)


def test_pseudo_random_sample_and_tflm_reference(sources: dict[str, Sources], tiny) -> None:  # type: ignore[no-untyped-def]
    """Without a sample, write_firmware embeds the seeded pseudo-random input (it uses the
    whole uint8 range) and host TFLM's output for it, which is what the real TFLM prints."""
    from edgeq.firmware.sources import pseudo_random_input
    from edgeq.check.micro import host_outputs

    data, info, _, _ = tiny
    header = (sources["int-io-pseudo-random"].src / "tiny_sample_input.h").read_text()
    assert "pseudo-random (seed 0)" in header and "TFLM" in header
    x = pseudo_random_input(info.inputs)
    assert x[0].dtype == np.uint8 and x[0].shape == tuple(info.inputs[0].shape) and x[0].min() < 16 and x[0].max() > 240
    assert all(np.array_equal(a, b) for a, b in zip(x, pseudo_random_input(info.inputs)))  # seeded
    want = host_outputs(data, info, x)
    assert want is not None  # tflite-micro is a test dependency here
    embedded = re.search(r"g_tiny_reference_output0\[\d+\] = \{(.*?)\};", header, re.S).group(1)
    assert [int(v, 16) for v in re.findall(r"0x[0-9a-f]{2}", embedded)] == list(np.asarray(want[0]).ravel())


FIND_MAIN = r"""
#include <cstdio>
#include "{name}_runner.h"

static void Print(const char* line) {{ std::fputs(line, stdout); }}

int main() {{
  const int status = {name}_run(Print);
  if (status != 0) return status;
  return {name}_find_min_arena(Print) == 0 ? 9 : 0;
}}
"""


def test_linked_min_arena_search_bisects_to_the_stubs_footprint(tiny, tmp_path: Path) -> None:
    """EDGEQ_FIND_MIN_ARENA: with a reference the stub reproduces (zeros), the search
    rebuilds the interpreter per attempt and ends at the stub's footprint rounded up to 16
    bytes, the smallest arena in which its AllocateTensors() succeeds."""
    _, info, _, _ = tiny
    zeros = [np.zeros(t.shape, np.dtype(t.dtype.lower())) for t in info.outputs]
    s = _generate(tmp_path / "zeros", tiny, reference=zeros)
    proc = _run(_link(s, tmp_path, FIND_MAIN, "-DEDGEQ_FIND_MIN_ARENA"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    used = int(re.fullmatch(r"edgeq: arena_used_bytes=(\d+) k\w+=\d+", lines[0]).group(1))
    assert "edgeq: output matches the TFLM reference" in lines
    assert lines[-1] == f"edgeq: min_arena_bytes={(used + 15) // 16 * 16}", lines


def test_linked_min_arena_search_without_a_match(sources: dict[str, Sources], tmp_path: Path) -> None:
    """No arena reproduces a reference the stub cannot compute: 0, and no min_arena line."""
    s = sources["int-io"]
    main = FIND_MAIN.replace("if (status != 0) return status;", "(void)status;")
    proc = _run(_link(s, tmp_path, main, "-DEDGEQ_FIND_MIN_ARENA"))
    assert proc.returncode == 9, proc.stdout
    assert "min_arena_bytes=" not in proc.stdout and proc.stdout.splitlines()[-1].startswith("edgeq: no minimal arena")


@pytest.mark.parametrize(("define", "code", "message"), [
    ("-DEDGEQ_STUB_FAIL_ALLOCATE", "setup_failed", "AllocateTensors() failed"),
    ("-DEDGEQ_STUB_FAIL_INVOKE", "invoke_failed", "Invoke() failed"),
])
def test_linked_runner_error_paths(sources: dict[str, Sources], tmp_path: Path, define: str, code: str, message: str) -> None:
    proc = _run(_link(sources["int-io"], tmp_path, MAIN, define))
    assert proc.returncode == EXIT_CODES[code] and message in proc.stdout, proc.stdout


def test_linked_runner_with_external_arena(sources: dict[str, Sources], tmp_path: Path) -> None:
    """``<MACRO>_EXTERNAL_ARENA`` (PSRAM): the caller's arena is used, and a misaligned,
    too small or missing one is refused before TFLM sees it."""
    s = sources["int-io"]
    exe = _link(s, tmp_path, EXTERNAL_MAIN, f"-D{s.macro}_EXTERNAL_ARENA")
    for args in (("a",), ("a", "b"), ("a", "b", "c")):
        proc = _run(exe, *args)
        assert proc.returncode == EXIT_CODES["setup_failed"], (args, proc.stdout)
        assert proc.stdout == f"edgeq: the tensor arena must be 16-byte aligned and at least {_arena_size(s)} bytes\n"
    proc = _run(exe)
    assert proc.returncode == EXIT_CODES["mismatch"] and "arena_used_bytes=" in proc.stdout, proc.stdout
