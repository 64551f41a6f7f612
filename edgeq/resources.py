"""Locate the data edgeq ships: Jinja templates and target definitions.

In a wheel, ``templates/`` and ``targets/`` are force-included as ``edgeq/_data/<kind>``;
in a checkout (editable or ``PYTHONPATH`` use) they sit at the repository's top level.
One lookup keeps the two layouts from drifting apart in every module that needs data.
"""

from __future__ import annotations

from pathlib import Path

_KINDS = ("templates", "targets")


def data_dir(kind: str) -> Path:
    """Return the directory holding ``kind`` ("templates" or "targets").

    The packaged copy wins: an installed wheel must never read a stray checkout's files.
    """
    if kind not in _KINDS:
        raise ValueError(f"unknown data kind {kind!r}; expected one of {_KINDS}")
    package = _package()
    packaged = package / "_data" / kind
    if packaged.is_dir():
        return packaged
    return package.parent / kind


def package_data(name: str) -> Path:
    """A file under ``edgeq/data/`` (data that lives inside the package, e.g. tflm_ops.toml)."""
    return _package() / "data" / name


def _package() -> Path:
    """The installed ``edgeq`` folder: this module's own (read at call time, so a test can
    point it at a fake install; importing the package here would make a cycle)."""
    return Path(__file__).resolve().parent
