"""Terminal rendering of ``edgeq inspect``: tensors, ops and the TFLite Micro verdict.

Names come from the model file, which may be hostile: each one is stripped of control
characters and escape sequences (``edgeq.text.printable``) and shown as plain text, never
as rich markup (a tensor named ``[link=...]`` or ``\x1b]0;title`` must not style or retitle
anything).
"""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text

from edgeq.console import out
from edgeq.text import printable


def _plain(value: object, width: int | None = None) -> Text:
    text = printable(value, keep="")
    return Text(text if width is None else text[:width])


def _q(t: dict[str, Any]) -> str:
    if t["scale"] is None:
        return "–"
    per = f" (per-channel ×{t['per_channel']})" if t["per_channel"] else ""
    return f"{t['scale']:.6g} / {t['zero_point']}{per}"


def render_inspect(doc: dict[str, Any]) -> None:
    out.print(Text.assemble((printable(doc["path"], keep=""), "bold"), f"  {doc['size_bytes']:,} bytes  sha256 {doc['sha256'][:16]}…"))
    integer = "yes" if doc["fully_integer"] else "NO — float tensors: " + ", ".join(doc["float_tensors"][:6])
    out.print(_plain(f"fully integer: {integer}"))
    for title, key in (("inputs", "inputs"), ("outputs", "outputs")):
        table = Table(title=title, title_justify="left")
        for col in ("#", "name", "shape", "dtype", "scale / zero point"):
            table.add_column(col)
        for t in doc[key]:
            table.add_row(str(t["index"]), _plain(t["name"]), str(tuple(t["shape"])), t["dtype"], _q(t))
        out.print(table)
    ops = Table(title="ops", title_justify="left")
    for col in ("op", "version", "count"):
        ops.add_column(col)
    for op in doc["ops"]:
        ops.add_row(_plain(op["name"] + (" (custom)" if op["custom"] else "")), str(op["version"]), str(op["count"]))
    out.print(ops)
    tensors = Table(title=f"tensors ({len(doc['tensors'])})", title_justify="left")
    for col in ("#", "name", "shape", "dtype", "scale / zero point", "const"):
        tensors.add_column(col)
    for t in doc["tensors"]:
        tensors.add_row(str(t["index"]), _plain(t["name"], 60), str(tuple(t["shape"])), t["dtype"], _q(t),
                        "yes" if t["constant"] else "")
    out.print(tensors)
    m = doc.get("micro")
    memory = doc.get("memory")
    if memory:
        from edgeq.check.memory_profile import MemoryProfile, rich_table

        out.print(rich_table(memory))
        arena = m.get("arena_bytes") if m else None
        out.print(_plain("memory: " + MemoryProfile.from_dict(memory).summary(
            arena, head=m.get("arena_head_bytes") if m else None, tail=m.get("arena_tail_bytes") if m else None)))
        for u in memory["uint8_io"]:
            out.print(_plain(f"  uint8 {u['role']} {u['tensor']}: {u['bytes']:,} B, live next to its int8 copy at op {u['op']}"))
        if memory["uint8_io"]:
            out.print(_plain(f"  int8 I/O would lower the bound by {memory['uint8_io_bound_cost_bytes']:,} B"))
    if m:
        if m["supported"] is False:
            why = ", ".join(m["unsupported_ops"]) or m.get("error") or ""
            label = "unsupported ops:" if m["unsupported_ops"] else "no —"
            out.print(f"TFLite Micro: [red]{label}[/] ", end="")
            out.print(printable(why), markup=False)
        elif m["supported"] is None:
            out.print("TFLite Micro: ops known, runtime not installed here (arena not measured)")
        else:
            out.print(f"TFLite Micro: runs; minimal arena on this host {m['arena_bytes']:,} bytes "
                      f"(allocation report {m['arena_reported_bytes']:,})")
