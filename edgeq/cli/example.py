"""The bundled example: a small CNN trained on the 8×8 digits data, with its data.

It lets a newcomer's first command run the whole pipeline without files of their own.
``scripts/train_example.py`` rebuilds these files.
"""

from __future__ import annotations

from pathlib import Path

EXAMPLE_DIR = Path(__file__).resolve().parent.parent / "data" / "example"


def example_files() -> tuple[Path, Path, Path]:
    """(model, calibration .npy, evaluation .npz) of the bundled digits example."""
    return EXAMPLE_DIR / "digits.keras", EXAMPLE_DIR / "digits_calibration.npy", EXAMPLE_DIR / "digits_eval.npz"
