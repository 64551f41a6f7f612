"""edgeq's import graph stays one-way (issue 13): no cycles, no borrowed private names.

Why a test and not a convention: a cycle works until someone imports the modules in
another order (or a lazy import runs at the wrong time), and a private name imported
elsewhere is an API nobody knows they are keeping. So every ``import`` in ``edgeq/`` --
module level, inside functions and under ``if TYPE_CHECKING`` alike, relative ones
resolved -- is an edge here, and the rules are checked on the source with ``ast``
(nothing is imported, so this runs in well under a second).

The direction, which ``LAYERS`` enforces room by room: ``cli`` → ``pipeline`` (with
``compare`` and ``report``, the orchestrations) → the features ``quantization``,
``firmware`` and ``remote`` (which never import each other) → ``check`` → ``model`` → the
leaves (errors, console, context, version, resources, text, files, workdir, outdir,
toml_fields). A module may import its own room and any room below, never one above, and
the three features never import each other (within the leaves and beside the pipeline,
modules of one layer may, as long as there is no cycle). The package ``edgeq/__init__.py`` may import downward (lazily), but nothing inside
edgeq imports the package itself, and nothing outside ``edgeq/cli/`` imports the CLI.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "edgeq"
MAX_LINES = 400
#: Private modules and the only modules that may import them (the worker and its launchers).
PRIVATE_MODULE_USERS = {"edgeq.check._micro_worker": {"edgeq.check.micro", "edgeq.check.isolate"}}
#: Rooms, bottom up: a module's room is its sub-package, or its own name for a top-level module.
LAYERS: tuple[frozenset[str], ...] = tuple(frozenset(room.split()) for room in (
    "edgeq.errors edgeq.console edgeq.context edgeq.version edgeq.resources edgeq.text edgeq.files edgeq.workdir "
    "edgeq.outdir edgeq.toml_fields",
    "edgeq.model",
    "edgeq.check",
    "edgeq.quantization edgeq.firmware edgeq.remote",
    "edgeq.pipeline edgeq.compare edgeq.report",
    "edgeq.cli edgeq.__main__",
    "edgeq",
))


@dataclass(frozen=True)
class Import:
    """One imported thing: ``target`` is a module of edgeq; ``name`` what was taken from it
    (``None`` for ``import x`` or a submodule taken whole)."""

    source: str
    line: int
    target: str
    name: str | None


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(module: str, path: Path) -> list[Import]:
    """Every import of an edgeq module in ``path``, wherever it sits in the file."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [Import(module, node.lineno, a.name, None) for a in node.names if a.name in MODULES]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: strip level-1 components off the package, then add the module
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            if base not in MODULES:
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append(Import(module, node.lineno, sub, None) if sub in MODULES
                             else Import(module, node.lineno, base, alias.name))
    return found


IMPORTS = [imp for module, path in MODULES.items() for imp in _imports(module, path)]


def _where(imp: Import) -> str:
    taken = f"{imp.target}:{imp.name}" if imp.name else imp.target
    return f"{MODULES[imp.source].relative_to(PACKAGE.parent)}:{imp.line} imports {taken}"


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One shortest cycle through each module that lies on any cycle, as a chain
    ``a -> b -> ... -> a``, without repeating a cycle already listed from another member."""
    chains, seen = [], set()
    for start in sorted(edges):
        parents: dict[str, str] = {}
        queue = deque([start])
        while queue and start not in parents:
            node = queue.popleft()
            for nxt in sorted(edges[node]):
                if nxt not in parents:
                    parents[nxt] = node
                    queue.append(nxt)
        if start not in parents:
            continue
        chain = [start]
        while True:
            chain.append(parents[chain[-1]])
            if chain[-1] == start:
                break
        chain.reverse()
        key = frozenset(chain)
        if key not in seen:
            seen.add(key)
            chains.append(chain)
    return chains


def test_the_walk_sees_edgeq() -> None:
    """The rules below mean something only if the walk finds the package and its imports."""
    assert {"edgeq", "edgeq.cli.app", "edgeq.pipeline", "edgeq.remote.runner", "edgeq.firmware.emit"} <= set(MODULES)
    assert Import("edgeq.__main__", 3, "edgeq.cli.app", "main") in IMPORTS
    assert any(i.source == "edgeq.pipeline" and i.target == "edgeq.firmware.step" for i in IMPORTS)  # a lazy one


def test_no_import_cycles() -> None:
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    for imp in IMPORTS:
        if imp.target != imp.source:
            edges[imp.source].add(imp.target)
    cycles = _cycles(edges)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(chain) for chain in cycles)


def test_no_private_names_from_other_modules() -> None:
    def private(name: str) -> bool:
        return name.startswith("_") and not name.startswith("__")

    bad = [_where(i) for i in IMPORTS if i.name is not None and private(i.name) and i.target != i.source]
    bad += [_where(i) for i in IMPORTS
            if private(i.target.rpartition(".")[2]) and i.source not in PRIVATE_MODULE_USERS.get(i.target, set())]
    assert not bad, "private names imported from another module:\n" + "\n".join(bad)


def _room(module: str) -> str:
    """``edgeq.model.loading`` → ``edgeq.model``; top-level modules are rooms of their own."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else module


