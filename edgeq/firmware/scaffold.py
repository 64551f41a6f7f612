"""Write generated trees safely: manifest of hashes, user edits preserved, atomic moves.

Why a manifest (``.edgeq-manifest.json``): ``edgeq build`` is re-run whenever the model
changes, and its output folder is where users then edit ``main.cc`` or ``CMakeLists.txt``.
Re-runs must refresh the model sources yet never clobber those edits; the manifest
records the hash edgeq last wrote for each file, so "the user changed it" is a fact, not
a guess. Model sources (role ``model``) are always refreshed once edgeq owns them;
scaffold files (role ``scaffold``) are only replaced while untouched, unless ``force``.

Why staging: the folder is at every instant the old complete tree or the new one, even
under ``kill -9``. The new tree is written into a staging sibling (``edgeq.outdir``): for a
refresh it starts as a mirror of the existing folder (hard links; symlinks kept as
symlinks), so the user's own files, edits and build folders are all still there, then
only the files the plan writes are replaced (a new file, never written into a hard
link), the manifest last; one ``renameat2(RENAME_EXCHANGE)`` then swaps it in. Into a
staging folder of this process (``edgeq build`` stages the whole output) files are
written in place: nobody sees that folder before its own swap.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any, Callable

from edgeq import outdir
from edgeq.firmware.jinja import list_templates, render
from edgeq.errors import OutputExistsError
from edgeq.version import __version__

MANIFEST = ".edgeq-manifest.json"
ROLES = ("model", "scaffold")


@dataclass(frozen=True)
class GeneratedFile:
    """A file to write: POSIX path relative to the output folder, bytes, and its role.

    ``content`` may be a read-only ``memoryview`` (the formatted model array, which is
    never copied into a ``bytes``).
    """

    path: str
    content: bytes | memoryview
    role: str = "scaffold"

    def __post_init__(self) -> None:
        p = PurePosixPath(self.path)
        if p.is_absolute() or ".." in p.parts or not p.parts or self.path == MANIFEST:
            raise ValueError(f"generated file path must be relative and inside the output folder: {self.path!r}")
        if self.role not in ROLES:
            raise ValueError(f"unknown role {self.role!r}")

    @cached_property
    def sha256(self) -> str:
        """Hashed once: a model source can be 60 MB (frozen dataclasses allow this cache)."""
        return sha256(self.content)


@dataclass(frozen=True)
class FileAction:
    """What happened (or, in a dry run, would happen) to one file.

    ``create``/``update``/``overwrite`` write the file; ``unchanged`` leaves identical
    content alone; ``kept`` leaves a scaffold file the user edited (use ``force``).
    """

    path: str
    action: str
    role: str


@dataclass(frozen=True)
class WriteResult:
    out_dir: Path
    actions: tuple[FileAction, ...]
    dry_run: bool

    @property
    def written(self) -> tuple[str, ...]:
        return tuple(a.path for a in self.actions if a.action in ("create", "update", "overwrite"))

    @property
    def kept(self) -> tuple[str, ...]:
        return tuple(a.path for a in self.actions if a.action == "kept")

    def to_dict(self) -> dict[str, Any]:
        return {
            "out_dir": str(self.out_dir),
            "dry_run": self.dry_run,
            "files": [{"path": a.path, "action": a.action, "role": a.role} for a in self.actions],
        }


def sha256(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def _same(a: bytes, b: bytes | memoryview) -> bool:
    """Equal contents; numpy compares a 60 MB memoryview with bytes at memory speed,
    where ``bytes == memoryview`` walks it element by element."""
    if len(a) != len(b):
        return False
    import numpy as np

    return bool(np.array_equal(np.frombuffer(a, dtype=np.uint8), np.frombuffer(b, dtype=np.uint8)))


def read_manifest(out_dir: Path) -> dict[str, dict[str, str]]:
    """``path → {sha256, role}`` from a previous run; an unreadable manifest counts as none.

    On disk: ``{"files": {path: sha256}, "roles": {path: role}, ...}`` — a flat path →
    hash map, so other tools (and the build pipeline) can read it without knowing roles.
    """
    try:
        doc = json.loads((out_dir / MANIFEST).read_text(encoding="utf-8"))
        files, roles = doc.get("files", {}), doc.get("roles", {})
        return {str(k): {"sha256": str(v), "role": str(roles.get(k, "scaffold"))} for k, v in files.items() if isinstance(v, str)}
    except (OSError, ValueError, AttributeError):
        return {}


def _manifest_bytes(entries: dict[str, dict[str, str]]) -> bytes:
    doc = {
        "schema_version": 1,
        "kind": "edgeq-manifest",
        "generator": f"edgeq {__version__}",
        "files": {k: v["sha256"] for k, v in entries.items()},
        "roles": {k: v["role"] for k, v in entries.items()},
    }
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode("utf-8")


def plan(out_dir: Path, files: list[GeneratedFile], *, force: bool = False) -> tuple[FileAction, ...]:
    """Decide each file's action without touching the disk (also the dry-run listing)."""
    manifest = read_manifest(out_dir)
    actions: list[FileAction] = []
    foreign: list[str] = []
    seen: set[str] = set()
    for f in files:
        if f.path in seen:
            raise ValueError(f"duplicate generated file {f.path}")
        seen.add(f.path)
        target = out_dir / f.path
        if not target.exists():
            actions.append(FileAction(f.path, "create", f.role))
            continue
        if target.is_dir():
            raise OutputExistsError(f"{target} is a folder, edgeq needs to write a file there", hint="move it away")
        on_disk = target.read_bytes()
        if _same(on_disk, f.content):
            actions.append(FileAction(f.path, "unchanged", f.role))
            continue
        recorded = manifest.get(f.path, {}).get("sha256")
        # Model sources are always refreshed once edgeq owns them; scaffold files only
        # while untouched (hashing the old file only when that question is asked).
        if recorded is not None and (f.role == "model" or recorded == sha256(on_disk)):
            actions.append(FileAction(f.path, "update", f.role))
        elif force:
            actions.append(FileAction(f.path, "overwrite", f.role))
        elif f.role == "model":
            foreign.append(f.path)
        else:
            actions.append(FileAction(f.path, "kept", f.role))
    if foreign:
        raise OutputExistsError(
            f"{out_dir}: refusing to overwrite files edgeq did not write: {', '.join(foreign)}",
            hint="pick another --out or --name, or pass --force to overwrite them",
        )
    return tuple(actions)


