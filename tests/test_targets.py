"""Targets and boards are validated data: shipped files load, bad files fail by name."""

from __future__ import annotations

from pathlib import Path

import pytest

import edgeq
from edgeq.firmware.build_systems import load_build_system
from edgeq import resources
from edgeq.errors import TargetError
from edgeq.firmware.targets import list_boards, list_targets, load_board, load_target, parse_target

EXPECTED = {"cortex-m", "cortex-m0plus", "cortex-m3", "cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55", "host"}
# A board may serve a target whose code its core runs unchanged: QEMU's micro:bit is a
# Cortex-M0, and cortex-m0plus code is the same ARMv6-M instruction set.
RUNS_ON = {"cortex-m0plus": {"cortex-m0plus", "cortex-m0"}}

GOOD = """\
schema_version = 1
name = "{name}"
description = "test part"
toolchain = "arm-none-eabi"
cpu = "cortex-m4"
fpu = "fpv4-sp-d16"
float_abi = "hard"
kernels = "cmsis_nn"
build_system = "cmake-tflm"
flash_bytes = 65536
ram_bytes = 16384
runtime_code_bytes = 1000
{extra}
[arena]
scale_percent = 5
cmsis_nn = "dsp"
"""


def write(folder: Path, name: str, extra: str = "", text: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    path.write_text(text if text is not None else GOOD.format(name=name, extra=extra))
    return path


def test_shipped_targets_load() -> None:
    targets = {t.name: t for t in list_targets()}
    assert EXPECTED <= set(targets)
    m4 = targets["cortex-m4"]
    assert m4.arch_flags == ("-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard")
    assert m4.kernels == "cmsis_nn" and m4.build_system == "cmake-tflm" and "qemu-mps2-an386" in m4.boards
    assert targets["cortex-m"].cpu == "cortex-m4" and targets["cortex-m"].float_abi == "hard"
    assert targets["host"].kernels == "reference" and targets["host"].flash_bytes is None
    for t in targets.values():
        assert (resources.data_dir("templates") / t.build_system).is_dir(), t.name
        if load_build_system(t.build_system).board_kind == "qemu":  # named boards (Zephyr) are ecosystem ids
            for board in t.boards:
                assert load_board(board, target=t).cpu in RUNS_ON.get(t.cpu, {t.cpu})
        assert t.to_dict()["name"] == t.name


def test_shipped_boards_load() -> None:
    boards = {b.name: b for b in list_boards()}
    assert set(boards) == {"qemu-mps2-an385", "qemu-mps2-an386", "qemu-mps2-an500", "qemu-mps2-an505", "qemu-mps3-an547", "qemu-microbit"}
    assert boards["qemu-mps2-an385"].cpu == "cortex-m3" and boards["qemu-mps3-an547"].vectors_origin == 0x10000000


def test_unknown_key_names_file_and_field(tmp_path: Path) -> None:
    path = write(tmp_path, "mine", extra='flash_byts = 3\n')
    with pytest.raises(TargetError) as exc:
        parse_target(path)
    assert str(path) in exc.value.message and "flash_byts" in exc.value.message


@pytest.mark.parametrize(
    ("replace", "field"),
    [
        (('kernels = "cmsis_nn"', 'kernels = "fast"'), "kernels"),
        (("flash_bytes = 65536", "flash_bytes = -1"), "flash_bytes"),
        (("flash_bytes = 65536", 'flash_bytes = "1M"'), "flash_bytes"),
        (('float_abi = "hard"', 'float_abi = "hardish"'), "float_abi"),
        (("schema_version = 1", "schema_version = 2"), "schema_version"),
        (('cpu = "cortex-m4"', 'cpu = "cortex m4; rm"'), "cpu"),
        (("scale_percent = 5", "scale_percent = true"), "scale_percent"),
        (("scale_percent = 5", "scale_pct = 5"), "scale_pct"),
        (('name = "mine"', 'name = "other"'), "name"),
        (('toolchain = "arm-none-eabi"', "toolchain = 3"), "toolchain"),
        (('cmsis_nn = "dsp"', 'cmsis_nn = "neon"'), "cmsis_nn"),
        (('cmsis_nn = "dsp"', ""), "arena.cmsis_nn"),
        (('kernels = "cmsis_nn"', 'kernels = "reference"'), "arena.cmsis_nn"),
    ],
)
def test_bad_values_name_the_field(tmp_path: Path, replace: tuple[str, str], field: str) -> None:
    text = GOOD.format(name="mine", extra="").replace(*replace)
    path = write(tmp_path, "mine", text=text)
    with pytest.raises(TargetError) as exc:
        parse_target(path)
    assert str(path) in exc.value.message and field in exc.value.message


def test_bad_flags_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "mine", extra='c_flags = ["-O2", "-DX=\\"$(evil)\\""]\n')
    with pytest.raises(TargetError, match="c_flags"):
        parse_target(path)


