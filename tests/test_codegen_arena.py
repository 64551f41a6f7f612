"""The arena rule: host figure + CMSIS-NN buffers + margin, never below what Cortex-M
firmware measured under QEMU (and the DESIGN.md measurements)."""

from __future__ import annotations

import pytest

from edgeq.firmware.cmsis_memory import VARIANTS, cmsis_nn_extra
from edgeq.firmware.targets import load_target
from tests.codegen_models import mobilenet_025, tiny_cnn


def test_arena_rule_never_below_measurements() -> None:
    """The DESIGN.md measurements (host vs M4F/M3/M55) and edgeq's QEMU runs, under each
    shipped Cortex-M target's rule without the model file (percentage and headroom only)."""
    from edgeq.firmware.arena import target_arena

    measured = {  # host: (M4F, M3, M55)
        1184: (772, 772, 916), 7312: (6836, 6836, 7812), 3936: (4052, 4052, 4100), 85024: (82308, 82308, 82356),
    }
    for name in ("cortex-m", "cortex-m0plus", "cortex-m3", "cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55"):
        target = load_target(name)
        for host, on_target in measured.items():
            assert target_arena(host, tflite=None, target=target).target_bytes >= max(on_target), (name, host)


# Bisected minimal arenas, host (tflite-micro wheel) vs device (the runner's EDGEQ_FIND_MIN_ARENA
# search under QEMU, TFLM 90b983c2 + CMSIS-NN, arm-none-eabi-gcc 12.2 -O2), on real architectures
# (random weights; weights do not change the arena). M3 = mps2-an385, M4F = an386, M33 = an505.
# The per-channel Dense autoencoder is the model whose firmware did not start when the rule was
# fed TFLM's allocation report (18,096 B here) instead of the bisected minimum (19,616 B).
DEVICE_MIN = {  # model: (host minimum, {core: device minimum})
    "digits example": (3984, {"M3": 2992, "M4F": 2992, "M33": 2992}),
    "Dense autoencoder 640-128x4-8-128x4-640 + BN": (19616, {"M3": 18048, "M4F": 18048, "M33": 18048}),
    "Dense 64-32-32-8": (2736, {"M4F": 1904, "M33": 1904}),
    "ResNet-8 32x32x3": (56160, {"M4F": 55152, "M33": 55152}),
    "DS-CNN 49x10x1": (24464, {"M3": 22960, "M4F": 22960, "M33": 22960}),
    "Conv1D 128x3": (7664, {"M4F": 6608, "M33": 6608}),
    "two-output CNN": (5504, {"M33": 4512}),
}


def test_arena_rule_from_the_bisected_minimum_covers_devices() -> None:
    """Without the model's CMSIS-NN term (which only adds), every Cortex-M target's rule fed the
    bisected host minimum is at or above each device's bisected minimum."""
    from edgeq.firmware.arena import target_arena

    for name in ("cortex-m", "cortex-m0plus", "cortex-m3", "cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55"):
        target = load_target(name)
        for model, (host_min, devices) in DEVICE_MIN.items():
            assert target_arena(host_min, tflite=None, target=target).target_bytes >= max(devices.values()), (name, model)


# arena_used_bytes printed by the generated firmware under QEMU (TFLM 90b983c2, CMSIS-NN
# 4ab83cc, arm-none-eabi-gcc 12.2, -O2) for the two test architectures; weights do not
# change the arena. M3 = qemu-mps2-an385, M4F = an386, M55 = mps3-an547.
QEMU_ARENA = {"tiny": {"M3": 1396, "M4F": 1396, "M55": 1412}, "mobilenet": {"M3": 100724, "M4F": 100724, "M55": 100772}}
COVERS = {"cortex-m0plus": ("M3",), "cortex-m3": ("M3",), "cortex-m4": ("M4F",), "cortex-m7": ("M4F",),
          "cortex-m33": ("M4F",), "cortex-m55": ("M55",), "cortex-m": ("M3", "M4F", "M55")}


@pytest.mark.parametrize("which", ["tiny", "mobilenet"])
def test_arena_rule_covers_qemu_measurements(which: str) -> None:
    """The full rule (host measured now by tflite-micro + CMSIS-NN term) is never below
    what the firmware measured on the real CPUs, for every Cortex-M target."""
    from edgeq.firmware.arena import measure_host_arena, target_arena

    data = (tiny_cnn() if which == "tiny" else mobilenet_025()).read_bytes()
    host = measure_host_arena(data)
    for name, cpus in COVERS.items():
        figure = target_arena(host, tflite=data, target=load_target(name))
        for cpu in cpus:
            assert figure.target_bytes >= QEMU_ARENA[which][cpu], (name, cpu, figure)
        need = max(QEMU_ARENA[which].values())
        # Not wasteful: within 15 % above 16 KiB (issue 10's goal); small models carry the host's
        # fixed 64-bit overheads (a few hundred bytes that loom large next to 1.4 KB).
        assert figure.target_bytes <= (1.15 * need if need > 16384 else 2.5 * need + 1024), (name, figure)




def test_cmsis_nn_extra_per_code_path() -> None:
    """MobileNet v1 0.25: depthwise 3x3 on up to 256 channels (C_in == C_out), 1x1 convs,
    one dense layer. Values follow CMSIS-NN's *_get_buffer_size formulas."""
    data = mobilenet_025().read_bytes()
    extra = {v: cmsis_nn_extra(data, v) for v in VARIANTS}
    assert extra["dsp"].scratch_bytes == 2 * 256 * 3 * 3  # arm_depthwise_conv_s8_opt (DSP)
    assert extra["mve"].scratch_bytes == 4 * 124 * 3 * 3  # CH_IN_BLOCK_MVE im2col (> the dense layer's 4 x 10)
    assert extra["mve"].persistent_bytes == 0  # dense kernel sums are scratch without KERNELS_OPTIMIZED_FOR_SPEED
    assert extra["none"].persistent_bytes == extra["dsp"].persistent_bytes == 0
    assert extra["any"].total == max(extra[v].total for v in ("none", "dsp", "mve"))
    with pytest.raises(ValueError):
        cmsis_nn_extra(data, "neon")


def test_cmsis_nn_extra_small_conv() -> None:
    """The tiny CNN: one 3x3x1 conv -> 4 * align16(9) bytes of im2col on every path."""
    data = tiny_cnn().read_bytes()
    assert cmsis_nn_extra(data, "none").scratch_bytes == cmsis_nn_extra(data, "dsp").scratch_bytes == 64
