"""The filters every template may use: the only way user text reaches generated files.

Why a module of their own: each filter is the escaping rule of one output language (C
identifiers and literals, CMake arguments, YAML, INI, Kconfig); keeping them together
makes it easy to check that no template emits user text without one.
"""

from __future__ import annotations

from typing import Any

from edgeq.firmware import names
from edgeq.firmware.c_array import format_c_bytes_text


def _c_float(value: float | None) -> str:
    """A float literal that round-trips (repr) and is a float in C (``f`` suffix)."""
    if value is None:
        return "0.0f"
    text = repr(float(value))
    if text in ("inf", "-inf", "nan"):
        raise ValueError(f"non-finite value {text} cannot be a C constant")
    if "e" not in text and "." not in text:
        text += ".0"
    return text + "f"


def _c_int_list(values: Any) -> str:
    """``(1, 96, 96, 3)`` → ``1, 96, 96, 3`` for array initializers."""
    return ", ".join(str(int(v)) for v in values)


def _c_bytes(data: Any) -> str:
    """Initializer text for a bytes-like object (or numpy array's raw bytes)."""
    raw = data.tobytes() if hasattr(data, "tobytes") else bytes(data)
    return format_c_bytes_text(raw)


def _cmake_quote(text: str) -> str:
    """A quoted CMake argument: CMake expands ``${}`` and ``\\`` inside quotes, so escape them."""
    escaped = str(text).replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$").replace(";", "\\;")
    return f'"{escaped}"'


FILTERS = {
    "c_ident": names.c_identifier,
    "c_camel": names.c_camel,
    "c_macro": names.c_macro,
    "c_string": names.c_string,
    "c_comment": names.c_comment,
    "c_float": _c_float,
    "c_ints": _c_int_list,
    "c_bytes": _c_bytes,
    "cmake_quote": _cmake_quote,
}


__all__ = ["FILTERS"]
