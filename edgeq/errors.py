"""One exception hierarchy for every failure a user can act on.

Library code raises these; only ``edgeq.cli.app`` turns them into a red line, a hint and an
exit code. Keeping the mapping in one place is what lets the README promise exit codes.
"""

from __future__ import annotations


class EdgeqError(Exception):
    """Root of everything edgeq raises on purpose. ``exit_code`` is the CLI contract."""

    exit_code: int = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\nhint: {self.hint}"


class UserError(EdgeqError):
    """Bad input or a request edgeq refuses: exit 2."""


class ModelError(UserError):
    """The model file cannot be loaded, converted or parsed."""


class CalibrationError(UserError):
    """Representative or evaluation data does not fit the model."""


class UnsupportedOpError(UserError):
    """The model uses an op that TFLite Micro (or the chosen mode) cannot run."""

    def __init__(self, message: str, hint: str | None = None, ops: tuple[str, ...] = ()) -> None:
        super().__init__(message, hint)
        self.ops = ops


class BudgetError(UserError):
    """The model does not fit the target's flash or RAM budget."""


class OutputExistsError(UserError):
    """Refusing to overwrite the user's files without --force."""


class TargetError(UserError):
    """A target definition is unknown or invalid."""


class ToolMissingError(UserError):
    """An external tool or optional runtime is not installed."""


class RemoteError(UserError):
    """SSH connection, authentication, host key or remote command failure."""


class GateError(EdgeqError):
    """A quality gate (e.g. --max-accuracy-drop) failed: exit 1, the build itself worked."""

    exit_code = 1