def _level(module: str) -> int:
    room = _room(module)
    found = [n for n, layer in enumerate(LAYERS) if room in layer]
    assert found, f"{module} is in no room of LAYERS: add its room there (tests/test_import_graph.py)"
    return found[0]


def test_every_module_has_a_room() -> None:
    for module in MODULES:
        _level(module)


def test_imports_flow_down_the_rooms() -> None:
    """cli → pipeline → quantization | firmware | remote → check → model → leaves."""
    features = _level("edgeq.quantization")

    def wrong(i: Import) -> bool:
        up, down = _level(i.source), _level(i.target)
        return down > up or (down == up == features and _room(i.source) != _room(i.target))

    bad = [f"{_where(i)} ({_room(i.source)} may not import {_room(i.target)})" for i in IMPORTS if wrong(i)]
    assert not bad, "imports going up or sideways:\n" + "\n".join(bad)


def test_only_the_entry_points_import_the_cli() -> None:
    bad = [_where(i) for i in IMPORTS if _room(i.target) == "edgeq.cli" and _room(i.source) not in ("edgeq.cli", "edgeq.__main__")]
    assert not bad, "modules importing edgeq.cli (use edgeq.context for run settings):\n" + "\n".join(bad)


def test_nothing_inside_edgeq_imports_the_package_itself() -> None:
    """``from edgeq import __version__`` put every module that did it on a cycle through
    ``edgeq/__init__``; submodules (``from edgeq import outdir``) are fine."""
    bad = [_where(i) for i in IMPORTS if i.target == "edgeq" and i.source != "edgeq"]
    assert not bad, "imports of the edgeq package itself (import the submodule, e.g. edgeq.version):\n" + "\n".join(bad)


def test_modules_stay_short() -> None:
    sizes = {m: len(p.read_text(encoding="utf-8").splitlines()) for m, p in MODULES.items()}
    long = [f"{MODULES[m].relative_to(PACKAGE.parent)}: {n} lines" for m, n in sorted(sizes.items()) if n > MAX_LINES]
    assert not long, f"modules over {MAX_LINES} lines (split them by meaning):\n" + "\n".join(long)


def test_the_leaves_import_nothing_heavy() -> None:
    """The modules every command reaches at start-up (the CLI with all commands registered,
    the run context, the version) must not pull in TensorFlow: ``edgeq --help`` stays fast."""
    code = (
        "import sys\nimport edgeq, edgeq.cli.app, edgeq.context, edgeq.version, edgeq.firmware.step, edgeq.remote\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'tf_keras', 'tensorflow_model_optimization', 'torch', 'litert_torch', 'torchao') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_the_api_functions_survive_every_submodule_import() -> None:
    """Importing ``edgeq.x.y`` binds ``edgeq.x`` to the package ``x``: a sub-package named
    after an API function (``edgeq.quantize``, ``edgeq.bench``) would replace the function
    the first time anything imports one of its modules."""
    names = sorted(m for m in MODULES if m != "edgeq" and not m.endswith("__main__"))
    code = (
        "import importlib, inspect, sys\nimport edgeq\n"
        f"for m in {names!r}:\n    importlib.import_module(m)\n"
        "bad = [n for n in edgeq.__all__ if n != '__version__' and not inspect.isfunction(getattr(edgeq, n))]\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
