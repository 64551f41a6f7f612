"""Budgets per board: a MobileNet-sized model is refused, with numbers, where it cannot fit
and accepted where it does (ESP32-S3 by moving the arena to PSRAM). The host arena is
measured with the real TFLM runtime, as ``edgeq build`` does."""

from __future__ import annotations

import pytest

from edgeq.firmware.arena import measure_host_arena
from edgeq.firmware.budget import check_budget
from edgeq.errors import BudgetError
from edgeq.firmware.targets import load_target
from edgeq.model.tflite_info import parse
from tests.codegen_models import mobilenet_025
from tests.conftest import require_module


@pytest.fixture(scope="module")
def mobilenet_160() -> tuple[bytes, int]:
    """MobileNet v1 0.25 at 160x160x3: ~300 KB of weights, an arena of a few hundred KB."""
    require_module("tflite_micro")
    data = mobilenet_025(160).read_bytes()
    return data, measure_host_arena(data, info=parse(data))


@pytest.mark.parametrize("target", ["esp32", "rp2040", "arduino-nano33ble"])
def test_refused_where_it_does_not_fit(mobilenet_160: tuple[bytes, int], target: str) -> None:
    data, host = mobilenet_160
    with pytest.raises(BudgetError) as exc:
        check_budget(tflite=data, target=load_target(target), host_arena_bytes=host)
    message, hint = str(exc.value), exc.value.hint or ""
    assert f"does not fit target '{target}'" in message and "RAM" in message and "tensor arena" in message
    assert "available" in message and any(ch.isdigit() for ch in message)
    assert "int8" in hint and "board" in hint


@pytest.mark.parametrize("target", ["esp32s3", "zephyr", "rp2350"])
def test_accepted_where_it_fits(mobilenet_160: tuple[bytes, int], target: str) -> None:
    data, host = mobilenet_160
    figures = check_budget(tflite=data, target=load_target(target), host_arena_bytes=host)
    assert figures.ok
    if target == "esp32s3":  # over internal RAM: the arena goes to PSRAM
        assert figures.arena_in_psram and figures.arena_bytes > load_target(target).ram_bytes - figures.runtime_ram_bytes
    else:
        assert not figures.arena_in_psram
