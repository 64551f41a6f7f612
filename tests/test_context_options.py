"""The typed options between layers and the per-command-line context (issue 13)."""

from __future__ import annotations

import pytest

from edgeq.context import run_context, start_run
from edgeq.errors import UserError
from edgeq.firmware.step import FirmwareOptions


def test_firmware_options_from_the_old_dict_form() -> None:
    opts = FirmwareOptions.of({"board": "qemu-mps2-an386", "labels": ["a", "b"], "flash": None})
    assert opts == FirmwareOptions(board="qemu-mps2-an386", labels=("a", "b"))
    assert FirmwareOptions.of(None) == FirmwareOptions()
    assert FirmwareOptions.of(opts) is opts


def test_an_unknown_firmware_option_is_a_usage_error_naming_it() -> None:
    with pytest.raises(UserError, match="'bord'"):
        FirmwareOptions.of({"bord": "x"})


def test_debug_does_not_leak_from_one_command_line_into_the_next() -> None:
    from edgeq.cli.app import main

    start_run(debug=True)
    assert run_context().debug
    with pytest.raises(SystemExit) as end:
        main(["targets", "--json"])
    assert end.value.code == 0
    assert not run_context().debug  # main() started a fresh context for its own command line
    start_run()
