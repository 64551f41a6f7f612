"""Which ``MicroMutableOpResolver::Add*()`` calls a model needs, from data.

The builtin-op → ``Add*`` table lives in ``edgeq/data/tflm_ops.toml`` (read off TFLM's
``micro_mutable_op_resolver.h``), not in code, so following a TFLM release is a data
edit. A hand-written resolver that misses an op fails at run time on the device with
"Didn't find op for builtin opcode"; here a missing op fails at generation time, by name.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from edgeq.errors import UnsupportedOpError
from edgeq.resources import package_data
from edgeq.model.tflite_info import ModelInfo

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass(frozen=True)
class OpRegistration:
    """One resolver line: the model's op name (builtin or custom code) and its Add* method."""

    name: str
    method: str
    custom: bool = False


@dataclass(frozen=True)
class OpTable:
    builtin: dict[str, str]
    custom: dict[str, str]


@lru_cache(maxsize=4)
def load_op_table(path: str | None = None) -> OpTable:
    """Read the op table (cached; it is read once per process)."""
    file = Path(path) if path else package_data("tflm_ops.toml")
    doc = tomllib.loads(file.read_text(encoding="utf-8"))
    if doc.get("schema_version") != 1:
        raise ValueError(f"{file}: unsupported schema_version {doc.get('schema_version')!r}")
    return OpTable(builtin=dict(doc.get("builtin", {})), custom=dict(doc.get("custom", {})))


def resolve_ops(info: ModelInfo, *, table: OpTable | None = None) -> tuple[OpRegistration, ...]:
    """The registrations for exactly the model's distinct ops, sorted by op name.

    Raises ``UnsupportedOpError`` naming every op without an entry (all at once, so a
    user converting a model learns the whole list in one run).
    """
    table = table or load_op_table()
    seen: dict[tuple[str, bool], OpRegistration | None] = {}
    for op in info.ops:
        key = (op.name, op.custom)
        if key in seen:
            continue
        method = (table.custom if op.custom else table.builtin).get(op.name)
        seen[key] = OpRegistration(op.name, method, op.custom) if method else None
    missing = sorted(f"{name} (custom)" if custom else name for (name, custom), reg in seen.items() if reg is None)
    if missing:
        raise UnsupportedOpError(
            f"TensorFlow Lite Micro has no kernel for: {', '.join(missing)}",
            hint="replace these layers, or quantize with only TFLM-supported builtins; "
            "the supported list is edgeq/data/tflm_ops.toml",
            ops=tuple(missing),
        )
    regs = [r for r in seen.values() if r is not None]
    # Two op codes can map to one method (e.g. different versions): register it once.
    unique: dict[str, OpRegistration] = {}
    for reg in sorted(regs, key=lambda r: (r.name, r.custom)):
        unique.setdefault(reg.method, reg)
    return tuple(unique.values())


__all__ = ["OpRegistration", "OpTable", "load_op_table", "resolve_ops"]
