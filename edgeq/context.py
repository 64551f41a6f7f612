"""What one edgeq command line knows about itself (today: ``--debug``).

Why a module of its own: ``edgeq.cli.app.main`` reads it to decide whether an error shows its
traceback, but the commands that receive ``--debug`` live beside their features
(``compare_command``, ``codegen.command``, ``bench.command``...) and ``cli.py`` imports
them, so they must not import ``cli.py`` back. Both reach this leaf instead: the CLI
starts a fresh context per command line, a command only adds what it learned.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RunContext:
    """Settings of the command line being run."""

    debug: bool = False

    def note_debug(self, debug: bool) -> None:
        """``--debug`` from anywhere (the raw arguments, a command's option, edgeq.toml)
        turns tracebacks on for the rest of the run; nothing turns them off again."""
        self.debug = self.debug or debug


_current = RunContext()


def run_context() -> RunContext:
    """The context of the command line being run (a default one outside the CLI)."""
    return _current


def start_run(*, debug: bool = False) -> RunContext:
    """A fresh context for a new command line: one in-process run's ``--debug`` must not
    leak into the next (``main()`` called twice by a test or an embedding program)."""
    global _current
    _current = RunContext(debug=debug)
    return _current


__all__ = ["RunContext", "run_context", "start_run"]
