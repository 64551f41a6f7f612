"""Every target's generated project, checked offline: one tiny model rendered for every
target ``edgeq.firmware.targets.list_targets()`` knows (so a new target or build system is picked
up without touching this file), with a sample, without one, with C model data, and with
the arena pushed into PSRAM where the target has PSRAM; then

- nothing unrendered (``{{``, ``{%``, ``{#``) and no placeholder text, in paths or files;
- every TOML, YAML, INI, JSON, Kconfig fragment and CMake file parses;
- the portable runner is byte-identical in every tree (and so are the other model files
  that do not depend on the target);
- each tree has the model sources, op resolver, settings, sample, runner, a shell that
  calls the runner (with its own arena when that is in PSRAM) and a README;
- every file whose format has comments carries the provenance (edgeq version, SHA-256);
- two renders are byte-identical;
- Espressif's ``compote manifest lint`` accepts each ``idf_component.yml`` and
  ``pio project config`` each ``platformio.ini`` (both work offline; CI installs them);
- one golden tree per build system; ``edgeq build --target X --dry-run`` lists the files.
"""

from __future__ import annotations

import configparser
import csv
import dataclasses
import importlib.util
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from edgeq import __version__
from edgeq.firmware.build_systems import load_build_system
from edgeq.firmware.project import FirmwareResult, write_firmware
from edgeq.resources import data_dir
from edgeq.firmware.targets import Target, list_targets
from edgeq.model.tflite_info import read_tflite
from tests.codegen_golden import compare, tree
from tests.codegen_models import sample_and_reference, tiny_cnn
from tests.conftest import require_module, require_tool, run_edgeq

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

HOST_ARENA = 2208  # fixed, so goldens do not move with tflite-micro nightlies
NAME = "tiny"
# One golden tree per build system (cmake-tflm has its own in test_codegen_firmware.py), and
# ESP32-S3 with its arena in PSRAM.
GOLDEN_KEYS = ("esp32s3", "esp32s3@psram", "arduino-nano33ble", "zephyr", "platformio-esp32", "rp2040")
# Preferred targets for the CLI dry run (any non-CMake target will do).
CLI_TARGETS = ("esp32s3", "zephyr", "rp2040", "platformio-esp32", "arduino-nano33ble")


def _all_targets() -> list[Target]:
    try:
        return list_targets()
    except Exception:  # one broken target file: test_targets_load reports it
        return []


TARGETS = {t.name: t for t in _all_targets()}
TARGET_NAMES = sorted(TARGETS)
# Each target is rendered as issue 6 asks a render to succeed: with the sample (the default),
# without one (write_firmware then embeds a pseudo-random input and host TFLM's output for
# it: every firmware checks something) and with C model data; targets with PSRAM once more with a
# RAM budget that pushes the arena there (the shell then allocates it, the runner is built
# with <MACRO>_EXTERNAL_ARENA).
VARIANTS = {"": {}, "@pseudo-random": {"sample": False}, "@lang-c": {"lang": "c"}, "@psram": {"psram": True}}
KEYS = [n + v for n in TARGET_NAMES for v in VARIANTS if v != "@psram" or TARGETS[n].psram_bytes]
# The ecosystems' own checkers are slower: run them on the variants that can change config files.
CONFIG_KEYS = [k for k in KEYS if "@" not in k or k.endswith("@psram")]


def _target_of(key: str) -> str:
    return key.split("@", 1)[0]


def _with_template(filename: str, keys: list[str]) -> list[str]:
    """Keys whose build system has a template rendering to ``filename``."""
    root = data_dir("templates")
    return [k for k in keys if any((root / TARGETS[_target_of(k)].build_system).rglob(f"{filename}.j2"))]


@dataclasses.dataclass
class Tree:
    key: str
    root: Path
    again: Path  # a second render, for the determinism check
    src: str
    lang: str = "cpp"
    has_sample: bool = True
    result: FirmwareResult | None = None
    error: BaseException | None = None

    @property
    def target(self) -> Target:
        return TARGETS[_target_of(self.key)]

    def files(self) -> dict[str, bytes]:
        if self.error is not None:
            raise AssertionError(f"rendering {self.key} failed: {self.error!r}") from self.error
        return tree(self.root)

    def text(self) -> dict[str, str]:
        out = {}
        for rel, data in self.files().items():
            try:
                out[rel] = data.decode("utf-8")
            except UnicodeDecodeError:
                raise AssertionError(f"{self.key}: {rel} is not UTF-8 text") from None
        return out

    def model_file(self, filename: str) -> str:
        return f"{self.src}/{filename}" if self.src else filename


