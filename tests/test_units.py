"""Small pure functions of the pipeline."""

from __future__ import annotations


def test_signature_names_sort_naturally() -> None:
    from edgeq.model.loading import natural_key

    names = ["output_10", "output_2", "output_0", "output_1", "args_0_1", "args_0"]
    assert sorted(names, key=natural_key) == ["args_0", "args_0_1", "output_0", "output_1", "output_2", "output_10"]