def test_invalid_toml_names_file(tmp_path: Path) -> None:
    path = write(tmp_path, "mine", text="schema_version = = 1\n")
    with pytest.raises(TargetError, match="invalid TOML"):
        parse_target(path)


def test_user_targets_dir_adds_and_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    write(tmp_path / "mine", "my-board")
    write(tmp_path / "mine", "cortex-m4", extra="")
    assert load_target("my-board", targets_dir=tmp_path / "mine").flash_bytes == 65536
    assert load_target("cortex-m4", targets_dir=tmp_path / "mine").description == "test part"
    assert load_target("cortex-m4").description != "test part"
    write(tmp_path / "config" / "edgeq" / "targets", "from-config")
    assert "from-config" in {t.name for t in list_targets()}


def test_unknown_target_lists_known() -> None:
    with pytest.raises(TargetError) as exc:
        load_target("cortex-m99")
    assert "cortex-m4" in (exc.value.hint or "")


def test_missing_targets_dir_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(TargetError, match="does not exist"):
        list_targets(targets_dir=tmp_path / "nope")


def test_board_must_fit_target() -> None:
    with pytest.raises(TargetError, match="does not fit"):
        load_board("qemu-mps3-an547", target=load_target("cortex-m4"))
    with pytest.raises(TargetError, match="unknown board"):
        load_board("../../etc")


def test_packaged_data_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In a wheel, templates/targets live in edgeq/_data; a checkout uses the top level."""
    assert resources.data_dir("targets") == Path(edgeq.__file__).resolve().parent.parent / "targets" or (
        Path(edgeq.__file__).resolve().parent / "_data" / "targets"
    ).is_dir()
    fake = tmp_path / "site" / "edgeq"
    (fake / "_data" / "targets").mkdir(parents=True)
    monkeypatch.setattr(resources, "__file__", str(fake / "resources.py"))
    assert resources.data_dir("targets") == (fake / "_data" / "targets").resolve()
    with pytest.raises(ValueError):
        resources.data_dir("secrets")


def test_arena_rule_arithmetic() -> None:
    from edgeq.firmware.arena import target_arena

    m4 = load_target("cortex-m4")
    figure = target_arena(1000, tflite=None, target=m4)
    expected = -(-(-(-1000 * (100 + m4.arena.scale_percent) // 100) + m4.arena.headroom_bytes) // 16) * 16
    assert figure.target_bytes == expected and figure.target_bytes % 16 == 0 and figure.host_bytes == 1000
    assert "host minimum 1000 B" in figure.rule
    # With the model: the 64-bit struct overhead (12 B per tensor, 32 B per operator) comes off.
    from edgeq.model.tflite_info import parse
    from tests.codegen_models import tiny_cnn

    data = tiny_cnn().read_bytes()
    info = parse(data)
    saved = 12 * len(info.tensors) + 32 * sum(op.count for op in info.ops)
    with_model = target_arena(10000, tflite=data, target=m4)
    assert f"64-bit structs {saved} B" in with_model.rule
    assert with_model.target_bytes == -(-(10000 - saved + with_model.cmsis_nn_bytes + m4.arena.headroom_bytes) // 16) * 16
    assert target_arena(10000, tflite=data, target=load_target("host")).target_bytes >= 10000  # same pointer size: nothing off