def _model(per_channel_dense: bool) -> tuple[bytes, object, list, list]:
    data, info = read_tflite(tiny_cnn(per_channel_dense))
    sample, reference = sample_and_reference(data)
    return data, info, sample, reference


@pytest.fixture(scope="module")
def tiny() -> dict[bool, tuple[bytes, object, list, list]]:
    """The tiny model as edgeq converts it for each kind of target: dense layers per
    channel (TF's default), or per tensor for targets whose TFLM copy needs that."""
    return {True: _model(True), False: _model(False)}


def _render(out: Path, tiny, target: Target, *, sample: bool = True, lang: str = "cpp", psram: bool = False,  # type: ignore[no-untyped-def]
            dry_run: bool = False) -> FirmwareResult:
    data, info, sample_in, reference = tiny[target.per_channel_dense]
    return write_firmware(out, tflite=data, info=info, name=NAME, target=target, host_arena_bytes=HOST_ARENA,
                          sample_input=sample_in if sample else None, reference_output=reference if sample else None,
                          source_name="tiny.tflite", board=None, lang=lang, allow_over_budget=False, dry_run=dry_run,
                          ram=target.runtime_ram_bytes + 16 if psram else None)


@pytest.fixture(scope="module")
def trees(tiny, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Tree]:  # type: ignore[no-untyped-def]
    """Every target and variant rendered twice; one that fails to render fails only its own tests."""
    root = tmp_path_factory.mktemp("build-systems")
    out: dict[str, Tree] = {}
    for key in KEYS:
        target = TARGETS[_target_of(key)]
        options = VARIANTS["@" + key.split("@", 1)[1] if "@" in key else ""]
        t = Tree(key, root / key, root / f"{key}.again", load_build_system(target.build_system).sources_dir(NAME),
                 lang=options.get("lang", "cpp"), has_sample=options.get("sample", True))
        try:
            t.result = _render(t.root, tiny, target, **options)
            _render(t.again, tiny, target, **options)
        except Exception as exc:  # noqa: BLE001 - reported by each test of this key
            t.error = exc
        out[key] = t
    return out


def test_targets_load() -> None:
    """Every target file validates (the rest of this module is empty otherwise)."""
    names = [t.name for t in list_targets()]
    assert names == TARGET_NAMES and names


# --- (a) nothing unrendered, no placeholders ---------------------------------------------------

UNRENDERED = ("{{", "{%", "{#")
PLACEHOLDER_WORDS = re.compile(r"\b(TODO|FIXME|XXX)\b")


def _placeholders(text: str) -> list[str]:
    hits = [m.group(0) for m in PLACEHOLDER_WORDS.finditer(text)]
    hits += [m.group(0) for m in re.finditer(r"placeholder|lorem|<your", text, re.IGNORECASE)]
    return hits


@pytest.mark.parametrize("key", KEYS)
def test_nothing_unrendered_and_no_placeholders(trees: dict[str, Tree], key: str) -> None:
    for rel, text in trees[key].text().items():
        assert "__name__" not in rel and not rel.endswith(".j2") and not rel.endswith("build_system.toml"), rel
        for marker in UNRENDERED:
            assert marker not in text and marker not in rel, f"{key}: {rel} has unrendered {marker!r}"
        assert not _placeholders(text), f"{key}: {rel} has placeholder text {_placeholders(text)}"


# --- (b) config files parse --------------------------------------------------------------------

KCONFIG_LINE = re.compile(r'^CONFIG_[A-Z0-9_]+=(y|n|-?[0-9]+|0x[0-9A-Fa-f]+|"([^"\\]|\\.)*")$')


def cmake_syntax_errors(text: str) -> list[str]:
    """Unbalanced parentheses or unterminated strings/brackets, ignoring comments, quoted
    and bracket arguments and escapes (CMake's lexical rules, enough for generated files)."""
    errors, depth, i, n = [], 0, 0, len(text)

    def line(at: int) -> int:
        return text.count("\n", 0, at) + 1

    while i < n:
        c = text[i]
        bracket = re.compile(r"#?\[(=*)\[").match(text, i) if c in "#[" else None
        if bracket:
            end = text.find("]" + bracket.group(1) + "]", bracket.end())
            if end < 0:
                return errors + [f"line {line(i)}: unterminated bracket {bracket.group(0)!r}"]
            i = end + len(bracket.group(1)) + 2
            continue
        if c == "#":
            nl = text.find("\n", i)
            i = n if nl < 0 else nl
            continue
        if c == "\\":
            i += 2
            continue
        if c == '"':
            m = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL).match(text, i)
            if not m:
                return errors + [f"line {line(i)}: unterminated string"]
            i = m.end()
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth < 0:
                errors.append(f"line {line(i)}: ')' without '('")
                depth = 0
        i += 1
    if depth:
        errors.append(f"{depth} '(' never closed")
    return errors


