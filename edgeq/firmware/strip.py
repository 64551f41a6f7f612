"""``--strip``: remove from the shipped model what TFLM never reads (issue 15, part 4).

Why: a microcontroller keeps the model in flash, and the converter's .tflite carries text
no firmware uses: every tensor's name (long ``model/layer/op;...`` paths), the signature
defs LiteRT's signature runner reads, the description and the conversion metadata. TFLM's
MicroInterpreter reads none of it (it addresses tensors by index) but does read the
``OfflineMemoryAllocation`` metadata, which stays. Tensor indices, buffers and ops are not
touched, so the stripped model computes the same bytes; the build checks that on TFLM
anyway. The firmware's settings header still names the tensors: it is generated from the
unstripped model's description (``stripped_info``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from edgeq.errors import ModelError
from edgeq.firmware.memory_plan import METADATA_NAME, metadata_name, pack_aligned
from edgeq.model.tflite_info import ModelInfo, parse

#: Metadata TFLM reads; every other entry goes.
KEPT_METADATA = (METADATA_NAME,)


@dataclass(frozen=True)
class StripReport:
    bytes_before: int
    bytes_after: int

    @property
    def saved(self) -> int:
        return self.bytes_before - self.bytes_after

    def to_dict(self) -> dict[str, Any]:
        return {"bytes_before": self.bytes_before, "bytes_after": self.bytes_after, "bytes_saved": self.saved}


def strip(tflite: bytes) -> bytes:
    """``tflite`` without tensor and subgraph names, signature defs, description and the
    metadata TFLM does not read (their buffers emptied, indices kept)."""
    from ai_edge_litert import schema_py_generated as schema

    parse(tflite)  # bounded and checked before the object API unpacks it
    model = schema.ModelT.InitFromPackedBuf(bytes(tflite), 0)
    if any(int(b.offset or 0) > 1 for b in model.buffers or []):
        raise ModelError("the model keeps buffers outside its flatbuffer (a >2 GB layout); edgeq cannot strip it")
    for sg in model.subgraphs or []:
        sg.name = None
        for t in sg.tensors or []:
            t.name = None
    model.description = None
    model.signatureDefs = None
    used = {int(t.buffer) for sg in model.subgraphs or [] for t in sg.tensors or []}
    kept = [m for m in model.metadata or [] if metadata_name(m) in KEPT_METADATA]
    for m in model.metadata or []:
        index = int(m.buffer)
        if m not in kept and index not in used and 0 < index < len(model.buffers or []) and \
                not any(int(k.buffer) == index for k in kept):
            model.buffers[index] = schema.BufferT()
    model.metadata = kept or None
    return pack_aligned(model, len(tflite) + 1024)


def stripped_info(stripped: bytes, original: ModelInfo) -> ModelInfo:
    """The stripped model's description (its size and hash) with the original tensor names,
    which the firmware's settings header quotes."""
    info = parse(stripped)
    names = {t.index: t.name for t in original.tensors}

    def named(ts: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(dataclasses.replace(t, name=names.get(t.index, t.name)) for t in ts)

    return dataclasses.replace(info, inputs=named(info.inputs), outputs=named(info.outputs), tensors=named(info.tensors),
                               description=original.description)


def verified_strip(data: bytes, info: ModelInfo, micro: Any, inputs: Any, *, samples: int = 4) -> tuple[bytes, ModelInfo, StripReport]:
    """Strip ``data`` and prove on TFLM that the first ``samples`` of ``inputs`` (what the
    TFLM check ran, ``micro``) give the same output bytes; the firmware's description of it."""
    from edgeq.check.micro import MicroRun

    stripped = strip(data)
    if micro.outputs and inputs:
        probe = [x[:samples] for x in inputs]
        again = MicroRun(stripped, parse(stripped), probe).result(600.0)
        n = int(probe[0].shape[0])
        same = all(a[:n].tobytes() == b.tobytes() for a, b in zip(micro.outputs, again.outputs))
        if not same or len(again.outputs) != len(micro.outputs):
            raise ModelError("the stripped model computes other bytes on TFLM than the model it came from",
                             hint="this is a bug in edgeq: run without --strip and report it")
    return stripped, stripped_info(stripped, info), StripReport(len(data), len(stripped))


__all__ = ["KEPT_METADATA", "StripReport", "strip", "stripped_info", "verified_strip"]
