"""The vectorised bytes → C formatter: exact round trip, xxd-compatible values, and a C
program (compiled with gcc) that proves the emitted array equals the .tflite byte for byte."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from edgeq.firmware.c_array import BYTES_PER_LINE, format_c_bytes, format_c_bytes_text, parse_c_bytes
from tests.tools import require_tool, run


@pytest.mark.parametrize("size", [0, 1, 2, 11, 12, 13, 23, 24, 25, 1000, 65537])
def test_round_trip_every_length(size: int) -> None:
    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    text = format_c_bytes(data)
    assert parse_c_bytes(text) == data
    lines = text.decode().splitlines()
    assert len(lines) == -(-size // BYTES_PER_LINE)
    assert all(line.startswith("  0x") and line.endswith(",") for line in lines)


def test_every_byte_value_and_layout() -> None:
    data = bytes(range(256))
    text = format_c_bytes_text(data)
    assert text.splitlines()[0] == "  0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b,"
    assert text.endswith("  0xfc, 0xfd, 0xfe, 0xff,\n")
    assert format_c_bytes(memoryview(data)) == format_c_bytes(bytearray(data)) == text.encode()


def test_values_match_xxd() -> None:
    xxd = require_tool("xxd")
    data = np.random.default_rng(7).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    out = subprocess.run([xxd, "-i"], input=data, capture_output=True, check=True).stdout.decode()
    theirs = [int(tok, 16) for tok in out.replace("\n", ",").split(",") if tok.strip().startswith("0x")]
    assert bytes(theirs) == data == parse_c_bytes(format_c_bytes(data))


def test_c_program_sees_the_same_bytes(tmp_path) -> None:
    """Compile the array with gcc and compare it in C against the file on disk."""
    gcc = require_tool("gcc")
    data = np.random.default_rng(3).integers(0, 256, 4099, dtype=np.uint8).tobytes()
    (tmp_path / "blob.bin").write_bytes(data)
    (tmp_path / "arr.c").write_text(
        "const unsigned char blob[] __attribute__((aligned(16))) = {\n" + format_c_bytes_text(data) + "};\n"
        f"const unsigned int blob_len = {len(data)}u;\n"
    )
    (tmp_path / "main.c").write_text(CHECK_PROGRAM.replace("@SYM@", "blob"))
    run([gcc, "-std=c11", "-Wall", "-Wextra", "-Werror", "-o", tmp_path / "check", tmp_path / "main.c", tmp_path / "arr.c"])
    assert run([tmp_path / "check", tmp_path / "blob.bin"]).stdout.strip() == f"ok {len(data)}"


# Reads a file and compares it with an extern array; also checks 16-byte alignment.
CHECK_PROGRAM = r"""
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
extern const unsigned char @SYM@[];
extern const unsigned int @SYM@_len;
int main(int argc, char **argv) {
  if (argc != 2) return 2;
  FILE *f = fopen(argv[1], "rb");
  if (!f) return 3;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *buf = malloc((size_t)n);
  if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) return 4;
  fclose(f);
  if ((unsigned long)n != @SYM@_len) { printf("length %ld vs %u\n", n, @SYM@_len); return 5; }
  if (memcmp(buf, @SYM@, (size_t)n) != 0) { printf("content differs\n"); return 6; }
  if (((uintptr_t)@SYM@) % 16 != 0) { printf("misaligned\n"); return 7; }
  printf("ok %ld\n", n);
  free(buf);
  return 0;
}
"""


def test_head_and_tail_share_the_buffer() -> None:
    data = bytes(range(40))
    out = format_c_bytes(data, head=b"const unsigned char x[] = {\n", tail=b"};\n")
    assert out.startswith(b"const unsigned char x[] = {\n  0x00,") and out.endswith(b"0x27,\n};\n")
    assert out == b"const unsigned char x[] = {\n" + format_c_bytes(data) + b"};\n"
    assert format_c_bytes(b"", head=b"a", tail=b"b") == b"ab"


@pytest.mark.parametrize("size", [0, 5, 12, 1000, 700_000])
def test_prefetch_gives_the_same_text(size: int) -> None:
    """A prefetched body (formatted on another thread) is used by the next call on the
    same object, with the text around it written in place; output never changes."""
    from edgeq.firmware import c_array

    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    expected = format_c_bytes(data, head=b"const unsigned char x[] = {\n", tail=b"};\n")
    c_array.prefetch(data)
    assert c_array._pending is not None
    assert c_array.format_c_buffer(data, head=b"const unsigned char x[] = {\n", tail=b"};\n") == expected
    assert c_array._pending is None  # claimed
    c_array.prefetch(data)
    huge = b"/" * (c_array._HEAD_ROOM + 1)  # does not fit the room: formatted anew
    assert c_array.format_c_bytes(data, head=huge, tail=b"};\n") == huge + expected[28:]


def test_prefetch_is_only_for_the_same_object() -> None:
    from edgeq.firmware import c_array

    data = bytes(range(200))
    expected = format_c_bytes(data)
    c_array.prefetch(data)
    other = bytes(bytearray(data))  # equal, but another object: its own formatting
    assert c_array.format_c_bytes(other) == expected
    assert c_array._pending is not None and c_array._pending.data is data
    c_array.discard_prefetch()
    assert c_array._pending is None


@pytest.mark.parametrize("head", [b"", b"h", b"ab", b"odd\n"])
def test_text_around_the_body_any_length(head: bytes) -> None:
    """The digits are copied as 2-byte units: an odd-length head must not shift them."""
    data = np.random.default_rng(len(head)).integers(0, 256, 1000, dtype=np.uint8).tobytes()
    out = format_c_bytes(data, head=head, tail=b"};\n")
    assert out.startswith(head) and out.endswith(b"};\n")
    assert parse_c_bytes(out[len(head) : -3]) == data
