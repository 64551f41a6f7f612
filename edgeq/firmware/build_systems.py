"""Build systems as data: ``templates/<name>/build_system.toml`` beside its templates.

Why: each ecosystem (CMake+TFLM tree, ESP-IDF, Arduino, Zephyr, PlatformIO, pico-sdk)
differs in where sources go, which C++ file extension its builder compiles, what
``--board`` means and which settings its templates need from a target. Declaring that
next to the templates means adding an ecosystem is a folder of templates plus target
files, never Python code; and a target naming a build system is checked against it
when loaded, so a missing setting is an error naming the file, not a template crash.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional, Protocol

from edgeq.errors import TargetError, UserError
from edgeq.resources import data_dir
from edgeq.toml_fields import Fields, read_toml

_BOARD_KINDS = ("qemu", "named", "none")
_SRC_RE = re.compile(r"^(|[A-Za-z0-9_{}.-]+(/[A-Za-z0-9_{}.-]+)*)$")


@dataclass(frozen=True)
class BuildSystem:
    """How one ecosystem lays out a project (see module docstring)."""

    name: str
    description: str
    src_dir: str
    cpp_ext: str
    board_kind: str
    project_keys: tuple[str, ...]
    optional_project_keys: tuple[str, ...]
    psram_arena: bool
    tflm_dir: bool
    max_name_length: int = 64

    def check_name(self, model_name: str) -> None:
        """Names the ecosystem itself limits (an Arduino sketch: at most 63 characters)."""
        if len(model_name) > self.max_name_length:
            raise UserError(f"name {model_name!r} is {len(model_name)} characters; build system {self.name!r} "
                            f"allows at most {self.max_name_length}", hint="pass a shorter --name")

    def sources_dir(self, model_name: str) -> str:
        """Where model sources and the runner go; ``{name}`` is the model's C name
        (an Arduino sketch folder must be named like its ``.ino``)."""
        return self.src_dir.replace("{name}", model_name)

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(self).items()}


def build_system_file(name: str) -> Path:
    return data_dir("templates") / name / "build_system.toml"


@lru_cache(maxsize=None)
def load_build_system(name: str) -> BuildSystem:
    """Load and validate ``templates/<name>/build_system.toml`` (once per process: the
    packaged templates do not change while edgeq runs, and a build asks several times)."""
    path = build_system_file(name)
    if not re.match(r"^[a-z0-9][a-z0-9._-]{0,63}$", name) or not path.is_file():
        known = ", ".join(sorted(p.parent.name for p in data_dir("templates").glob("*/build_system.toml")))
        raise TargetError(f"unknown build system {name!r}", hint=f"known build systems: {known}")
    f = Fields(read_toml(path), str(path))
    keys = f.get("project_keys", list, [], lambda v: all(isinstance(k, str) for k in v), "must be a list of strings")
    optional = f.get("optional_project_keys", list, [], lambda v: all(isinstance(k, str) for k in v), "must be a list of strings")
    system = BuildSystem(
        name=name,
        description=f.get("description", str),
        src_dir=f.get("src_dir", str, "", lambda v: bool(_SRC_RE.match(v)) and ".." not in v, "must be a relative folder"),
        cpp_ext=f.get("cpp_ext", str, "cc", lambda v: v in ("cc", "cpp"), "must be 'cc' or 'cpp'"),
        board_kind=f.get("board", str, "none", lambda v: v in _BOARD_KINDS, f"must be one of {_BOARD_KINDS}"),
        project_keys=tuple(keys),
        optional_project_keys=tuple(optional),
        psram_arena=f.get("psram_arena", bool, False),
        tflm_dir=f.get("tflm_dir", bool, False),
        max_name_length=f.get("max_name_length", int, 64, lambda v: 1 <= v <= 64, "must be 1..64"),
    )
    f.done()
    return system


class ProjectTarget(Protocol):
    """What ``check_target_project`` reads of a target (``edgeq.firmware.targets.Target`` has it).
    Structural, because ``edgeq.firmware.targets`` calls this module while loading a target."""

    @property
    def build_system(self) -> str: ...
    @property
    def project(self) -> dict[str, Any]: ...
    @property
    def psram_bytes(self) -> Optional[int]: ...
    @property
    def default_board(self) -> Optional[str]: ...


def check_target_project(target: ProjectTarget, *, where: str) -> BuildSystem:
    """The target's ``[project]`` table holds exactly the settings its build system reads."""
    system = load_build_system(target.build_system)
    missing = [k for k in system.project_keys if k not in target.project]
    unknown = [k for k in target.project if k not in system.project_keys and k not in system.optional_project_keys]
    if missing:
        raise TargetError(f"{where}: [project] lacks {', '.join(missing)}, needed by build system {system.name!r}",
                          hint=f"see {build_system_file(system.name)} for the keys it reads")
    if unknown:
        raise TargetError(f"{where}: [project] has unknown field(s) {', '.join(sorted(unknown))} for build system {system.name!r}",
                          hint=f"known: {', '.join(system.project_keys + system.optional_project_keys) or 'none'}")
    if target.psram_bytes and not system.psram_arena:
        raise TargetError(f"{where}: field 'psram_bytes' is set but build system {system.name!r} cannot place the arena in PSRAM")
    if system.board_kind == "named" and not target.default_board:
        raise TargetError(f"{where}: build system {system.name!r} needs 'default_board'")
    return system


__all__ = ["BuildSystem", "load_build_system", "check_target_project", "build_system_file"]