def kconfig_errors(text: str) -> list[str]:
    return [f"line {i}: {raw!r}" for i, raw in enumerate(text.splitlines(), 1)
            if raw.strip() and not raw.startswith("#") and not KCONFIG_LINE.match(raw)]


def _is_kconfig(rel: str) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return name.endswith(".conf") or name.startswith("sdkconfig")


def check_file(rel: str, text: str) -> list[str]:
    """Problems in one generated file, judged by its name (empty when it parses)."""
    name = rel.rsplit("/", 1)[-1]
    try:
        if name == "build_opt.h":  # Arduino-ESP32: a gcc @response file, options only
            return [f"not a compiler option: {w!r}" for w in text.split() if not w.startswith("-")]
        if name.endswith(".toml"):
            tomllib.loads(text)
        elif name.endswith((".yml", ".yaml")):
            import yaml

            yaml.safe_load(text)
        elif name.endswith(".ini"):
            configparser.ConfigParser(interpolation=None, strict=True).read_string(text, source=rel)
        elif name.endswith(".json"):
            json.loads(text)
        elif name == "CMakeLists.txt" or name.endswith(".cmake"):
            return cmake_syntax_errors(text)
        elif _is_kconfig(rel):
            return kconfig_errors(text)
        elif name.endswith(".csv"):  # e.g. an ESP-IDF partition table: same column count
            rows = [r for r in csv.reader(io.StringIO(text)) if r and not r[0].lstrip().startswith("#")]
            if len({len(r) for r in rows}) > 1:
                return ["rows have different column counts"]
        elif name.endswith((".overlay", ".dts", ".dtsi")) and text.count("{") != text.count("}"):
            return ["unbalanced braces"]
    except Exception as exc:  # noqa: BLE001 - any parser's error is the finding
        return [f"{type(exc).__name__}: {exc}"]
    return []


@pytest.mark.parametrize("key", KEYS)
def test_config_files_parse(trees: dict[str, Tree], key: str) -> None:
    files = trees[key].text()
    if any(rel.endswith((".yml", ".yaml")) for rel in files):
        require_module("yaml")
    problems = {rel: errs for rel, text in files.items() if (errs := check_file(rel, text))}
    assert not problems, f"{key}: {problems}"


