"""The device side of ``edgeq bench``: benchmark .tflite models on edge Linux devices over SSH (or locally).

Modules: ``ssh_config`` (host strings, ssh config, known_hosts, keys), ``ssh`` (the
connection), ``capture`` (bounded output collection), ``protocol`` (strict parsing of what
the device says), ``devices`` (SSH host or local subprocess), ``runner`` (orchestration,
``bench()``), ``device_script`` (shipped to the device), ``report`` (results and
renderings), ``common`` (the small vocabulary shared by SSH and local execution,
re-exported here). The command itself is ``edgeq.cli.bench``; the package is not called
``bench`` so that ``edgeq.bench`` stays the API function after any of these modules loads. Device text is untrusted: it reaches messages
only through ``edgeq.text.printable``.
"""

from __future__ import annotations

from edgeq.remote.common import (
    COMMAND_WIDTH, LINE_WIDTH, PROTOCOL_PREFIXES, TAIL_LINES, TEMP_PREFIX, Cancelled, CommandResult, command_error,
    describe_command, tail,
)

__all__ = ["TEMP_PREFIX", "TAIL_LINES", "LINE_WIDTH", "COMMAND_WIDTH", "PROTOCOL_PREFIXES", "Cancelled", "CommandResult",
           "tail", "command_error", "describe_command"]
