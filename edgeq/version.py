"""The edgeq version, in a leaf module.

Why not only in ``edgeq/__init__.py``: reports, templates and the CLI stamp it, and a
submodule importing the package itself made every one of them part of an import cycle
(``edgeq/__init__`` lazily reaches the pipeline, which reaches them). Nothing here
imports anything, so anyone may import it. The build reads the literal below
(``[tool.hatch.version]`` in pyproject.toml).
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