@pytest.mark.parametrize("key", _with_template("platformio.ini", CONFIG_KEYS))
def test_platformio_ini_structure(trees: dict[str, Tree], key: str) -> None:
    """Each ``[env:...]`` names a platform, a board and a framework (directly or through ``[env]``)."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(trees[key].text()["platformio.ini"])
    envs = [s for s in parser.sections() if s.startswith("env:")]
    assert envs, parser.sections()
    for env in envs:
        for option in ("platform", "board", "framework"):
            value = parser.get(env, option, fallback="") or (parser.get("env", option, fallback="") if parser.has_section("env") else "")
            assert value.strip(), f"{key}: [{env}] has no {option}"


def test_checkers_catch_mistakes() -> None:
    """The checks above are not vacuous."""
    assert cmake_syntax_errors('project(x)\nset(A "(" [[ ) ]] B) # )\n#[[ ( ]]\n') == []
    assert cmake_syntax_errors("project(x\n") and cmake_syntax_errors("set(A))\n") and cmake_syntax_errors('set(A "x)\n')
    assert kconfig_errors('# c\nCONFIG_CPP=y\nCONFIG_N=-4\nCONFIG_H=0x1F\nCONFIG_S="a \\"b\\""\n\n') == []
    assert kconfig_errors("CONFIG_CPP = y\n") and kconfig_errors("CPP=y\n") and kconfig_errors("CONFIG_X=y # why\n")
    assert check_file("platformio.ini", "[env:a]\nb = 1\n[env:a]\n") and check_file("a.toml", "x = \n")
    assert check_file("a.json", "{,}") and check_file("sdkconfig.defaults", "CONFIG_A=yes\n")
    assert check_file("x/build_opt.h", "// -DX\n") and not check_file("x/build_opt.h", "-DX_EXTERNAL_ARENA\n")
    assert _placeholders("// TODO: fill in") and _placeholders("<your-board>") and not _placeholders("todos, XXXL")
    if importlib.util.find_spec("yaml"):
        assert check_file("idf_component.yml", "a: [\n")


# --- (c) the runner is the same file in every tree ---------------------------------------------

SHARED = (f"{NAME}_runner.cpp", f"{NAME}_runner.h", f"{NAME}_op_resolver.h", f"{NAME}_model_data.h")


def test_runner_is_the_same_file_in_every_tree(trees: dict[str, Tree]) -> None:
    """For one model, ``<name>_runner.cpp``/``.h`` are byte-identical in every tree, whatever
    the target, build system, arena placement (PSRAM) or model-data language; so are the
    op resolver, the model data header, the sample header and the model array. The
    runner does not even depend on the sample (given, or pseudo-random when none is)."""
    assert len({t.target.build_system for t in trees.values()}) >= 2, "needs two build systems"
    for has_sample in (True, False):
        for per_channel in (True, False):
            # Grouped by the model's bytes (a target converting dense layers per tensor
            # gets another model): the banner names the model's SHA-256.
            group = [t for t in trees.values() if t.has_sample == has_sample and t.target.per_channel_dense == per_channel]
            for filename in SHARED + (f"{NAME}_sample_input.h",):
                versions: dict[bytes, list[str]] = {}
                for t in group:
                    versions.setdefault(t.files()[t.model_file(filename)], []).append(t.key)
                assert len(versions) <= 1, f"{filename} differs between trees: {list(versions.values())}"
    for per_channel in (True, False):
        runners = {t.files()[t.model_file(f"{NAME}_runner.cpp")] for t in trees.values() if t.target.per_channel_dense == per_channel}
        assert len(runners) <= 1, "the runner depends on whether a sample was given"
    for lang in ("cpp", "c"):
        for per_channel in (True, False):
            arrays: dict[bytes, list[str]] = {}
            for t in trees.values():
                if t.lang == lang and t.target.per_channel_dense == per_channel:
                    rel = next(r for r in t.files() if re.fullmatch(rf"(.*/)?{NAME}_model_data\.(c|cc|cpp)", r))
                    arrays.setdefault(t.files()[rel], []).append(t.key)
            assert len(arrays) <= 1, f"the {lang} model array differs between trees: {list(arrays.values())}"


# --- (d) what every tree contains ---------------------------------------------------------------

MODEL_FILES = (f"{NAME}_model_data.h", f"{NAME}_model_settings.h", f"{NAME}_op_resolver.h", f"{NAME}_runner.h", f"{NAME}_runner.cpp")


@pytest.mark.parametrize("key", KEYS)
def test_tree_has_model_runner_shell_and_readme(trees: dict[str, Tree], key: str) -> None:
    """Model sources, resolver, settings, sample (when given), runner, a README with the
    arena size, and a shell that calls the runner; with PSRAM, the shell allocates the
    arena and builds the runner with ``<MACRO>_EXTERNAL_ARENA``."""
    t = trees[key]
    files = t.text()
    system = load_build_system(t.target.build_system)
    data_ext = system.cpp_ext if t.lang == "cpp" else "c"
    wanted = [*MODEL_FILES, f"{NAME}_model_data.{data_ext}", f"{NAME}_sample_input.h"]  # always a sample
    missing = [t.model_file(w) for w in wanted if t.model_file(w) not in files]
    assert not missing, f"{key}: missing {missing}"
    origin = "pseudo-random (seed 0)" if not t.has_sample else "given by the caller"
    assert origin in files[t.model_file(f"{NAME}_sample_input.h")] and t.result.reference_input == origin
    assert "README.md" in files and ".edgeq-manifest.json" in files
    assert set(t.result.files) == set(files) - {".edgeq-manifest.json"}
    assert f"{t.result.arena_bytes:,}" in files["README.md"] or str(t.result.arena_bytes) in files["README.md"], \
        f"{key}: README.md does not give the arena size ({t.result.arena_bytes})"
    model = {t.model_file(w) for w in wanted}
    shell = {rel: text for rel, text in files.items() if rel not in model and rel != "README.md" and not rel.endswith(".json")}
    assert any(re.search(rf"\b{NAME}_run(_with_arena)?\(", text) for text in shell.values()), f"{key}: no shell file calls the runner"
    macro = f"{NAME.upper()}_EXTERNAL_ARENA"
    assert t.result.budget.arena_in_psram == key.endswith("@psram"), t.result.budget
    if key.endswith("@psram"):
        assert any(macro in text for text in shell.values()), f"{key}: the arena is in PSRAM but nothing defines {macro}"
        assert any(re.search(rf"\b{NAME}_run_with_arena\(", text) for text in shell.values()), f"{key}: the shell never passes its arena"
        assert "PSRAM" in files["README.md"], f"{key}: README.md does not say the arena is in PSRAM"


# --- (e) provenance -----------------------------------------------------------------------------

COMMENTED_SUFFIXES = (".c", ".cc", ".cpp", ".h", ".hpp", ".ino", ".cmake", ".md", ".toml", ".yml", ".yaml",
                      ".ini", ".conf", ".overlay", ".properties", ".csv")
# Files whose format has no comments although their name suggests one.
NO_COMMENTS = ("build_opt.h",)  # Arduino-ESP32 passes it to gcc as an @response file


def _has_comments(rel: str) -> bool:
    name = rel.rsplit("/", 1)[-1]
    if name in NO_COMMENTS:
        return False
    return name == "CMakeLists.txt" or name.startswith("sdkconfig") or name.endswith(COMMENTED_SUFFIXES)


@pytest.mark.parametrize("key", KEYS)
def test_every_file_carries_provenance(trees: dict[str, Tree], key: str, tiny) -> None:  # type: ignore[no-untyped-def]
    """Where the format has comments, a file names the edgeq version and the model's SHA-256."""
    sha = tiny[trees[key].target.per_channel_dense][1].sha256
    # "edgeq 0.1.0", possibly wrapped onto the next comment line ("edgeq\n# 0.1.0").
    version = re.compile(rf"edgeq[\s#/*;-]*{re.escape(__version__)}\b")
    lacking = [rel for rel, text in trees[key].text().items()
               if _has_comments(rel) and not (version.search(text) and sha in text)]
    assert not lacking, f"{key}: no 'edgeq {__version__}' + SHA-256 in {lacking}"


