"""The ESP-NN arena term: the scratch buffers esp-tflite-micro's ESP-NN kernels request,
checked against values worked out by hand from esp-nn's *_get_*_scratch_size functions
(esp-nn v1.2.0 = "1.1" family, v1.2.3 = "1.2" family; see edgeq/firmware/esp_nn_memory.py)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pytest

from edgeq.firmware.esp_nn_memory import VARIANTS, conv_scratch_esp32s3, depthwise_scratch_esp32s3, esp_nn_extra
from tests.codegen_models import _ROOT, _convert, tiny_cnn

NODE = 16  # NodeData's extra int, one more 16-byte step of persistent arena per conv/depthwise/softmax
BOOK = 96  # bookkeeping per RequestScratchBufferInArena


def test_conv_scratch_esp32s3_paths() -> None:
    kw = dict(pad_w=0, pad_h=0, stride_w=1, stride_h=1)
    # 1x1, stride 1, no pad: transpose 2*(8*new_ch) + input copy only when in_ch % 8 + filter new_ch*out_ch.
    one = dict(in_w=10, in_h=10, in_ch=12, f_w=1, f_h=1, out_w=10, out_h=10, out_ch=8, **kw)
    assert conv_scratch_esp32s3("1.1", **one) == 10 * 10 * 16 + 16 * 8 + 2 * 8 * 16 + 32
    assert conv_scratch_esp32s3("1.2", **one) == 10 * 10 * 16 + 16 * 8 + 2 * 8 * 16 + 64
    # im2col (v1.2 only): filter row 5*1 < 16, window 25 >= 16.
    im2col = dict(in_w=8, in_h=8, in_ch=1, f_w=5, f_h=5, out_w=4, out_h=4, out_ch=4, **kw)
    assert conv_scratch_esp32s3("1.2", **im2col) == 4 * 4 + 16 + 4 * 32 + 16 + 32 + 64
    assert conv_scratch_esp32s3("1.1", **im2col) == 5 * 5 * 16 * 4 + 32 + 4 * 4
    # 3x3 SAME (pad 1): padded input copy + filter with channels rounded to 16, v1.2 adds
    # the 16-aligned filter rows and the right/bottom border copy.
    same = dict(in_w=8, in_h=8, in_ch=8, f_w=3, f_h=3, out_w=8, out_h=8, out_ch=16, pad_w=1, pad_h=1, stride_w=1, stride_h=1)
    padded = 10 * 10 * 8
    assert conv_scratch_esp32s3("1.1", **same) == padded + 9 * 16 * 16 + 32 + 16 * 4
    assert conv_scratch_esp32s3("1.2", **same) == padded + 9 * 16 * 16 + 32 * 3 * 16 + (8 + 2) * (8 + 2) * 8 + 64 + 16 * 4


def test_depthwise_scratch_esp32s3_paths() -> None:
    base = dict(f_w=3, f_h=3, ch_mult=1, stride_w=1, stride_h=1)
    # 16 channels, 3x3, pad 1: filter + padded input; v1.2 tiles inputs above 40 KB.
    small = dict(in_w=10, in_h=10, ch=16, out_w=10, out_h=10, pad_w=1, pad_h=1, **base)
    for v in ("1.1", "1.2"):
        assert depthwise_scratch_esp32s3(v, **small) == 144 + 12 * 12 * 16 + 16
    big = dict(in_w=64, in_h=64, ch=16, out_w=64, out_h=64, pad_w=1, pad_h=1, **base)
    assert depthwise_scratch_esp32s3("1.1", **big) == 144 + 66 * 66 * 16 + 16
    assert depthwise_scratch_esp32s3("1.2", **big) == 144 + 66 * 3 * 16 + 16
    # 24 channels (multiple of 8, not 16): v1.1 s16 copies; v1.2 pads channels to 32.
    ch24 = dict(in_w=6, in_h=6, ch=24, out_w=6, out_h=6, pad_w=1, pad_h=1, **base)
    assert depthwise_scratch_esp32s3("1.1", **ch24) == 2 * (9 * 24 + 6 * 6 * 24) + 32
    assert depthwise_scratch_esp32s3("1.2", **ch24) == 9 * 32 + (6 + 2 + 2) * (6 + 2 + 2) * 32 + 6 * 6 * 32 + 64
    # 6 channels, multiplier 1 (v1.2 pads to 8 channels, 16-aligned int16 buffers), multiplier 4.
    ch6 = dict(in_w=5, in_h=5, ch=6, out_w=5, out_h=5, pad_w=1, pad_h=1, **base)
    assert depthwise_scratch_esp32s3("1.1", **ch6) == 32
    assert depthwise_scratch_esp32s3("1.2", **ch6) == 752 + 3 * 8 * 4 + 16  # filter 144, input 400 -> 544, out 200 -> 752
    mult4 = dict(ch6, ch=4, ch_mult=4)
    for v in ("1.1", "1.2"):
        assert depthwise_scratch_esp32s3(v, **mult4) == 2 * (9 * 4 * 4 + 5 * 5 * 4) + 32


def test_tiny_cnn() -> None:
    """tiny_cnn: CONV_2D 3x3 VALID 8x8x1 -> 6x6x4, max-pool, dense, SOFTMAX on 3 classes."""
    data = tiny_cnn().read_bytes()
    # ESP32 ("generic"): ESP-NN conv asks for no scratch; softmax 3 * 4 bytes (16 aligned).
    assert esp_nn_extra(data, "generic") == 16 + (NODE) + (NODE + BOOK)
    # ESP32-S3: conv 3x3, channels 1 -> 16: filter 9*16*4 = 576, v1.2 + aligned rows 16*3*4
    # + 64 slack + 4*4 accumulators = 848 (v1.1: 576 + 32 + 16 = 624).
    assert esp_nn_extra(data, "esp32s3") == 848 + 2 * (NODE + BOOK)


@lru_cache(maxsize=1)
def branches_model() -> Path:
    """Depthwise and conv layers that take different ESP-NN S3 code paths (about 4 KB)."""
    import keras
    import numpy as np

    keras.utils.set_random_seed(5)
    model = keras.Sequential([
        keras.Input((10, 10, 16), name="x"),
        keras.layers.DepthwiseConv2D(3, padding="same", name="dw16"),                # 16 ch, pad 1
        keras.layers.Conv2D(8, 1, name="pw8"),                                         # 1x1
        keras.layers.Conv2D(4, 3, strides=2, padding="same", name="conv_s2"),         # 10x10 -> 5x5, pad 0
        keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=4, name="dw_m4"),  # 4 ch x 4
        keras.layers.DepthwiseConv2D(5, padding="same", name="dw5"),                  # 16 ch, 5x5
        keras.layers.Conv2D(6, 1, name="pw6"),
        keras.layers.DepthwiseConv2D(3, padding="same", name="dw6"),                  # 6 ch
        keras.layers.Flatten(name="flatten"),
        keras.layers.Dense(3, name="dense"),
        keras.layers.Softmax(name="softmax"),
    ], name="branches")
    for layer in model.layers:
        weights = layer.get_weights()
        if weights:
            layer.set_weights([np.full(w.shape, 0.05, np.float32) for w in weights])
    return _convert(model, (10, 10, 16), _ROOT / "esp_nn_branches.tflite", samples=8)


def test_branches_model() -> None:
    from edgeq.firmware.cmsis_memory import tflite_ops

    data = branches_model().read_bytes()
    names = [op.name for op in tflite_ops(data)]
    assert names == ["QUANTIZE", "DEPTHWISE_CONV_2D", "CONV_2D", "CONV_2D", "DEPTHWISE_CONV_2D", "DEPTHWISE_CONV_2D",
                     "CONV_2D", "DEPTHWISE_CONV_2D", "RESHAPE", "FULLY_CONNECTED", "SOFTMAX", "QUANTIZE"], names
    scratch_ops = 8  # 4 depthwise + 3 conv + softmax, each with NodeData and (on S3) a scratch buffer
    # Per op on S3 (v1.1 / v1.2): dw16 144 + 12*12*16 + 16 = 2464 / 2464; pw8 256 + 128 + 32 / +64;
    # conv_s2 576 + 32 + 16 = 624 / 576 + 384 + 1152 + 64 + 16 = 2192; dw_m4 2*(144 + 100) + 32 = 520;
    # dw5 32 / 2*(400 + 400) + 32 = 1632; pw6 256 + 96 + 32 / +64; dw6 32 / 864; softmax 12 -> 16.
    assert esp_nn_extra(data, "esp32s3") == 2464 + scratch_ops * (NODE + BOOK)
    # ESP32: only the softmax requests scratch; every conv/depthwise/softmax keeps NodeData.
    assert esp_nn_extra(data, "generic") == 16 + scratch_ops * NODE + BOOK


def test_unknown_variant() -> None:
    assert VARIANTS == ("generic", "esp32s3")
    with pytest.raises(ValueError, match="unknown ESP-NN variant"):
        esp_nn_extra(tiny_cnn().read_bytes(), "esp32p4")
