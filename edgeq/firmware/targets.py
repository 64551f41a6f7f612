"""Targets and boards as validated data (``targets/*.toml``, ``templates/boards/*/board.toml``).

Why data, not code: adding a Cortex-M variant or a board must not need a release, users
add their own with ``--targets-dir`` or ``~/.config/edgeq/targets``. Because the files
come from users, loading is strict: a ``schema_version`` we know, no unknown keys, every
value checked, and every error names the file and the field.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeq.errors import TargetError
from edgeq.resources import data_dir
from edgeq.toml_fields import SCHEMA_VERSION, Fields, read_toml

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._+-]{0,63}$")
_KERNELS = ("cmsis_nn", "esp_nn", "reference")
# "ecosystem": the build system brings its own compiler and CPU flags (ESP-IDF, Arduino,
# Zephyr, PlatformIO, pico-sdk); ``cpu`` then only informs.
_TOOLCHAINS = ("arm-none-eabi", "host", "ecosystem")
BOARD_RE = re.compile(r"^[a-z0-9][a-z0-9_./@+-]{0,63}$")
_PROJECT_KEY_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_FLOAT_ABIS = ("soft", "softfp", "hard")
_CMSIS_PATHS = ("none", "dsp", "mve", "any")
# ESP-NN code paths: portable C ("generic", ESP32) or the ESP32-S3 SIMD kernels.
_ESP_NN_PATHS = ("generic", "esp32s3")


@dataclass(frozen=True)
class ArenaRule:
    """How a host-measured TFLM arena becomes this target's ``k<Name>TensorArenaSize``.

    ``target = align(ceil(host * (100 + scale_percent) / 100) - host_bytes_per_tensor * tensors
    - host_bytes_per_op * ops + cmsis_nn_extra + headroom_bytes)`` where ``cmsis_nn_extra``
    bounds the scratch and kernel-sum buffers CMSIS-NN's ``cmsis_nn`` code path (none/dsp/mve,
    or "any" = the worst) adds to the reference kernels' arena, and the per-tensor/per-op
    terms are what the 64-bit host's structs take beyond a 32-bit core's. See
    ``edgeq.firmware.arena`` and README "Arena rule" for measurements.
    """

    scale_percent: int = 0
    headroom_bytes: int = 0
    cmsis_nn: str = ""
    align_bytes: int = 16
    esp_nn: str = ""
    host_bytes_per_tensor: int = 0
    host_bytes_per_op: int = 0


@dataclass(frozen=True)
class Target:
    """One build target: CPU, ABI, flags, TFLM kernels, default budgets, template set."""

    name: str
    description: str
    toolchain: str
    cpu: str | None
    fpu: str | None
    float_abi: str | None
    kernels: str
    build_system: str
    c_flags: tuple[str, ...]
    ld_flags: tuple[str, ...]
    flash_bytes: int | None
    ram_bytes: int | None
    runtime_code_bytes: int
    runtime_ram_bytes: int
    arena: ArenaRule
    boards: tuple[str, ...]
    source: str = ""
    psram_bytes: int | None = None
    default_board: str | None = None
    project: dict[str, Any] = field(default_factory=dict)
    missing_ops: tuple[str, ...] = ()
    # False: the target's TFLM copy runs FULLY_CONNECTED with one (per-tensor) requantization
    # scale even when the weights carry per-channel scales, which TensorFlow (2.21 here) writes
    # by default, so its outputs are wrong. edgeq then converts dense layers per tensor.
    per_channel_dense: bool = True

    @property
    def is_cross(self) -> bool:
        return self.toolchain != "host"

    @property
    def arch_flags(self) -> tuple[str, ...]:
        """``-mcpu/-mthumb/-mfpu/-mfloat-abi`` for the toolchain file and tests."""
        if self.toolchain != "arm-none-eabi":
            return ()
        flags = [f"-mcpu={self.cpu}", "-mthumb"]
        if self.fpu:
            flags.append(f"-mfpu={self.fpu}")
        if self.float_abi:
            flags.append(f"-mfloat-abi={self.float_abi}")
        return tuple(flags)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "toolchain": self.toolchain,
            "cpu": self.cpu,
            "fpu": self.fpu,
            "float_abi": self.float_abi,
            "kernels": self.kernels,
            "build_system": self.build_system,
            "arch_flags": list(self.arch_flags),
            "c_flags": list(self.c_flags),
            "ld_flags": list(self.ld_flags),
            "flash_bytes": self.flash_bytes,
            "ram_bytes": self.ram_bytes,
            "runtime_code_bytes": self.runtime_code_bytes,
            "runtime_ram_bytes": self.runtime_ram_bytes,
            "psram_bytes": self.psram_bytes,
            "arena": vars(self.arena).copy(),
            "boards": list(self.boards),
            "default_board": self.default_board,
            "project": dict(self.project),
            "missing_ops": list(self.missing_ops),
            "per_channel_dense": self.per_channel_dense,
            "source": self.source,
        }


@dataclass(frozen=True)
class Board:
    """A QEMU (or real) board: machine, CPU and the memory map the linker script uses."""

    name: str
    description: str
    cpu: str
    qemu_machine: str
    vectors_origin: int
    flash_origin: int
    flash_bytes: int
    ram_origin: int
    ram_bytes: int
    stack_bytes: int
    heap_bytes: int
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k != "extra"}


def parse_target(path: Path) -> Target:
    """Load and validate one target file."""
    f = Fields(read_toml(path), str(path))
    name = f.get("name", str, path.stem, lambda v: bool(_NAME_RE.match(v)), "must be lower-case letters, digits, '.', '_', '+', '-'")
    if name != path.stem:
        raise f.fail("name", f"must match the file name '{path.stem}' (got {name!r})")
    toolchain = f.get("toolchain", str, check=lambda v: v in _TOOLCHAINS, why=f"must be one of {_TOOLCHAINS}")
    cross = toolchain != "host"
    cpu = f.get("cpu", str, ... if cross else None, lambda v: bool(_NAME_RE.match(v)), "must be a -mcpu value like 'cortex-m4'")
    fpu = f.get("fpu", str, None, lambda v: bool(_NAME_RE.match(v)), "must be a -mfpu value like 'fpv4-sp-d16' or 'none'")
    float_abi = f.get("float_abi", str, None, lambda v: v in _FLOAT_ABIS, f"must be one of {_FLOAT_ABIS}")
    if fpu == "none":
        fpu = None
    arena_table = f.get("arena", dict, {})
    a = Fields(arena_table, f"{path} [arena]")
    arena = ArenaRule(
        scale_percent=a.size("scale_percent", 0),
        headroom_bytes=a.size("headroom_bytes", 0),
        cmsis_nn=a.get("cmsis_nn", str, "", lambda v: v in _CMSIS_PATHS, f"must be one of {_CMSIS_PATHS}"),
        align_bytes=a.get("align_bytes", int, 16, lambda v: v in (4, 8, 16, 32, 64), "must be 4, 8, 16, 32 or 64"),
        esp_nn=a.get("esp_nn", str, "", lambda v: v in _ESP_NN_PATHS, f"must be one of {_ESP_NN_PATHS}"),
        host_bytes_per_tensor=a.get("host_bytes_per_tensor", int, 0, lambda v: 0 <= v <= 64, "must be 0..64"),
        host_bytes_per_op=a.get("host_bytes_per_op", int, 0, lambda v: 0 <= v <= 256, "must be 0..256"),
    )
    a.done()
    target = Target(
        name=name,
        description=f.get("description", str),
        toolchain=toolchain,
        cpu=cpu,
        fpu=fpu,
        float_abi=float_abi,
        kernels=f.get("kernels", str, check=lambda v: v in _KERNELS, why=f"must be one of {_KERNELS}"),
        build_system=f.get("build_system", str, check=lambda v: bool(_NAME_RE.match(v)), why="must name a folder under templates/"),
        c_flags=f.flags("c_flags"),
        ld_flags=f.flags("ld_flags"),
        flash_bytes=f.size("flash_bytes", None, 1),
        ram_bytes=f.size("ram_bytes", None, 1),
        runtime_code_bytes=f.size("runtime_code_bytes", 0),
        runtime_ram_bytes=f.size("runtime_ram_bytes", 0),
        arena=arena,
        boards=tuple(f.get("boards", list, [], lambda v: all(isinstance(b, str) and BOARD_RE.match(b) for b in v), "must be a list of board names")),
        source=str(path),
        psram_bytes=f.size("psram_bytes", None, 1),
        default_board=f.get("default_board", str, None, lambda v: bool(BOARD_RE.match(v)), "must be a board name like 'mps2/an385'"),
        project=_project_table(f.get("project", dict, {}), f"{path} [project]"),
        missing_ops=tuple(f.get("missing_ops", list, [], lambda v: all(isinstance(m, str) and re.match(r"^Add[A-Za-z0-9]+$", m) for m in v),
                                "must be a list of MicroMutableOpResolver method names like 'AddReverseV2'")),
        per_channel_dense=f.get("per_channel_dense", bool, True),
    )
    f.done()
    if toolchain != "arm-none-eabi" and (fpu or float_abi):
        raise TargetError(f"{path}: fields 'fpu'/'float_abi' only apply to toolchain \"arm-none-eabi\"")
    if target.default_board and target.boards and target.default_board not in target.boards:
        raise TargetError(f"{path}: field 'default_board' {target.default_board!r} is not in 'boards'")
    from edgeq.firmware.build_systems import check_target_project

    check_target_project(target, where=str(path))
    # Each optimised kernel set has its own arena term, so its code path must be named.
    for kernels, code_path, paths, what in (("esp_nn", arena.esp_nn, _ESP_NN_PATHS, "ESP-NN code path of this chip"),
                                            ("cmsis_nn", arena.cmsis_nn, _CMSIS_PATHS, "CMSIS-NN code path of this CPU")):
        if (target.kernels == kernels) != bool(code_path):
            raise TargetError(f"{path}: field 'arena.{kernels}' must be set exactly when kernels = \"{kernels}\"",
                              hint=f"one of {paths}: the {what}")
    return target


def _project_table(table: dict[str, Any], where: str) -> dict[str, Any]:
    """The build system's settings (board ids, library pins): plain values only, since
    templates render them; which keys must be present is the build system's to say."""
    for key, value in table.items():
        if not _PROJECT_KEY_RE.match(key):
            raise TargetError(f"{where}: key {key!r} must be lower_snake_case")
        ok = isinstance(value, (str, int, bool)) or (isinstance(value, list) and all(isinstance(v, str) for v in value))
        if not ok:
            raise TargetError(f"{where}: field '{key}' must be a string, integer, boolean or list of strings, got {value!r}")
        for text in value if isinstance(value, list) else [value]:
            if isinstance(text, str) and any(c in text for c in '\n\r"\\`$'):
                raise TargetError(f"{where}: field '{key}' may not contain newlines, quotes, backslashes, '`' or '$' (got {text!r})")
    return dict(sorted(table.items()))