# --- (f) determinism ----------------------------------------------------------------------------


@pytest.mark.parametrize("key", KEYS)
def test_two_renders_are_byte_identical(trees: dict[str, Tree], key: str) -> None:
    t = trees[key]
    assert t.files() == tree(t.again)


# --- (g) the ecosystems' own offline checkers ---------------------------------------------------


def _tool(name: str, hint: str) -> str:
    """A console script installed beside this Python (the test venv) or on PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() else require_tool(name, hint)


@pytest.mark.parametrize("key", _with_template("idf_component.yml", CONFIG_KEYS))
def test_compote_manifest_lint(trees: dict[str, Tree], key: str, tmp_path: Path) -> None:
    """``compote manifest lint`` (idf-component-manager; offline) accepts every manifest,
    run in the manifest's folder, warnings counting as errors."""
    compote = _tool("compote", "pip install idf-component-manager")
    t = trees[key]
    manifests = [rel for rel in t.files() if rel.rsplit("/", 1)[-1] == "idf_component.yml"]
    if not manifests:  # e.g. PlatformIO renders one only for its ESP-IDF framework boards
        assert t.target.project.get("framework", "espidf") != "espidf", f"{key}: no idf_component.yml"
        pytest.skip(f"{key}: this board's project has no ESP-IDF component manifest")
    env = {**os.environ, "IDF_TOOLS_PATH": str(tmp_path / "idf-tools")}
    for rel in manifests:
        folder = (t.root / rel).parent
        proc = subprocess.run([compote, "--warnings-as-errors", "manifest", "lint", "idf_component.yml"], cwd=folder,
                              capture_output=True, text=True, timeout=120, env=env)
        output = (proc.stdout + proc.stderr).strip()
        assert proc.returncode == 0 and "ERROR" not in output and "WARNING" not in output, f"{key}: {rel}\n{output}"


@pytest.fixture(scope="module")
def pio_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """PlatformIO with its own core folder, no telemetry, no update check: nothing outside tmp."""
    core = tmp_path_factory.mktemp("platformio-core")
    return {**os.environ, "PLATFORMIO_CORE_DIR": str(core), "PLATFORMIO_SETTING_ENABLE_TELEMETRY": "No",
            "PLATFORMIO_SETTING_CHECK_PLATFORMIO_INTERVAL": "3650", "PLATFORMIO_NO_ANSI": "true"}


