"""Build systems and ecosystem target fields are validated data, and the budget moves the
arena to PSRAM only where a target has PSRAM (unit level; rendering is tested in
tests/test_build_systems.py)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from edgeq.firmware.build_systems import load_build_system
from edgeq.firmware.budget import check_budget
from edgeq.firmware.project import resolve_board
from edgeq.errors import BudgetError, TargetError
from edgeq.firmware.targets import load_target, parse_target
from tests.test_targets import write


def test_cmake_build_system_loads() -> None:
    system = load_build_system("cmake-tflm")
    assert system.board_kind == "qemu" and system.sources_dir("digits") == "src" and system.cpp_ext == "cc"


def test_unknown_build_system_lists_known(tmp_path: Path) -> None:
    path = write(tmp_path, "part", text=_good("part").replace('build_system = "cmake-tflm"', 'build_system = "nosuch"'))
    with pytest.raises(TargetError, match="unknown build system 'nosuch'") as exc:
        parse_target(path)
    assert "cmake-tflm" in (exc.value.hint or "")


@pytest.mark.parametrize(("extra", "message"), [
    ('[project]\nidf_target = "esp32"\n', "unknown field"),
    ('[project]\n"Bad-Key" = "x"\n', "lower_snake_case"),
    ('[project]\nfqbn = "a\\"b"\n', "may not contain"),
    ('[project]\nfqbn = 1.5\n', "must be a string"),
    ("psram_bytes = 1024\n", "cannot place the arena in PSRAM"),
])
def test_project_table_checked_against_build_system(tmp_path: Path, extra: str, message: str) -> None:
    text = _good("part")
    if extra.startswith("["):
        text += "\n" + extra
    else:
        text = text.replace("[arena]", extra + "\n[arena]")
    path = write(tmp_path, "part", text=text)
    with pytest.raises(TargetError, match=message) as exc:
        parse_target(path)
    assert str(path) in str(exc.value)


def test_esp_nn_arena_path_required(tmp_path: Path) -> None:
    text = _good("part").replace('kernels = "cmsis_nn"', 'kernels = "esp_nn"')
    with pytest.raises(TargetError, match="arena.esp_nn"):
        parse_target(write(tmp_path, "part", text=text))


def test_board_meaning_follows_build_system() -> None:
    m4 = load_target("cortex-m4")
    board, name, warnings = resolve_board(m4, "qemu-mps2-an386")
    assert board is not None and name == "qemu-mps2-an386" and not warnings
    with pytest.raises(TargetError, match="needs a Cortex-M target"):
        resolve_board(load_target("host"), "qemu-mps2-an386")
    with pytest.raises(TargetError, match="unknown board"):
        resolve_board(m4, "nrf52840dk/nrf52840")


def test_budget_moves_arena_to_psram_only_when_it_fits() -> None:
    from tests.codegen_models import tiny_cnn

    data = Path(tiny_cnn()).read_bytes()
    base = replace(load_target("cortex-m4"), ram_bytes=20_000, runtime_ram_bytes=10_000)
    with pytest.raises(BudgetError, match="RAM") as exc:
        check_budget(tflite=data, target=base, host_arena_bytes=50_000)
    assert "PSRAM" in (exc.value.hint or "")  # suggests a board with PSRAM
    psram = replace(base, psram_bytes=8 << 20)
    figures = check_budget(tflite=data, target=psram, host_arena_bytes=50_000)
    assert figures.arena_in_psram and figures.ram_used == 10_000 and figures.ok
    assert figures.to_dict()["psram"] == {"limit": 8 << 20, "arena_in_psram": True}
    small = check_budget(tflite=data, target=psram, host_arena_bytes=1_000)
    assert not small.arena_in_psram and small.ram_used == small.arena_bytes + 10_000
    with pytest.raises(BudgetError, match="exceeds the 65,536 B of PSRAM"):
        check_budget(tflite=data, target=replace(base, psram_bytes=65_536), host_arena_bytes=100_000)


def _good(name: str) -> str:
    from tests.test_targets import GOOD

    return GOOD.format(name=name, extra="")


def test_ops_missing_from_a_targets_tflm_are_refused() -> None:
    from edgeq.firmware.project import check_target_ops
    from edgeq.errors import UnsupportedOpError
    from edgeq.model.tflite_info import parse
    from tests.codegen_models import tiny_cnn

    info = parse(Path(tiny_cnn()).read_bytes())
    m4 = load_target("cortex-m4")
    check_target_ops(info, m4)
    with pytest.raises(UnsupportedOpError, match=r"CONV_2D \(AddConv2D\)") as exc:
        check_target_ops(info, replace(m4, missing_ops=("AddConv2D", "AddReverseV2")))
    assert exc.value.ops == ("CONV_2D (AddConv2D)",)


def test_named_and_fixed_boards() -> None:
    zephyr = load_target("zephyr")
    assert resolve_board(zephyr, None) == (None, "mps2/an385", [])
    _, name, warnings = resolve_board(zephyr, "nrf52840dk/nrf52840")
    assert name == "nrf52840dk/nrf52840" and "--flash/--ram" in warnings[0]
    assert resolve_board(zephyr, "nrf52840dk/nrf52840", own_budgets=True)[2] == []
    with pytest.raises(TargetError, match="invalid board name"):
        resolve_board(zephyr, "Bad Board")
    with pytest.raises(TargetError, match="has a fixed board"):
        resolve_board(load_target("rp2040"), "pico_w")


def test_arduino_sketch_names_are_limited() -> None:
    from edgeq.errors import UserError

    arduino = load_build_system("arduino")
    arduino.check_name("a" * 63)
    with pytest.raises(UserError, match="64 characters; build system 'arduino' allows at most 63"):
        arduino.check_name("a" * 64)
    load_build_system("cmake-tflm").check_name("a" * 64)