def user_target_dirs(targets_dir: Path | None = None) -> list[Path]:
    """Search order for user targets: ``--targets-dir``, then ``$XDG_CONFIG_HOME/edgeq/targets``."""
    dirs = [Path(targets_dir)] if targets_dir is not None else []
    if targets_dir is not None and not Path(targets_dir).is_dir():
        raise TargetError(f"targets directory {targets_dir} does not exist", hint="pass a folder holding <name>.toml files")
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    dirs.append(config / "edgeq" / "targets")
    return dirs


def _target_files(targets_dir: Path | None) -> dict[str, Path]:
    """name → file, user folders first so a user file can override a shipped target."""
    found: dict[str, Path] = {}
    for folder in [*user_target_dirs(targets_dir), data_dir("targets")]:
        if folder.is_dir():
            for path in sorted(folder.glob("*.toml")):
                found.setdefault(path.stem, path)
    return found


def list_targets(*, targets_dir: Path | None = None) -> list[Target]:
    """Every known target (validated), sorted by name. One bad file fails the listing."""
    return [parse_target(p) for _, p in sorted(_target_files(targets_dir).items())]


def load_target(name: str, *, targets_dir: Path | None = None) -> Target:
    """Load a target by name; unknown names list the known ones."""
    files = _target_files(targets_dir)
    if name not in files:
        raise TargetError(f"unknown target {name!r}", hint="known targets: " + ", ".join(sorted(files)) + " (see `edgeq targets`)")
    return parse_target(files[name])