def write_tree(out_dir: Path, files: list[GeneratedFile], *, force: bool = False, dry_run: bool = False) -> WriteResult:
    """Write ``files`` under ``out_dir`` following ``plan``; update the manifest.

    A run that changes nothing (every file unchanged or kept, same manifest) writes
    nothing: no staging, no swap, the folder's timestamps stay.
    """
    out_dir = Path(out_dir)
    in_place = outdir.is_staging(out_dir)
    if not in_place:
        outdir.check_dest(out_dir, kind="folder")
    actions = plan(out_dir, files, force=force)
    result = WriteResult(out_dir=out_dir, actions=actions, dry_run=dry_run)
    if dry_run:
        return result
    if not in_place:
        outdir.clean_stale(out_dir)  # what killed runs left beside it, even when nothing changes
    by_path = {f.path: f for f in files}
    manifest = read_manifest(out_dir)
    to_write = [by_path[a.path] for a in actions if a.action in ("create", "update", "overwrite")]
    with ThreadPoolExecutor(1) as pool:  # hashlib releases the GIL: hash while staging writes
        hashes = pool.submit(lambda: {f.path: f.sha256 for f in to_write})

        done: list[bytes] = []

        def manifest_bytes() -> bytes:
            if done:
                return done[0]
            for a in actions:
                if a.action != "kept":
                    recorded = manifest.get(a.path, {}).get("sha256")
                    # Unchanged content keeps its recorded hash (no re-hash of a 60 MB file).
                    keep = a.action == "unchanged" and recorded
                    manifest[a.path] = {"sha256": recorded if keep else hashes.result().get(a.path) or by_path[a.path].sha256, "role": a.role}
            done.append(_manifest_bytes(dict(sorted(manifest.items()))))
            return done[0]

        if not to_write:
            data = manifest_bytes()
            current = out_dir / MANIFEST
            if current.is_file() and not current.is_symlink() and current.read_bytes() == data:
                return result
        if in_place:
            _write_files(out_dir, out_dir, to_write, manifest_bytes)
        else:
            with outdir.replacing(out_dir, keep=True) as staging:
                _write_files(staging, out_dir, to_write, manifest_bytes)
    return result


def _write_files(root: Path, shown: Path, files: list[GeneratedFile], manifest: Callable[[], bytes]) -> None:
    """Write ``files`` as new files under ``root`` (a staging folder), then the manifest.

    A generated path whose parent is a symlink in the tree is refused: writing through
    it would change files outside the output folder, outside the atomic swap.
    """
    with outdir.mapped_errors(shown):
        for f in files:
            _parent_dir(root, shown, f.path)
            outdir.write_new(root / f.path, f.content)
        outdir.write_new(root / MANIFEST, manifest())


def _parent_dir(root: Path, shown: Path, rel: str) -> None:
    """Create the folders of ``rel`` under ``root``, refusing a symlink among them."""
    p = root
    for part in PurePosixPath(rel).parts[:-1]:
        p = p / part
        if p.is_symlink():
            raise OutputExistsError(f"{shown / p.relative_to(root)} is a symlink, and edgeq writes generated files into that folder",
                                    hint="replace the symlink with a real folder, or choose another --out")
        if os.path.lexists(p) and not p.is_dir():
            raise OutputExistsError(f"{shown / p.relative_to(root)} is a file, and edgeq writes generated files into a folder there",
                                    hint="move the file away, or choose another --out")
        if not p.is_dir():
            p.mkdir()


def render_tree(prefix: str, context: dict[str, Any], *, dest: str = "", role: str = "scaffold", overrides: str | None = None,
                path_vars: dict[str, str] | None = None) -> list[GeneratedFile]:
    """Render every ``templates/<prefix>/**/*.j2`` to ``<dest>/<path without .j2>``.

    A template that renders to only whitespace is skipped: that is how a template set
    says "not for this target" (e.g. the cross toolchain file on the host). With
    ``overrides``, a template of the same relative name under that prefix wins (a board
    folder overriding the common startup code). ``path_vars`` replaces placeholders in
    output paths (``__name__`` → the model's C name: an Arduino sketch folder and its
    ``.ino`` must share a name).
    """
    chosen: dict[str, str] = {t[len(prefix) + 1 :]: t for t in list_templates(prefix)}
    if overrides:
        chosen.update({t[len(overrides) + 1 :]: t for t in list_templates(overrides)})
    out: list[GeneratedFile] = []
    for rel, template in sorted(chosen.items()):
        text = render(template, context)
        if not text.strip():
            continue
        rel_out = rel[: -len(".j2")]
        for placeholder, value in (path_vars or {}).items():
            rel_out = rel_out.replace(placeholder, value)
        path = str(PurePosixPath(dest) / rel_out) if dest else rel_out
        out.append(GeneratedFile(path, text.encode("utf-8"), role))
    return out


__all__ = ["MANIFEST", "GeneratedFile", "FileAction", "WriteResult", "plan", "write_tree", "render_tree", "read_manifest"]
