"""``edgeq emit``: a .tflite → C/C++ sources for an existing firmware repository.

Writes ``<name>_model_data.h`` + ``.c``/``.cc`` (the 16-byte aligned array),
``<name>_model_settings.h`` (I/O shapes, quantization, ``k<Name>TensorArenaSize``,
labels) and ``<name>_op_resolver.h`` (exactly the model's ops). The arena is measured on
the host with TFLM in a child process — forked as soon as numpy is loaded, so it runs
while Jinja and the flatbuffer schema load and the array is formatted — then turned into
the target's figure by the target's arena rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeq.firmware import arena as arena_mod
from edgeq.firmware.arena import ArenaFigure
from edgeq.errors import ModelError, UserError
from edgeq.firmware.targets import load_target

if TYPE_CHECKING:  # pragma: no cover
    from edgeq.firmware.scaffold import WriteResult
    from edgeq.firmware.strip import StripReport
    from edgeq.model.tflite_info import ModelInfo
    from edgeq.check.micro import MicroRun

DEFAULT_TARGET = "cortex-m"
#: The largest host arena accepted from the user: 1 GiB, beyond any microcontroller's
#: RAM, and with the target's headroom still a constant every C compiler takes.
MAX_ARENA_BYTES = 1 << 30


@dataclass(frozen=True)
class EmitResult:
    """What ``emit`` produced: final C name, files and their actions, arena, warnings."""

    name: str
    requested_name: str
    out_dir: Path
    lang: str
    target: str
    model_path: str
    model_sha256: str
    model_size: int
    ops: tuple[str, ...]
    arena: ArenaFigure
    write: WriteResult
    warnings: tuple[str, ...] = field(default=())
    strip: StripReport | None = None  # bytes --strip saved, when asked

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(a.path for a in self.write.actions)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": 1,
            "kind": "emit",
            "name": self.name,
            "requested_name": self.requested_name,
            "out_dir": str(self.out_dir),
            "lang": self.lang,
            "target": self.target,
            "model": {"path": self.model_path, "sha256": self.model_sha256, "size_bytes": self.model_size},
            "ops": list(self.ops),
            "arena": self.arena.to_dict(),
            "write": self.write.to_dict(),
            "warnings": list(self.warnings),
            "stripped": self.strip.to_dict() if self.strip is not None else None,
        }


def emit(
    model: str | Path,
    *,
    out: Path,
    name: str | None = None,
    lang: str = "cpp",
    section: str | None = None,
    namespace: str | None = None,
    labels: Path | None = None,
    force: bool = False,
    arena_bytes: int | None = None,
    target: str | None = None,
    targets_dir: Path | None = None,
    dry_run: bool = False,
    strip: bool = False,
) -> EmitResult:
    """Emit C/C++ sources for ``model`` into ``out``.

    ``arena_bytes`` is a *host* TFLM arena measurement (what ``edgeq build`` measured);
    when omitted it is measured here. ``target`` (default ``cortex-m``, whose rule is
    safe from Cortex-M0+ to M55) picks the arena rule applied to it. ``strip`` ships the
    model without what TFLM never reads (``edgeq.firmware.strip``), proven on TFLM to
    compute the same bytes; the settings header keeps the original tensor names.
    """
    model_path = Path(model)
    if not model_path.is_file():
        raise ModelError(f"no such model file: {model_path}", hint="check the path")
    if arena_bytes is not None and not 0 < arena_bytes <= MAX_ARENA_BYTES:
        raise UserError(f"--arena-bytes {arena_bytes} is out of range: it must be 1..{MAX_ARENA_BYTES:,}",
                        hint="pass the host arena edgeq build or edgeq inspect measured (a few KB to a few MB)")
    from edgeq.outdir import check_dest

    check_dest(Path(out), kind="folder", flag="--out")  # a file, a read-only place: refused before any work
    # TFLM measures in a child forked as soon as numpy is loaded (the child needs it) and
    # before any thread starts; the array then formats on other threads while this one
    # imports Jinja and parses. `run` is None once its result is in; any failure below
    # stops it.
    measure = arena_bytes is None and not dry_run
    run = None
    prefetching = False
    try:
        tgt = load_target(target or DEFAULT_TARGET, targets_dir=targets_dir)
        data = model_path.read_bytes()
        stripped = _strip(data, model_path) if strip else None  # before the fork: it starts no thread
        if stripped is not None:
            data = stripped[0]
        from edgeq.firmware import c_array

        run = _start_measurement(data) if measure else None
        c_array.prefetch(data)
        prefetching = True
        from edgeq.firmware.resolver import resolve_ops
        from edgeq.firmware.sources import SourceOptions, label_warnings, model_data_source, model_sources, read_labels
        from edgeq.model.tflite_info import parse

        if stripped is not None:
            info = stripped[1]  # the stripped bytes (parsed by the strip), described with the file's tensor names
        else:
            try:
                info = parse(data)  # ~25 ms for 10 MB: the schema reader maps buffers, it does not copy them
            except ModelError as exc:
                raise ModelError(f"{model_path}: {exc.message}", exc.hint) from None
        ops = resolve_ops(info)  # an op TFLM lacks fails here, before waiting for TFLM
        if measure and run is None:  # not forked: a worker (or ToolMissingError) here, as always
            run = arena_mod.start_host_arena_measurement(data, info=info)
        requested = name if name is not None else model_path.stem
        # the provenance hash is of the array, which --strip made differ from the file
        source_name = f"{model_path.name}, stripped by --strip" if stripped is not None else model_path.name
        options = SourceOptions.create(
            name=requested, lang=lang, section=section, namespace=namespace,
            labels=read_labels(labels) if labels else None, labels_source=Path(labels).name if labels else "",
        )
        data_file = model_data_source(tflite=data, info=info, options=options, source_name=source_name)
        host = arena_mod.finish_host_arena_measurement(run, info=info) if run is not None else arena_bytes
        run = None
    finally:
        if run is not None:  # something failed: do not leave the child behind
            arena_mod.cancel_host_arena_measurement(run)
        if prefetching:
            from edgeq.firmware import c_array

            c_array.discard_prefetch()  # claimed by now unless something failed
    if host is None:
        figure = ArenaFigure(target_bytes=0, host_bytes=None, cmsis_nn_bytes=0, rule="dry run: arena not measured")
    else:
        figure = arena_mod.target_arena(host, tflite=data, target=tgt)
    files = model_sources(
        tflite=data, info=info, options=options, source_name=source_name, arena=figure,
        target_name=tgt.name, data_file=data_file,
    )
    from edgeq.firmware.scaffold import write_tree

    result = write_tree(Path(out), files, force=force, dry_run=dry_run)
    warnings = list(label_warnings(options.labels, info))
    if options.name != requested:
        warnings.append(f"name {requested!r} is not a C identifier; using {options.name!r}")
    return EmitResult(
        name=options.name, requested_name=requested, out_dir=Path(out), lang=options.lang, target=tgt.name,
        model_path=str(model_path), model_sha256=info.sha256, model_size=info.size_bytes,
        ops=tuple(r.name for r in ops), arena=figure, write=result, warnings=tuple(warnings),
        strip=stripped[2] if stripped is not None else None,
    )


def _strip(data: bytes, model_path: Path) -> "tuple[bytes, ModelInfo, StripReport]":
    """The stripped model, its description (original tensor names) and what it saved, after
    TFLM ran the file and the stripped model on the same probe inputs and they gave the same
    output bytes (``strip.verified_strip``; ``ModelError`` otherwise, or if TFLM cannot run
    the file: then there is nothing to prove the strip against)."""
    from edgeq.check.micro import MicroRun, runtime_available
    from edgeq.errors import ToolMissingError
    from edgeq.firmware.memory_plan import probe_inputs
    from edgeq.firmware.strip import verified_strip
    from edgeq.model.tflite_info import parse

    try:
        info = parse(data)
    except ModelError as exc:
        raise ModelError(f"{model_path}: {exc.message}", exc.hint) from None
    if not runtime_available():
        raise ToolMissingError("--strip proves the stripped model on TFLM, which needs the tflite-micro Python package",
                               hint="pip install tflite-micro (x86-64 Linux only), or emit without --strip")
    probe = probe_inputs(data, 2)
    before = MicroRun(data, info, probe, bisect=False).result(600.0)
    return verified_strip(data, info, before, probe)


def _start_measurement(data: bytes) -> "MicroRun | None":
    """Fork TFLM's measurement now, or None to leave it to the usual place (after the
    parse): without tflite-micro or fork, whose errors must come after the model's own,
    or when the bytes cannot be a model (no ``TFL3`` identifier: the parse raises the
    readable error, and no child is started on bytes TFLM would only crash on)."""
    return arena_mod.fork_host_arena_measurement(data) if data[4:8] == b"TFL3" else None


__all__ = ["EmitResult", "emit", "DEFAULT_TARGET"]
