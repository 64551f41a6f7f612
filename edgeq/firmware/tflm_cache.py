"""A per-user cache of compiled TFLM libraries, keyed by everything that changes the objects.

Why: compiling a TFLM tree for one Cortex-M CPU costs minutes (about 5 CPU-minutes with
arm-none-eabi-gcc 12 at -O2), while a generated project's own code compiles in seconds.
Every project for the same CPU and tree compiles the *same* library, so ``edgeq verify``
builds it once and links later projects against ``libtflm.a`` from the cache.

The key is read from CMake itself, not re-derived from target files: the project is
configured with the CMake file API (codemodel-v2 + toolchains-v1), and the key hashes
the ``tflm`` target's exact compile fragments, defines, include directories, sources
(which covers the kernels, CMSIS-NN and the optional signal/ sources) and the compilers'
paths and versions, plus the content of the whole tree. Paths inside the tree and the
build folder are replaced by placeholders, so a moved tree or another project reuses the
entry. Layout: ``<cache>/tflm/<key>/libtflm.a`` + ``key.json`` (what the key was made of),
where ``<cache>`` is ``$EDGEQ_CACHE_DIR`` or ``$XDG_CACHE_HOME/edgeq`` (``~/.cache/edgeq``).
A file lock makes concurrent verifies build a key once; the library is copied in under a
temporary name and renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from edgeq.errors import UserError

#: Bump when the key's recipe or the cached layout changes: old entries are then ignored.
KEY_VERSION = 1
LIBRARY = "libtflm.a"
_QUERIES = ("codemodel-v2", "toolchains-v1")


class CacheError(UserError):
    """The TFLM library cache cannot be used (unwritable folder, unreadable CMake reply)."""


def cache_root() -> Path:
    """``$EDGEQ_CACHE_DIR``, else ``$XDG_CACHE_HOME/edgeq``, else ``~/.cache/edgeq``."""
    explicit = os.environ.get("EDGEQ_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "edgeq"


def request_file_api(build_dir: Path) -> None:
    """Ask CMake (before configuring ``build_dir``) for the codemodel and toolchains replies."""
    query = build_dir / ".cmake" / "api" / "v1" / "query"
    query.mkdir(parents=True, exist_ok=True)
    for name in _QUERIES:
        (query / name).touch()


def _reply(build_dir: Path) -> tuple[Path, dict[str, Any]]:
    reply = build_dir / ".cmake" / "api" / "v1" / "reply"
    indexes = sorted(reply.glob("index-*.json"))
    if not indexes:
        raise CacheError(f"CMake wrote no file-API reply in {reply}", hint="edgeq verify needs CMake >= 3.14")
    return reply, json.loads(indexes[-1].read_text(encoding="utf-8"))


def _object(reply: Path, index: dict[str, Any], kind: str) -> dict[str, Any]:
    for obj in index.get("objects", []):
        if obj.get("kind") == kind:
            return json.loads((reply / obj["jsonFile"]).read_text(encoding="utf-8"))
    raise CacheError(f"CMake's file-API reply has no {kind!r} object", hint="edgeq verify needs CMake >= 3.14")


def target_reply(build_dir: Path, name: str) -> dict[str, Any] | None:
    """The file-API description of target ``name`` in a configured ``build_dir`` (or None)."""
    reply, index = _reply(build_dir)
    codemodel = _object(reply, index, "codemodel")
    for config in codemodel.get("configurations", []):
        for target in config.get("targets", []):
            if target.get("name") == name:
                return json.loads((reply / target["jsonFile"]).read_text(encoding="utf-8"))
    return None


def tree_digest(tree: Path) -> str:
    """SHA-256 over every file of the tree (relative path and content), in sorted order.

    Content, not timestamps: a re-extracted or copied tree with the same files shares the
    cache entry, and an edited header never reuses a stale library. (~10 MB: tens of ms.)
    """
    digest = hashlib.sha256()
    files = sorted(p for p in tree.rglob("*") if p.is_file())
    for path in files:
        digest.update(path.relative_to(tree).as_posix().encode() + b"\0")
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()


@dataclass(frozen=True)
class LibraryKey:
    """The cache key and the (placeholder-normalised) facts it hashes."""

    key: str
    facts: dict[str, Any]


def library_key(build_dir: Path, tree: Path, *, target: str = "tflm") -> LibraryKey:
    """Key of the ``tflm`` library a configured ``build_dir`` would compile from ``tree``."""
    reply, index = _reply(build_dir)
    lib = target_reply(build_dir, target)
    if lib is None or not lib.get("compileGroups"):
        raise CacheError(f"the project has no compiled {target!r} target (configured with TFLM_LIBRARY?)",
                         hint="configure without -DTFLM_LIBRARY to let edgeq build and cache the library")
    tree_s, build_s = str(tree.resolve()), str(build_dir.resolve())

    def norm(text: str) -> str:
        return text.replace(build_s, "<BUILD>").replace(tree_s, "<TFLM_DIR>")

    groups = []
    for group in lib["compileGroups"]:
        groups.append({
            "language": group.get("language"),
            "fragments": [norm(f.get("fragment", "")) for f in group.get("compileCommandFragments", [])],
            "defines": sorted(d.get("define", "") for d in group.get("defines", [])),
            "includes": [norm(i.get("path", "")) for i in group.get("includes", [])],
            "pch": [norm(h.get("header", "")) for h in group.get("precompileHeaders", [])],
            "sysroot": norm((group.get("sysroot") or {}).get("path", "")),
        })
    sources = sorted(norm(s["path"]) for s in lib.get("sources", []))
    toolchains = _object(reply, index, "toolchains")
    compilers = sorted(
        (tc.get("language", ""), tc.get("compiler", {}).get("id", ""), tc.get("compiler", {}).get("path", ""),
         tc.get("compiler", {}).get("version", ""))
        for tc in toolchains.get("toolchains", [])
    )
    facts = {"key_version": KEY_VERSION, "tree_sha256": tree_digest(tree), "compilers": compilers,
             "compile_groups": groups, "sources": sources}
    key = hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:24]
    return LibraryKey(key, facts)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` (released when the process dies, too)."""
    with path.open("a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@dataclass(frozen=True)
class CachedLibrary:
    """A ``libtflm.a`` ready to link: where, its key, and whether this call compiled it."""

    path: Path
    key: str
    built: bool
    seconds: float


def ensure_library(build_dir: Path, tree: Path, build: Callable[[], Path], *,
                   root: Path | None = None) -> CachedLibrary:
    """The cached library for ``build_dir``'s ``tflm`` target, calling ``build()`` (which
    compiles it and returns the ``.a``) only when no verify has cached that key yet.

    Concurrent callers with the same key wait on one lock and then reuse the result.
    """
    started = time.monotonic()
    key = library_key(build_dir, tree)
    folder = (root or cache_root()) / "tflm" / key.key
    final = folder / LIBRARY
    if final.is_file():
        return CachedLibrary(final, key.key, False, time.monotonic() - started)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CacheError(f"cannot create the TFLM cache folder {folder}: {exc.strerror}",
                         hint="set EDGEQ_CACHE_DIR to a writable folder") from exc
    with _locked(folder / ".lock"):
        if final.is_file():  # another verify built it while this one waited
            return CachedLibrary(final, key.key, False, time.monotonic() - started)
        built = build()
        temporary = folder / f".{LIBRARY}.{os.getpid()}.tmp"
        shutil.copyfile(built, temporary)
        meta = folder / f".key.json.{os.getpid()}.tmp"
        meta.write_text(json.dumps({"key": key.key, **key.facts}, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(meta, folder / "key.json")
        os.replace(temporary, final)  # last: its presence is what says "cached"
    return CachedLibrary(final, key.key, True, time.monotonic() - started)


__all__ = ["CacheError", "CachedLibrary", "LibraryKey", "KEY_VERSION", "cache_root", "ensure_library",
           "library_key", "request_file_api", "target_reply", "tree_digest"]