@pytest.mark.parametrize("key", _with_template("platformio.ini", CONFIG_KEYS))
def test_pio_project_config(trees: dict[str, Tree], key: str, pio_env: dict[str, str]) -> None:
    """``pio project config --lint`` finds no error or warning (it exits 0 either way, so
    its message is the verdict) and ``--json-output`` gives each env a platform, board and
    framework. Both only read platformio.ini: no platform download, no network."""
    pio = _tool("pio", "pip install platformio")
    root = trees[key].root
    lint = subprocess.run([pio, "project", "config", "--lint", "-d", str(root)], capture_output=True, text=True,
                          timeout=120, env=pio_env)
    assert lint.returncode == 0 and "is free from linting errors" in lint.stdout, f"{key}:\n{lint.stdout}\n{lint.stderr}"
    shown = subprocess.run([pio, "project", "config", "--json-output", "-d", str(root)], capture_output=True, text=True,
                           timeout=120, env=pio_env)
    assert shown.returncode == 0, shown.stderr
    sections = {name: dict(options) for name, options in json.loads(shown.stdout)}
    envs = {name: opts for name, opts in sections.items() if name.startswith("env:")}
    assert envs, sections
    for name, opts in envs.items():
        assert opts.get("platform") and opts.get("board") and opts.get("framework"), (key, name, opts)


# --- (h) golden trees, one per build system -----------------------------------------------------


@pytest.mark.parametrize("key", GOLDEN_KEYS)
def test_golden_tree(trees: dict[str, Tree], key: str, tiny) -> None:  # type: ignore[no-untyped-def]
    """``tests/golden/bs-<target>[-psram]/``; regenerate with EDGEQ_UPDATE_GOLDEN=1, review the diff."""
    if key not in trees:
        pytest.fail(f"{key!r}: no such target (issue 6 asks for it) or it has no PSRAM; known: {', '.join(TARGET_NAMES)}")
    t = trees[key]
    t.files()
    info = tiny[t.target.per_channel_dense][1]
    compare("bs-" + key.replace("@", "-"), t.root, sha256=info.sha256, size=info.size_bytes,
            runtime_code_bytes=t.target.runtime_code_bytes)


def test_every_build_system_has_a_golden_tree() -> None:
    systems = {t.build_system for t in TARGETS.values()} - {"cmake-tflm"}
    covered = {TARGETS[_target_of(k)].build_system for k in GOLDEN_KEYS if _target_of(k) in TARGETS}
    assert systems <= covered, f"add a golden target for {sorted(systems - covered)} to GOLDEN_KEYS"


# --- (i) the CLI's dry run ----------------------------------------------------------------------


def test_cli_dry_run_lists_the_files(tmp_path: Path, tiny) -> None:  # type: ignore[no-untyped-def]
    """``edgeq build MODEL --target X --dry-run`` for a non-CMake target writes nothing and
    lists exactly the files the library would write."""
    candidates = [n for n in CLI_TARGETS if n in TARGETS] + [n for n in TARGET_NAMES if TARGETS[n].build_system != "cmake-tflm"]
    if not candidates:
        pytest.fail("no target outside cmake-tflm exists yet (issue 6)")
    target = candidates[0]
    out = tmp_path / "out"
    r = run_edgeq("build", tiny_cnn(TARGETS[target].per_channel_dense), "--target", target, "--dry-run", "--out", out)
    assert r.code == 0, r.stderr
    assert not out.exists()
    expected = _render(tmp_path / "lib", tiny, TARGETS[target], sample=False, dry_run=True).files
    assert sorted(re.findall(r"(\S+) \(create\)", _table_cell(r.stdout, "would write"))) == sorted(expected), r.stdout


def _table_cell(text: str, label: str) -> str:
    """The value of a row of the CLI's two-column table, wrapped lines joined."""
    cells, inside = [], False
    for line in text.splitlines():
        parts = line.split("\u2502")  # the box-drawing column separator
        if len(parts) < 4:
            inside = False
            continue
        key, value = parts[1].strip(), parts[2].strip()
        if key == label or (inside and not key):
            cells.append(value)
            inside = True
        else:
            inside = False
    assert cells, f"no {label!r} row in:\n{text}"
    return " ".join(cells)