def parse_board(path: Path) -> Board:
    """Load and validate one ``board.toml``."""
    f = Fields(read_toml(path), str(path))
    mem = Fields(f.get("memory", dict), f"{path} [memory]")
    flash_origin = mem.size("flash_origin")
    board = Board(
        name=f.get("name", str, path.parent.name, lambda v: v == path.parent.name, f"must match the folder name '{path.parent.name}'"),
        description=f.get("description", str),
        cpu=f.get("cpu", str, check=lambda v: bool(_NAME_RE.match(v)), why="must be a -mcpu value"),
        qemu_machine=f.get("qemu_machine", str, check=lambda v: bool(_NAME_RE.match(v)), why="must be a qemu-system-arm -M value"),
        vectors_origin=mem.size("vectors_origin", flash_origin),
        flash_origin=flash_origin,
        flash_bytes=mem.size("flash_bytes", minimum=1024),
        ram_origin=mem.size("ram_origin"),
        ram_bytes=mem.size("ram_bytes", minimum=1024),
        stack_bytes=mem.size("stack_bytes", 16384, 256),
        heap_bytes=mem.size("heap_bytes", 16384, 0),
    )
    mem.done()
    f.done()
    return board


def boards_dir() -> Path:
    return data_dir("templates") / "boards"


def list_boards() -> list[Board]:
    return [parse_board(p) for p in sorted(boards_dir().glob("*/board.toml"))]


def load_board(name: str, *, target: Target | None = None) -> Board:
    """Load a board; with ``target``, also check the board fits it (same CPU, listed)."""
    path = boards_dir() / name / "board.toml"
    if not _NAME_RE.match(name) or not path.is_file():
        known = ", ".join(b.name for b in list_boards())
        raise TargetError(f"unknown board {name!r}", hint=f"known boards: {known}")
    board = parse_board(path)
    if target is not None and name not in target.boards:
        listed = ", ".join(target.boards) or "none"
        raise TargetError(
            f"board {name!r} ({board.cpu}) does not fit target {target.name!r}",
            hint=f"boards for {target.name}: {listed}; or pick the target matching the board's CPU",
        )
    return board


__all__ = ["ArenaRule", "Board", "Target", "SCHEMA_VERSION", "BOARD_RE", "list_targets", "load_target", "load_board", "list_boards", "parse_target", "parse_board", "user_target_dirs"]
