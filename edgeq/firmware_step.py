"""The build pipeline's bridge to targets and code generation.

Kept apart from ``pipeline`` so the pipeline reads as the sequence of checks it is, and
because re-running ``build`` into its own earlier output has rules of its own: model
sources are refreshed, files the user edited (per the generated-file manifest) or added
are carried over untouched unless ``--force``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeq.console import warn
from edgeq.errors import OutputExistsError

MANIFEST = ".edgeq-manifest.json"


@dataclass(frozen=True)
class Plan:
    """Decided before writing: the C name, the target's arena and the budget figures."""

    name: str
    budget: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **self.budget}


def resolve_target(name: str, opts: dict[str, Any]) -> Any:
    from edgeq.targets import load_target

    return load_target(name, targets_dir=opts.get("targets_dir"))


def check_out(out: Path, *, force: bool) -> None:
    """A non-empty folder is ours to refresh only if it holds our manifest, or with force."""
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{out} exists and is not a folder", hint="choose another --out")
    if force or not out.is_dir() or not any(out.iterdir()):
        return
    if not (out / MANIFEST).is_file():
        raise OutputExistsError(
            f"output folder {out} is not empty and was not written by edgeq",
            hint="pass --force to replace it, or choose another --out",
        )


def _sample(run: Any) -> tuple[Any, Any]:
    if run.eval_q is None or run.ref_raw is None:
        return None, None
    return [x[0:1] for x in run.eval_q], [y[0:1] for y in run.ref_raw]


def plan(run: Any, target: Any, name: str, opts: dict[str, Any]) -> Plan:
    from edgeq.codegen.firmware import check_budget
    from edgeq.codegen.names import c_identifier

    cname = c_identifier(name)
    budget = check_budget(
        target=target,
        model_bytes=run.info.size_bytes,
        host_arena_bytes=run.micro.arena_bytes,
        flash=opts.get("flash"),
        ram=opts.get("ram"),
        allow_over_budget=bool(opts.get("allow_over_budget")),
    )
    return Plan(cname, budget.to_dict() if hasattr(budget, "to_dict") else dict(budget))


def write(tmp: Path, out_dir: Path, run: Any, plan_: Plan, *, force: bool, opts: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write firmware sources into ``tmp``; carry over the user's edits from ``out_dir``."""
    from edgeq.codegen.firmware import write_firmware

    o = opts or {}
    sample_in, sample_out = _sample(run)
    result = write_firmware(
        tmp,
        tflite=run.data,
        info=run.info,
        name=plan_.name,
        target=o["target"],
        host_arena_bytes=run.micro.arena_bytes,
        sample_input=sample_in,
        reference_output=sample_out,
        source_name=run.model.path.name,
        board=o.get("board"),
        lang=o.get("lang", "cpp"),
        labels=o.get("labels"),
        force=force,
        flash=o.get("flash"),
        ram=o.get("ram"),
        allow_over_budget=bool(o.get("allow_over_budget")),
    )
    if not force:
        _carry_over_user_files(out_dir, tmp)
    return result.to_dict()


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _carry_over_user_files(old: Path, new: Path) -> None:
    """Keep files the user changed or added in ``old`` (per its manifest) in ``new``."""
    manifest = old / MANIFEST
    if not manifest.is_file():
        return
    try:
        recorded: dict[str, str] = json.loads(manifest.read_text()).get("files", {})
    except (ValueError, OSError):
        recorded = {}
    for p in sorted(q for q in old.rglob("*") if q.is_file()):
        rel = p.relative_to(old).as_posix()
        if rel == MANIFEST or rel == "report.json" or rel == "report.md":
            continue
        expected = recorded.get(rel)
        if expected is not None and _sha(p) == expected:
            continue  # untouched generated file: the new version replaces it
        dest = new / rel
        if dest.exists() and expected is not None:
            warn(f"keeping your edited {rel} (pass --force to regenerate it)")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(p, dest)
