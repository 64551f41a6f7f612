"""The command line: ``app`` (the typer app, ``main()``, the only place an error becomes an
exit code) and one module per command, each a thin adapter over the library.

Nothing outside this package imports it (tests/test_import_graph.py): run settings reach the
library through ``edgeq.context``. ``main`` is resolved lazily so that ``from edgeq.cli
import main`` (the entry point of installs made before the package existed) keeps working
without this package importing typer for modules that only want, say, ``cli.fastpath``.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "main":
        from edgeq.cli.app import main

        return main
    raise AttributeError(f"module 'edgeq.cli' has no attribute {name!r}")
