"""``edgeq bench``: benchmark .tflite models on edge Linux devices over SSH (or locally).

Modules: ``ssh_config`` (host strings, ssh config, known_hosts, keys), ``ssh`` (the
connection), ``capture`` (bounded output collection), ``protocol`` (strict parsing of what
the device says), ``devices`` (SSH host or local subprocess), ``runner`` (orchestration,
``bench()``), ``device_script`` (shipped to the device), ``report`` (results and
renderings), ``command`` (the typer adapter), ``common`` (the small vocabulary shared by
SSH and local execution, re-exported here). Device text is untrusted: it reaches messages
only through ``edgeq.text.printable``.
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING, Any

from edgeq.bench.common import (
    COMMAND_WIDTH, LINE_WIDTH, PROTOCOL_PREFIXES, TAIL_LINES, TEMP_PREFIX, Cancelled, CommandResult, command_error,
    describe_command, tail,
)

if TYPE_CHECKING:  # pragma: no cover
    from edgeq.bench.report import BenchReport


class _CallableBenchPackage(types.ModuleType):
    """Make ``edgeq.bench(...)`` work although ``edgeq.bench`` is also this package.

    ``edgeq.__getattr__`` exposes the API function ``bench`` lazily, but importing any
    ``edgeq.bench.*`` module makes Python bind the package to ``edgeq.bench``, shadowing the
    function after its first use. Calling the package forwards to ``runner.bench``.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> "BenchReport":
        from edgeq.bench.runner import bench

        return bench(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableBenchPackage

__all__ = ["TEMP_PREFIX", "TAIL_LINES", "LINE_WIDTH", "COMMAND_WIDTH", "PROTOCOL_PREFIXES", "Cancelled", "CommandResult",
           "tail", "command_error", "describe_command"]
