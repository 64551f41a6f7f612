"""What ``edgeq verify`` needs before it compiles: the project, a TFLM tree, the tools,
and the parser of the firmware's console contract.

Kept apart from the build-and-run logic (``edgeq.firmware.verify``) because each of these
is a place where a user's setup can be wrong, and each failure must say how to fix it
(an ``EdgeqError`` with a hint), never surface as a CMake or compiler log.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from edgeq.firmware.project import EXIT_CODES
from edgeq.errors import ToolMissingError, UserError

MANIFEST = ".edgeq-manifest.json"
TREE_MARKER = "tensorflow/lite/micro/micro_interpreter.h"
CMSIS_NN_MARKER = "third_party/cmsis_nn/Include/arm_nnfunctions.h"
CORTEX_M_MARKER = "tensorflow/lite/micro/cortex_m_generic/debug_log_callback.h"
TREE_README = "https://github.com/tensorflow/tflite-micro (tensorflow/lite/micro/tools/project_generation/create_tflm_tree.py)"
CMSIS_TREE_CMD = ("python3 tensorflow/lite/micro/tools/project_generation/create_tflm_tree.py "
                  "--makefile_options=\"TARGET=cortex_m_generic TARGET_ARCH=cortex-m4+fp OPTIMIZED_KERNEL_DIR=cmsis_nn "
                  "TARGET_TOOLCHAIN_ROOT=/usr/bin/\" <tree>/cmsis-nn")
HOST_TREE_CMD = "python3 tensorflow/lite/micro/tools/project_generation/create_tflm_tree.py <tree>/reference"
ARM_PACKAGES = "gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib"
_HEADER_RE = re.compile(r"^# Firmware project for model \"[^\"]*\" on target ([^\s,]+?)(?:, board ([^\s,]+?))?\.\s*$", re.M)
_ARENA_DEF_RE = re.compile(r"\b(k(\w+)TensorArenaSize\s*=\s*)(\d+)")


class VerifyError(UserError):
    """``edgeq verify`` could not build or run the firmware (exit 2): no TFLM tree, a
    missing tool, a project it cannot read, a failed compile."""


@dataclass(frozen=True)
class Project:
    """The facts of a generated cmake-tflm project that verify needs, read from its files."""

    root: Path
    name: str
    camel: str
    settings: str  # relative path of <name>_model_settings.h
    arena_size_bytes: int
    target: str | None
    board: str | None
    cross: bool
    cmsis_nn: bool
    find_min_option: bool

    def set_arena(self, text: str, size: int) -> str:
        """``<name>_model_settings.h`` text with k…TensorArenaSize replaced by ``size``."""
        return _ARENA_DEF_RE.sub(lambda m: f"{m.group(1)}{size}", text, count=1)


def read_project(project_dir: Path) -> Project:
    """Read a project edgeq generated with a cmake-tflm target (``edgeq build --target …``)."""
    root = Path(project_dir)
    cmake_lists = root / "CMakeLists.txt"
    if not root.is_dir() or not cmake_lists.is_file():
        raise VerifyError(f"{root} is not a generated CMake project (no CMakeLists.txt)",
                          hint="give the folder `edgeq build --target cortex-m4 --board qemu-mps2-an386 -o DIR` wrote")
    manifest: dict = {}
    try:
        manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    candidates = sorted(p for p in (manifest.get("files") or {}) if p.endswith("_model_settings.h"))
    if not candidates:
        candidates = sorted(p.relative_to(root).as_posix() for p in root.glob("src/*_model_settings.h"))
    text = cmake_lists.read_text(encoding="utf-8", errors="replace")
    if not candidates or "TFLM_DIR" not in text:
        raise VerifyError(f"{root} is not an edgeq cmake-tflm project (no src/<name>_model_settings.h or TFLM_DIR)",
                          hint="edgeq verify builds projects of the cmake-tflm targets (`edgeq targets`); "
                               "other build systems have their own tools (west, idf.py, pio)")
    settings = candidates[0]
    found = _ARENA_DEF_RE.search((root / settings).read_text(encoding="utf-8", errors="replace"))
    if found is None:
        raise VerifyError(f"{root / settings} defines no k<Name>TensorArenaSize", hint="re-run edgeq build to refresh it")
    header = _HEADER_RE.search(text)
    return Project(
        root=root, name=Path(settings).name[: -len("_model_settings.h")], camel=found.group(2), settings=settings,
        arena_size_bytes=int(found.group(3)),
        target=manifest.get("target") or (header.group(1) if header else None),
        board=manifest.get("board") or (header.group(2) if header else None),
        cross=(root / "cmake" / "arm-none-eabi.cmake").is_file() or "CMAKE_TOOLCHAIN_FILE" in text,
        cmsis_nn="CMSIS_NN" in text,
        find_min_option="EDGEQ_FIND_MIN_ARENA" in text,
    )


def _is_tree(path: Path) -> bool:
    return (path / TREE_MARKER).is_file()


def default_tflm_location() -> Path | None:
    """``../shared/tflm`` next to an edgeq checkout (where edgeq's developers keep trees)."""
    checkout = Path(__file__).resolve().parent.parent.parent  # edgeq/codegen/verify_setup.py
    candidate = checkout.parent / "shared" / "tflm"
    return candidate if (checkout / "pyproject.toml").is_file() and candidate.is_dir() else None


def resolve_tree(tflm_dir: str | os.PathLike[str] | None, project: Project) -> Path:
    """The TFLM tree for ``project``: ``tflm_dir``, else ``$EDGEQ_TFLM_DIR``, else the
    checkout's ``../shared/tflm``. Each may be one tree, or a folder holding ``cmsis-nn/``
    (every Cortex-M project) and ``reference/`` (host projects)."""
    source = "--tflm-dir"
    value: str | os.PathLike[str] | None = tflm_dir
    if value is None and os.environ.get("EDGEQ_TFLM_DIR"):
        value, source = os.environ["EDGEQ_TFLM_DIR"], "EDGEQ_TFLM_DIR"
    if value is None:
        value, source = default_tflm_location(), "the default"
    flavour = "cmsis-nn" if project.cross else "reference"
    how = (f"make one with TFLM's create_tflm_tree.py (a clone of {TREE_README}): for Cortex-M `{CMSIS_TREE_CMD}`, "
           f"for host `{HOST_TREE_CMD}`; then pass --tflm-dir <tree> or set EDGEQ_TFLM_DIR (a folder holding "
           "cmsis-nn/ and reference/ trees works too)")
    if value is None:
        raise VerifyError("no TFLM source tree to build the firmware against", hint=how)
    path = Path(value).expanduser()
    if not _is_tree(path) and _is_tree(path / flavour):
        path = path / flavour
    if not _is_tree(path):
        raise VerifyError(f"{source} {path} is not a TFLM tree (no {TREE_MARKER}"
                          f"{', nor a ' + flavour + '/ tree inside' if path.is_dir() else ''})", hint=how)
    if project.cmsis_nn and not (path / CMSIS_NN_MARKER).is_file():
        raise VerifyError(f"{path} is a reference-kernel TFLM tree, but this project ({project.target or 'Cortex-M'}) "
                          "uses CMSIS-NN kernels", hint=f"make a CMSIS-NN tree: `{CMSIS_TREE_CMD}`, and pass it with --tflm-dir")
    if project.cross and not (path / CORTEX_M_MARKER).is_file():
        raise VerifyError(f"{path} was not made for Cortex-M (no {CORTEX_M_MARKER})",
                          hint=f"make the tree with TARGET=cortex_m_generic: `{CMSIS_TREE_CMD}`")
    return path.resolve()


def require_tools(project: Project, *, qemu: bool) -> dict[str, str]:
    """Paths of the tools the project needs; a missing one names its Debian package."""
    needs = [("cmake", "cmake")]
    if project.cross:
        needs += [("arm-none-eabi-gcc", ARM_PACKAGES), ("arm-none-eabi-g++", ARM_PACKAGES)]
        if qemu:
            needs.append(("qemu-system-arm", "qemu-system-arm"))
    else:
        needs.append(("c++", "g++"))
    found: dict[str, str] = {}
    for tool, package in needs:
        path = shutil.which(tool)
        if path is None:
            raise ToolMissingError(f"{tool} is not installed (edgeq verify needs it to build and run the firmware)",
                                   hint=f"Debian/Ubuntu: sudo apt-get install {package}")
        found[tool] = path
    if not os.environ.get("CMAKE_GENERATOR") and not shutil.which("make") and not shutil.which("ninja"):
        raise ToolMissingError("neither make nor ninja is installed (CMake needs one to build)",
                               hint="Debian/Ubuntu: sudo apt-get install make")
    return found


# --------------------------------------------------------------------------- console
MEANINGS = {code: meaning for meaning, code in EXIT_CODES.items()}
_USED_RE = re.compile(r"edgeq: arena_used_bytes=(\d+) k\w+TensorArenaSize=(\d+)")
_ALLOC_RE = re.compile(r"edgeq: AllocateTensors\(\) failed with a (\d+)-byte arena")
_MATCH_RE = re.compile(r"edgeq: output matches the (?:TFLM|LiteRT) reference")
_MISMATCH_RE = re.compile(r"edgeq: MISMATCH: (\d+) value\(s\) differ from the (?:TFLM|LiteRT) reference")
_MIN_RE = re.compile(r"edgeq: min_arena_bytes=(\d+)")


@dataclass(frozen=True)
class Console:
    """What the firmware said, per the runner's console contract (see runner.cpp.j2)."""

    arena_used_bytes: int | None = None
    arena_size_bytes: int | None = None
    alloc_failed_bytes: int | None = None
    matched: bool = False
    mismatches: int | None = None
    min_arena_bytes: int | None = None


def parse_console(text: str) -> Console:
    """Parse the ``edgeq: …`` lines; the last line of each kind wins (a search prints many)."""
    def last(regex: re.Pattern[str]) -> re.Match[str] | None:
        found = list(regex.finditer(text))
        return found[-1] if found else None

    used, alloc, mismatch, minimum = last(_USED_RE), last(_ALLOC_RE), last(_MISMATCH_RE), last(_MIN_RE)
    return Console(
        arena_used_bytes=int(used.group(1)) if used else None,
        arena_size_bytes=int(used.group(2)) if used else None,
        alloc_failed_bytes=int(alloc.group(1)) if alloc else None,
        matched=bool(_MATCH_RE.search(text)),
        mismatches=int(mismatch.group(1)) if mismatch else None,
        min_arena_bytes=int(minimum.group(1)) if minimum else None,
    )


def exit_meaning(code: int | None) -> str:
    """``match``/``mismatch``/… from the firmware's exit code; ``timeout`` for none; a
    native crash (negative: killed by a signal) counts as a fault."""
    if code is None:
        return "timeout"
    if code in MEANINGS:
        return MEANINGS[code]
    return "fault" if code < 0 else "unknown"


__all__ = ["Console", "MEANINGS", "Project", "VerifyError", "default_tflm_location", "exit_meaning", "parse_console",
           "read_project", "require_tools", "resolve_tree"]
